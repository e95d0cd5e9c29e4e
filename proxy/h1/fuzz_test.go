package h1_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/h1"
)

// FuzzAnswerFraming is the property a connection-reusing proxy lives by:
// whatever bytes a backend sends as one call's answer, none of them ever
// reaches another call. The backend answers /fuzz with the fuzzer's bytes
// and keeps the connection open for the next request, which it answers
// with a canary; the next call through the same transport must get the
// canary or an error, never anything the fuzzer wrote.
func FuzzAnswerFraming(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nContent-Length: 6\r\n\r\nforgedHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 099 Odd\r\nContent-Length: 44\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
		"HTTP/1.1 101 Switching Protocols\r\n\r\nforged",
		"HTTP/1.0 200 OK\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nokforged",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nforged",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nb\r\ndata: ok\n\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"garbage",
		"",
	} {
		f.Add([]byte(seed))
	}
	var answer atomic.Pointer[[]byte]
	base := rawServer(f, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := readRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/fuzz" {
				c.Write(*answer.Load())
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ncanary")
		}
	})

	f.Fuzz(func(t *testing.T, raw []byte) {
		answer.Store(&raw)
		tr := &h1.Transport{Fallback: &fallback{}}
		defer tr.CloseIdleConnections()
		call := func(path string, wait time.Duration) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(`{}`))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return string(b), err
		}
		call("/fuzz", 100*time.Millisecond) // any outcome
		got, err := call("/canary", 5*time.Second)
		if err == nil && got != "canary" {
			t.Fatalf("the next call got %q after the answer %q", got, raw)
		}
	})
}
