package console

import (
	"crypto/sha256"
	"encoding/hex"
)

func proxySHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
