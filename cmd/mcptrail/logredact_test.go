package main

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder/redact"
)

// TestLibraryLogsRedacted: what libraries log on their own, through
// slog.Default or the log package (mcp-go's transports log errors that
// carry backend URLs), goes through the redactor as serve's own lines do.
func TestLibraryLogsRedacted(t *testing.T) {
	prev, prevFlags, prevOut := slog.Default(), log.Flags(), log.Writer()
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetFlags(prevFlags)
		log.SetOutput(prevOut)
	})
	red, err := redact.New(redact.Config{}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	redactingDefault(slog.NewJSONHandler(&buf, nil), red)
	slog.Default().Error("failed to send close request", "err", `Delete "http://backend:9000/mcp?api_key=ak-123456": EOF`)
	log.Printf("transport: Authorization: Bearer abcdefgh12345678")
	out := buf.String()
	for _, secret := range []string{"ak-123456", "abcdefgh12345678"} {
		if strings.Contains(out, secret) {
			t.Errorf("library log output carries %s:\n%s", secret, out)
		}
	}
	if strings.Count(out, "«redacted:") != 2 {
		t.Errorf("want both lines logged, redacted:\n%s", out)
	}
}
