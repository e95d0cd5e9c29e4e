// Package sessionseal seals what a 2025 MCP session needs into its
// Mcp-Session-Id, so that any gateway replica holding the shared key can
// serve the session, also after the replica that created it died.
//
// A token is "m1" followed by the unpadded base64url (strict) of
//
//	kid (1) | handle (16) | nonce (24) | XChaCha20-Poly1305(state) + tag (16)
//
// with kid, handle and the version prefix authenticated as additional data.
// The state holds the issue and expiry times, a SHA-256 of the owning
// principal, the negotiated protocol version, the client's name, version and
// canonical capabilities. Consequences:
//
//   - a token cannot be forged or altered without the key (AEAD);
//   - it opens for its principal only: the owner hash is inside, so another
//     principal presenting it is refused by the caller;
//   - its lifetime is fixed at sealing: the expiry is inside, and a token is
//     never re-sealed on use;
//   - keys rotate: every key in the ring opens, the first one seals, and
//     the key id says which key sealed a token;
//   - the handle is random and public: it names the session in records and
//     logs without the token.
//
// XChaCha20-Poly1305's 24-byte random nonce makes nonce reuse negligible
// however many sessions one key seals (AES-GCM's 12-byte random nonce
// limits a key to about 2^32 seals).
package sessionseal

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Prefix starts every sealed token; it versions the format.
const Prefix = "m1"

// KeySize is the size of a session key in bytes.
const KeySize = chacha20poly1305.KeySize

// Limits on what is sealed, so that a token stays a reasonable header
// (HAProxy's and nginx's default header buffers are 8–16 KiB).
const (
	MaxIdent = 256  // protocol version, client name, client version
	MaxCaps  = 4096 // canonical capabilities JSON
)

const (
	handleSize = 16
	headerSize = 1 + handleSize + chacha20poly1305.NonceSizeX
	// MaxTokenLen bounds what Open even decodes.
	MaxTokenLen = len(Prefix) + (headerSize+16+8+8+sha256.Size+4*binary.MaxVarintLen16+3*MaxIdent+MaxCaps)*4/3 + 4
)

// Errors of Open. A caller answers all of them like a missing session;
// they differ only for logs and counters.
var (
	ErrMalformed  = errors.New("sessionseal: not a sealed session id")
	ErrUnknownKey = errors.New("sessionseal: sealed with a key not in the ring")
	ErrInvalid    = errors.New("sessionseal: authentication failed")
	ErrExpired    = errors.New("sessionseal: session expired")
)

var enc = base64.RawURLEncoding.Strict()

// Keyring holds the session keys: every key opens, the first seals.
type Keyring struct {
	sealID byte
	aeads  map[byte]cipher.AEAD
}

// ParseKeys reads a key ring: one key a line, "<id> <key>", id a number
// 0–255 and key 32 bytes in base64 (standard or URL alphabet, padded or
// not); blank lines and lines starting with # are skipped. The first key
// seals new sessions; the others only open existing ones (rotation: add
// the new key first, keep the old one until its sessions expired).
func ParseKeys(text []byte) (*Keyring, error) {
	k := &Keyring{aeads: map[byte]cipher.AEAD{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<id> <base64 key>\"", line)
		}
		id, err := strconv.ParseUint(f[0], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: key id %q is not a number 0-255", line, f[0])
		}
		key, err := decodeKey(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d (key id %d): %w", line, id, err)
		}
		if _, dup := k.aeads[byte(id)]; dup {
			return nil, fmt.Errorf("line %d: key id %d given twice", line, id)
		}
		a, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(k.aeads) == 0 {
			k.sealID = byte(id)
		}
		k.aeads[byte(id)] = a
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.aeads) == 0 {
		return nil, errors.New("no key")
	}
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	for _, e := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := e.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("key is %d bytes, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("key is not base64")
}

// NewKey returns a fresh key line for ParseKeys.
func NewKey(id byte) string {
	b := make([]byte, KeySize)
	_, _ = rand.Read(b)
	return strconv.Itoa(int(id)) + " " + base64.StdEncoding.EncodeToString(b)
}

// State is what a session needs on a replica that never saw it.
type State struct {
	Handle          [handleSize]byte // random, public: names the session in records
	Owner           [sha256.Size]byte
	Issued, Expires time.Time // whole seconds
	ProtocolVersion string
	ClientName      string
	ClientVersion   string
	Caps            []byte // canonical capabilities JSON, or nil
}

// HandleString is the handle in hex: the session's name in records and logs.
func (s *State) HandleString() string { return hex.EncodeToString(s.Handle[:]) }

// OwnerHash is what a State holds of its principal's owner key.
func OwnerHash(ownerKey string) [sha256.Size]byte {
	return sha256.Sum256([]byte("mcptrail session owner\x00" + ownerKey))
}

// OwnedBy reports, in constant time, whether ownerKey opened the session.
func (s *State) OwnedBy(ownerKey string) bool {
	h := OwnerHash(ownerKey)
	return subtle.ConstantTimeCompare(h[:], s.Owner[:]) == 1
}

// Seal returns the token of st under the ring's sealing key. st.Handle is
// filled with fresh random bytes when zero.
func (k *Keyring) Seal(st *State) (string, error) {
	if len(st.ProtocolVersion) > MaxIdent || len(st.ClientName) > MaxIdent || len(st.ClientVersion) > MaxIdent {
		return "", fmt.Errorf("sessionseal: protocol version, client name or version longer than %d bytes", MaxIdent)
	}
	if len(st.Caps) > MaxCaps {
		return "", fmt.Errorf("sessionseal: capabilities are %d bytes, more than %d", len(st.Caps), MaxCaps)
	}
	if st.Handle == ([handleSize]byte{}) {
		_, _ = rand.Read(st.Handle[:])
	}
	a := k.aeads[k.sealID]
	buf := make([]byte, headerSize, headerSize+64+len(st.Caps)+len(st.ClientName)+len(st.ClientVersion)+len(st.ProtocolVersion)+a.Overhead())
	buf[0] = k.sealID
	copy(buf[1:], st.Handle[:])
	nonce := buf[1+handleSize : headerSize]
	_, _ = rand.Read(nonce)
	var pt []byte
	pt = binary.BigEndian.AppendUint64(pt, uint64(st.Issued.Unix()))
	pt = binary.BigEndian.AppendUint64(pt, uint64(st.Expires.Unix()))
	pt = append(pt, st.Owner[:]...)
	for _, s := range []string{st.ProtocolVersion, st.ClientName, st.ClientVersion, string(st.Caps)} {
		pt = binary.AppendUvarint(pt, uint64(len(s)))
		pt = append(pt, s...)
	}
	out := a.Seal(buf, nonce, pt, aad(buf[:1+handleSize]))
	return Prefix + enc.EncodeToString(out), nil
}

func aad(hdr []byte) []byte { return append([]byte(Prefix), hdr...) }

// Open authenticates and decrypts token and checks its expiry at now.
func (k *Keyring) Open(token string, now time.Time) (*State, error) {
	if len(token) > MaxTokenLen || !strings.HasPrefix(token, Prefix) {
		return nil, ErrMalformed
	}
	raw, err := enc.DecodeString(token[len(Prefix):])
	if err != nil || len(raw) < headerSize+chacha20poly1305.Overhead {
		return nil, ErrMalformed
	}
	a, ok := k.aeads[raw[0]]
	if !ok {
		return nil, ErrUnknownKey
	}
	pt, err := a.Open(nil, raw[1+handleSize:headerSize], raw[headerSize:], aad(raw[:1+handleSize]))
	if err != nil {
		return nil, ErrInvalid
	}
	st := &State{}
	copy(st.Handle[:], raw[1:1+handleSize])
	if len(pt) < 16+sha256.Size {
		return nil, ErrMalformed
	}
	st.Issued = time.Unix(int64(binary.BigEndian.Uint64(pt)), 0)
	st.Expires = time.Unix(int64(binary.BigEndian.Uint64(pt[8:])), 0)
	copy(st.Owner[:], pt[16:])
	pt = pt[16+sha256.Size:]
	var fields [4]string
	for i := range fields {
		n, w := binary.Uvarint(pt)
		if w <= 0 || n > uint64(len(pt)-w) {
			return nil, ErrMalformed
		}
		fields[i] = string(pt[w : w+int(n)])
		pt = pt[w+int(n):]
	}
	if len(pt) != 0 {
		return nil, ErrMalformed
	}
	st.ProtocolVersion, st.ClientName, st.ClientVersion = fields[0], fields[1], fields[2]
	if fields[3] != "" {
		st.Caps = []byte(fields[3])
	}
	if !now.Before(st.Expires) {
		return st, ErrExpired
	}
	return st, nil
}

// Public is how a session id may be shown in logs and records: a sealed
// id (a bearer credential) by its public handle, any other id as it is.
func Public(id string) string {
	if h, ok := Handle(id); ok {
		return h
	}
	return id
}

// Handle returns the public handle of a token, hex, without opening it
// (for logs of refused tokens); ok false when token is not shaped as one.
func Handle(token string) (string, bool) {
	if len(token) > MaxTokenLen || !strings.HasPrefix(token, Prefix) {
		return "", false
	}
	n := enc.EncodedLen(1 + handleSize)
	s := token[len(Prefix):]
	if len(s) < n+8 {
		return "", false
	}
	// The first 1+handleSize bytes take ceil(17*8/6) = 23 characters, the
	// last of which mixes in nonce bits: decode 24 (18 bytes) instead.
	raw, err := base64.RawURLEncoding.DecodeString(s[:24])
	if err != nil {
		return "", false
	}
	return hex.EncodeToString(raw[1 : 1+handleSize]), true
}
