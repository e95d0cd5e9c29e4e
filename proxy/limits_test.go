package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// oneBackend is a config with one HTTP test backend and a token.
func oneBackend(t testing.TB) *config.Config {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	return &config.Config{
		Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second}},
		Auth:    config.Auth{Tokens: []config.Token{{Name: "alice", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"*"}}}},
	}
}

// serveReal serves the gateway's handler with the server mcptrail serve
// uses (proxy.NewHTTPServer) on a loopback port, and returns host:port.
func serveReal(t testing.TB, e *env, l config.Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewHTTPServer(e.gw.Handler(), l)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// slowRequest sends head (request line and headers) and the first bytes of
// a body, then nothing more, and reads what the server answers until it
// closes the connection. guard only bounds a broken server: the test fails
// if the connection is still open then.
func slowRequest(addr, head, bodyStart string, guard time.Duration) (status string, closed bool, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, head+bodyStart); err != nil {
		return "", false, err
	}
	_ = c.SetReadDeadline(time.Now().Add(guard))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err == nil {
		status = strings.TrimSpace(line)
		_, err = io.Copy(io.Discard, br)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return status, false, nil
	}
	return status, true, nil // EOF or reset: closed by the server
}

func slowHead(token string) string {
	h := "POST /mcp HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000\r\n"
	if token != "" {
		h += "Authorization: Bearer " + token + "\r\n"
	}
	return h + "\r\n"
}

// TestSlowClientsAreShed: a request whose body trickles in is refused 401
// and closed at once when unauthenticated (its body is never read), cut off
// after limits.body_read_timeout when authenticated, and a request whose
// headers trickle in is cut off after limits.read_header_timeout.
// Fails before the fix: the unauthenticated body was drained before the
// 401 was sent, and nothing bounded an authenticated body.
func TestSlowClientsAreShed(t *testing.T) {
	cfg := oneBackend(t)
	cfg.Limits = config.Limits{ReadHeaderTimeout: time.Second, BodyReadTimeout: time.Second}
	e := startGateway(t, cfg)
	addr := serveReal(t, e, cfg.Limits)
	const guard = 30 * time.Second
	tests := []struct {
		name, head, body, wantStatus string
	}{
		{"unauthenticated slow body", slowHead(""), "{", "HTTP/1.1 401 Unauthorized"},
		{"wrong token slow body", slowHead("nope"), "{", "HTTP/1.1 401 Unauthorized"},
		{"authenticated slow body", slowHead("alice-token"), `{"jsonrpc":`, "HTTP/1.1 408 Request Timeout"},
		{"unknown path slow body", strings.Replace(slowHead(""), "POST /mcp", "POST /nowhere", 1), "{", "HTTP/1.1 404 Not Found"},
		{"refused method slow body", strings.Replace(slowHead(""), "POST /mcp", "PUT /mcp", 1), "{", "HTTP/1.1 405 Method Not Allowed"},
		{"slow headers", "POST /mcp HTTP/1.1\r\nHost: gw\r\nContent-Le", "", "HTTP/1.1 400 Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, closed, err := slowRequest(addr, tt.head, tt.body, guard)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus || !closed {
				t.Errorf("answer %q, closed by the server %v; want %q and closed", status, closed, tt.wantStatus)
			}
		})
	}

	// Many at once: every unauthenticated one gets its 401 and is closed.
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	shed := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, closed, err := slowRequest(addr, slowHead(""), "{", guard)
			if err == nil && closed && strings.Contains(status, " 401 ") {
				mu.Lock()
				shed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if shed != n {
		t.Errorf("%d of %d slow unauthenticated connections answered 401 and closed", shed, n)
	}
	// An authorized client is still served.
	resp, b := post(t, "http://"+addr, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}`,
		map[string]string{"Authorization": "Bearer alice-token"})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("initialize after the slow clients: %d %s", resp.StatusCode, b)
	}
}

// BenchmarkShedSlowUnauthenticated measures the time to shed 1,000
// concurrent slow unauthenticated connections (POST /mcp, Content-Length
// 100000, one byte sent): each gets its 401 and is closed.
func BenchmarkShedSlowUnauthenticated(b *testing.B) {
	cfg := oneBackend(b)
	e := startGatewayB(b, cfg)
	addr := serveReal(b, e, config.Limits{})
	const n = 1000
	for b.Loop() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		shed := 0
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, closed, err := slowRequest(addr, slowHead(""), "{", time.Minute)
				if err == nil && closed && strings.Contains(status, " 401 ") {
					mu.Lock()
					shed++
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		if shed != n {
			b.Fatalf("shed %d of %d", shed, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000conns")
}

// startGatewayB is startGateway for a benchmark: no debug log, default
// health interval.
func startGatewayB(b *testing.B, cfg *config.Config) *env {
	b.Helper()
	return startGateway(b, cfg, func(o *proxy.Options) {
		o.Logger = slog.New(slog.DiscardHandler)
		o.HealthInterval = 0
	})
}
