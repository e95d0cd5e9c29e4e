package h1_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/h1"
)

// BenchmarkRoundTrip posts a 200-byte JSON-RPC call to a loopback echo
// server through this transport and through net/http's, in the same run.
// The CPU a call costs shows as ns/op at -cpu 1 (one P: no spinning
// threads hide the hand-offs); at more Ps, compare the process's CPU.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(echo))
	defer srv.Close()
	msg := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("x", 120) + `"}}}`
	std := http.DefaultTransport.(*http.Transport).Clone()
	for _, tc := range []struct {
		name string
		tr   http.RoundTripper
	}{
		{"h1", &h1.Transport{Fallback: std}},
		{"nethttp", std},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, strings.NewReader(msg))
				req.Header.Set("Content-Type", "application/json")
				resp, err := tc.tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(msg)) {
					b.Fatalf("echoed %d bytes", n)
				}
			}
		})
		if ci, ok := tc.tr.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}
