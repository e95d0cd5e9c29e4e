package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/h1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fallback records the requests h1 hands over.
type fallback struct{ got []string }

func (f *fallback) RoundTrip(req *http.Request) (*http.Response, error) {
	f.got = append(f.got, req.URL.String())
	return &http.Response{StatusCode: 299, Body: http.NoBody, Request: req}, nil
}

// countingServer is an httptest server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func newTransport() *h1.Transport { return &h1.Transport{Fallback: &fallback{}} }

func post(t *testing.T, tr http.RoundTripper, ctx context.Context, u, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return tr.RoundTrip(req)
}

// postRead posts body to u and returns the answer's body; any error
// fails the test.
func postRead(t *testing.T, tr http.RoundTripper, u, body string) string {
	t.Helper()
	resp, err := post(t, tr, context.Background(), u, body)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, resp)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func TestReusesConnection(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(echo))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for i := range 20 {
		msg := fmt.Sprintf(`{"n":%d}`, i)
		resp, err := post(t, tr, context.Background(), srv.URL+"/mcp", msg)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := readAll(t, resp); got != msg {
			t.Fatalf("call %d: body %q, want %q", i, got, msg)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential calls opened %d connections, want 1", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(echo))
	tr := &h1.Transport{Fallback: &fallback{}, MaxIdlePerHost: 4}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				msg := fmt.Sprintf(`{"g":%d,"i":%d,"pad":%q}`, g, i, strings.Repeat("x", g*100))
				resp, err := post(t, tr, context.Background(), srv.URL, msg)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != msg {
					errs <- fmt.Errorf("g%d i%d: %q, %v", g, i, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := conns.Load(); n < 1 || n > 32*50/4 {
		t.Fatalf("%d connections for 1600 calls", n)
	}
}

// TestStreamsOnTheCaller reads the first event of an SSE answer while the
// backend still holds the rest.
func TestStreamsOnTheCaller(t *testing.T) {
	release := make(chan struct{})
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: two\n\n")
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), srv.URL, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TransferEncoding == nil || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	resp.Body.Close()
}

func TestCancelWhileWaiting(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
			return
		}
		echo(w, r)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := post(t, tr, ctx, srv.URL+"/slow", `{}`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled call returned after %s", d)
	}
	// The interrupted connection is not reused.
	if got := postRead(t, tr, srv.URL, `{"ok":1}`); got != `{"ok":1}` {
		t.Fatalf("body %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the cancelled one closed)", n)
	}
}

func TestCancelWhileReadingBody(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := post(t, tr, ctx, srv.URL, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	if n, err := resp.Body.Read(buf); err != nil || string(buf[:n]) != "data: one\n\n" {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not interrupt a blocked body read")
	}
}

// TestEarlyCloseOfEndlessBody: closing a stream that never ends returns
// at once and drops its connection (draining it would block for ever).
func TestEarlyCloseOfEndlessBody(t *testing.T) {
	gone := make(chan struct{})
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			echo(w, r)
			return
		}
		defer close(gone)
		for {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), srv.URL+"/stream", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { resp.Body.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of an endless body blocked")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not see the connection close")
	}
	if _, err := resp.Body.Read(make([]byte, 8)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if got := postRead(t, tr, srv.URL, `{"n":2}`); got != `{"n":2}` {
		t.Fatalf("body %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// rawServer answers each connection with handle, which reads the request
// from br and writes raw bytes to c.
func rawServer(t testing.TB, handle func(n int, c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(n, c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// answering is a backend that reads one request per connection and
// answers it with raw bytes.
func answering(t *testing.T, raw string) string {
	return rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, raw)
		}
	})
}

// repeating is answering that answers every request on a connection
// with raw, and counts the connections.
func repeating(t *testing.T, raw string) (string, *atomic.Int64) {
	var conns atomic.Int64
	u := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, raw)
		}
	})
	return u, &conns
}

func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

// TestPostAfterBackendClosedIdle: a backend that closes keep-alive
// connections after each answer (as Node does after its idle timeout)
// must not fail the next POST, which is not retried.
func TestPostAfterBackendClosedIdle(t *testing.T) {
	var served atomic.Int64
	hungUp := make(chan struct{}, 1)
	u := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		served.Add(1)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// Close without "Connection: close", as an idle timeout does.
		c.Close()
		hungUp <- struct{}{}
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for i := range 5 {
		resp, err := post(t, tr, context.Background(), u, `{}`)
		if err != nil {
			t.Fatalf("call %d after the backend closed the idle connection: %v", i, err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("body %q", got)
		}
		<-hungUp
		time.Sleep(5 * time.Millisecond) // the FIN crosses the loopback
	}
	if served.Load() != 5 {
		t.Fatalf("served %d, want 5", served.Load())
	}
}

// TestStaleGetRetried: when the backend closes an idle connection just
// as a GET goes out, the GET is sent once more on a new connection; a
// POST is not (it may have been acted on).
func TestStaleGetRetried(t *testing.T) {
	var conns atomic.Int64
	u := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		if n%2 == 0 {
			// Answer one request, then read the next and hang up
			// without a byte: a connection closed under a request.
			if _, err := readRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
			readRequest(br)
			return
		}
		if _, err := readRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
	})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			tr := newTransport()
			defer tr.CloseIdleConnections()
			do := func() (*http.Response, error) {
				req, _ := http.NewRequest(method, u, strings.NewReader(`{}`))
				return tr.RoundTrip(req)
			}
			resp, err := do()
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != "first" {
				t.Fatalf("body %q", got)
			}
			resp, err = do()
			if method == http.MethodPost {
				if err == nil {
					resp.Body.Close()
					t.Fatal("a POST on a connection closed under it was sent twice")
				}
				return
			}
			if err != nil {
				t.Fatalf("GET on a stale connection: %v", err)
			}
			if got := readAll(t, resp); got != "second" {
				t.Fatalf("body %q", got)
			}
		})
	}
}

func TestHeaderTooLarge(t *testing.T) {
	u := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
		for range 10000 {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	tr := &h1.Transport{Fallback: &fallback{}, MaxResponseHeaderSize: 64 << 10}
	defer tr.CloseIdleConnections()
	_, err := post(t, tr, context.Background(), u, `{}`)
	if err == nil || !strings.Contains(err.Error(), "response header too large") {
		t.Fatalf("err %v, want the header bound", err)
	}
}

func TestConnectionCloseNotReused(t *testing.T) {
	newConnEachCall(t, "Connection", "close", 3)
}

// newConnEachCall checks that calls answered with the header name: value
// each take a new connection.
func newConnEachCall(t *testing.T, name, value string, calls int) {
	t.Helper()
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(name, value)
		echo(w, r)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for range calls {
		postRead(t, tr, srv.URL, `{}`)
	}
	if n := conns.Load(); n != int64(calls) {
		t.Fatalf("%d connections, want %d", n, calls)
	}
}

// TestExtraBytesNotReused: bytes after a complete answer mean the
// connection's framing cannot be trusted for the next request.
func TestExtraBytesNotReused(t *testing.T) {
	u, conns := repeating(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for i := range 3 {
		if got := postRead(t, tr, u, `{}`); got != "ok" {
			t.Fatalf("call %d: body %q", i, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (none reused after stray bytes)", n)
	}
}

func TestSkipsInformational(t *testing.T) {
	u := answering(t, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
	tr := newTransport()
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), u, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || readAll(t, resp) != "real" {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestRefusesHeaderInjection(t *testing.T) {
	var hits atomic.Int64
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for _, h := range []http.Header{
		{"X-A\r\nX-Injected": {"1"}},
		{"X-A": {"v\r\nX-Injected: 1"}},
		{"X-A": {"v\nX-Injected: 1"}},
		{"X A": {"1"}},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
		req.Header = h
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
			t.Errorf("header %q was sent", h)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	req.Method = "POST /x HTTP/1.1\r\nX:"
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Error("a method with CRLF was sent")
	}
	if hits.Load() != 0 {
		t.Fatalf("backend saw %d requests", hits.Load())
	}
}

func TestFallback(t *testing.T) {
	fb := &fallback{}
	proxied := "http://behind-proxy.example/mcp"
	tr := &h1.Transport{Fallback: fb, Proxy: func(r *http.Request) (*url.URL, error) {
		if r.URL.String() == proxied {
			return url.Parse("http://proxy.example:3128")
		}
		return nil, nil
	}}
	defer tr.CloseIdleConnections()
	for _, u := range []string{"https://tls.example/mcp", proxied} {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{}`))
		resp, err := tr.RoundTrip(req)
		if err != nil || resp.StatusCode != 299 {
			t.Fatalf("%s: %v, %v", u, resp, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://up.example/ws", nil)
	req.Header.Set("Upgrade", "websocket")
	if resp, err := tr.RoundTrip(req); err != nil || resp.StatusCode != 299 {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	if len(fb.got) != 3 {
		t.Fatalf("fallback got %v, want the https, the proxied and the upgrade request", fb.got)
	}
}

func TestTraceHooks(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(echo))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	var got []string
	trace := &httptrace.ClientTrace{
		ConnectStart:         func(string, string) { got = append(got, "connect") },
		ConnectDone:          func(_, _ string, err error) { got = append(got, fmt.Sprintf("connected %v", err)) },
		WroteRequest:         func(httptrace.WroteRequestInfo) { got = append(got, "wrote") },
		GotFirstResponseByte: func() { got = append(got, "first byte") },
	}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	for range 2 {
		resp, err := post(t, tr, ctx, srv.URL, `{}`)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	want := "connect|connected <nil>|wrote|first byte|wrote|first byte"
	if s := strings.Join(got, "|"); s != want {
		t.Fatalf("hooks %s, want %s", s, want)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(echo))
	tr := &h1.Transport{Fallback: &fallback{}, IdleTimeout: 30 * time.Millisecond}
	defer tr.CloseIdleConnections()
	for range 2 {
		postRead(t, tr, srv.URL, `{}`)
		time.Sleep(60 * time.Millisecond)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the idle one expired)", n)
	}
}

func TestEmptyBodyClosedUnreadIsReused(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := post(t, tr, context.Background(), srv.URL, `{}`)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestCloseIdleConnections(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(echo))
	tr := newTransport()
	postRead(t, tr, srv.URL, `{}`)
	tr.CloseIdleConnections()
	postRead(t, tr, srv.URL, `{}`)
	tr.CloseIdleConnections()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestLargeAnswer: an answer far larger than the buffers arrives whole
// and the connection is reused after it.
func TestLargeAnswer(t *testing.T) {
	big := `"` + strings.Repeat("é", 1<<20) + `"`
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, big)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for range 2 {
		if got := postRead(t, tr, srv.URL, `{}`); got != big {
			t.Fatalf("got %d bytes, want %d", len(got), len(big))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestTooManyInformational(t *testing.T) {
	u := rawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		for range 1000 {
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\n\r\n"); err != nil {
				return
			}
		}
	})
	tr := newTransport()
	defer tr.CloseIdleConnections()
	_, err := post(t, tr, context.Background(), u, `{}`)
	if err == nil || !strings.Contains(err.Error(), "too many 1xx") {
		t.Fatalf("err %v, want the 1xx bound", err)
	}
}

// openConns is an httptest server that tracks its open connections.
func openConns(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &open
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleExpiry: connections of a burst that are never the most recent
// again still expire, under steady traffic and with none at all.
func TestIdleExpiry(t *testing.T) {
	srv, open := openConns(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		echo(w, r)
	}))
	tr := &h1.Transport{Fallback: &fallback{}, IdleTimeout: 100 * time.Millisecond}
	defer tr.CloseIdleConnections()
	call := func() {
		resp, err := post(t, tr, context.Background(), srv.URL, `{}`)
		if err != nil {
			t.Error(err)
			return
		}
		readAll(t, resp)
	}
	burst := func() {
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() { defer wg.Done(); call() }()
		}
		wg.Wait()
	}
	burst()
	if n := open.Load(); n < 10 {
		t.Fatalf("the burst opened %d connections; the test needs many", n)
	}
	for range 15 { // steady traffic for 3x the idle timeout
		call()
	}
	waitFor(t, "the burst's idle connections to expire under steady traffic", func() bool { return open.Load() <= 2 })
	burst()
	waitFor(t, "idle connections to expire without traffic", func() bool { return open.Load() == 0 })
}

// pipeBackend is a DialContext whose connections are in-memory pipes
// served by serve; wrap may alter the client's end.
func pipeBackend(t *testing.T, serve func(n int, c net.Conn), wrap func(n int, c net.Conn) net.Conn) (func(context.Context, string, string) (net.Conn, error), *atomic.Int64) {
	var dials atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	return func(context.Context, string, string) (net.Conn, error) {
		n := int(dials.Add(1)) - 1
		client, server := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer server.Close()
			serve(n, server)
		}()
		return wrap(n, client), nil
	}, &dials
}

// hungUp is a connection whose backend answered and hung up: what it
// sent can be read, a write fails as on a closed socket.
type hungUp struct{ net.Conn }

func (h hungUp) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestEarlyAnswer: a backend that refuses a request before reading it
// and hangs up gives the call its answer, not a broken pipe (which the
// gateway would count against the backend's health). The answer's body
// is read to its end however long it takes, and cancelling the call
// still interrupts it.
func TestEarlyAnswer(t *testing.T) {
	more := make(chan struct{})
	dial, _ := pipeBackend(t, func(n int, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\n")
		if n == 1 {
			io.Copy(io.Discard, c) // the body never comes; until the client hangs up
			return
		}
		select {
		case <-more:
			io.WriteString(c, "too large")
		case <-time.After(5 * time.Second):
		}
	}, func(_ int, c net.Conn) net.Conn { return hungUp{c} })
	tr := &h1.Transport{Fallback: &fallback{}, DialContext: dial}
	defer tr.CloseIdleConnections()

	resp, err := post(t, tr, context.Background(), "http://backend.invalid/mcp", `{"big":true}`)
	if err != nil {
		t.Fatalf("early answer lost: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	time.AfterFunc(400*time.Millisecond, func() { close(more) }) // past the wait for the answer
	if got := readAll(t, resp); got != "too large" {
		t.Fatalf("body %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	resp, err = post(t, tr, ctx, "http://backend.invalid/mcp", `{"big":true}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.AfterFunc(20*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("reading a cancelled early answer: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		resp.Body.Close()
		t.Fatal("cancelling the call did not interrupt reading its early answer")
	}
}

// TestPostRetriedWhenNothingWritten: a POST on a pooled connection the
// backend closed, of which not a byte left, is sent on a new connection
// (net/http does the same); the backend never saw it.
func TestPostRetriedWhenNothingWritten(t *testing.T) {
	var broken atomic.Bool
	dial, dials := pipeBackend(t, func(n int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRequest(br)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		}
	}, func(n int, c net.Conn) net.Conn {
		if n == 0 {
			return &breakable{Conn: c, broken: &broken}
		}
		return c
	})
	tr := &h1.Transport{Fallback: &fallback{}, DialContext: dial}
	defer tr.CloseIdleConnections()
	for i, path := range []string{"/one", "/two"} {
		resp, err := post(t, tr, context.Background(), "http://backend.invalid"+path, `{}`)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := readAll(t, resp); got != path {
			t.Fatalf("call %d: %q", i, got)
		}
		broken.Store(true)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// breakable fails every write, before any byte, once broken.
type breakable struct {
	net.Conn
	broken *atomic.Bool
}

func (b *breakable) Write(p []byte) (int, error) {
	if b.broken.Load() {
		return 0, syscall.EPIPE
	}
	return b.Conn.Write(p)
}

// failingBody is a request body that cannot be read.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("the client went away") }
func (failingBody) Close() error             { return nil }

// TestBodyErrorIsNotTheBackends: a request whose own body fails is not
// blamed on the connection: not reported as the backend's hang-up, and
// not sent again.
func TestBodyErrorIsNotTheBackends(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(echo))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), srv.URL, `{}`) // pools a connection
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	var replays atomic.Int64
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Body, req.ContentLength = failingBody{}, 10
	req.GetBody = func() (io.ReadCloser, error) { replays.Add(1); return failingBody{}, nil }
	_, err = tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "the client went away") || strings.Contains(err.Error(), "closed by the backend") {
		t.Fatalf("err %v, want the body's error alone", err)
	}
	if replays.Load() != 0 {
		t.Fatalf("sent again %d times", replays.Load())
	}
}

// TestReuseAfterBodilessAnswers: HEAD and 204 answers have no body to
// read, and their connection is reused; a request asking to close its
// connection is not.
func TestReuseAfterBodilessAnswers(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/empty" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Length", "7")
		if r.Method != http.MethodHead {
			io.WriteString(w, "content")
		}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	do := func(method, path string, closeConn bool) string {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Close = closeConn
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return fmt.Sprint(resp.StatusCode, readAll(t, resp))
	}
	for _, c := range []struct{ method, path, want string }{
		{http.MethodHead, "/", "200"}, {http.MethodGet, "/empty", "204"}, {http.MethodGet, "/", "200content"},
	} {
		if got := do(c.method, c.path, false); got != c.want {
			t.Fatalf("%s %s: %s, want %s", c.method, c.path, got, c.want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections after HEAD, 204 and GET, want 1", n)
	}
	do(http.MethodGet, "/", true)
	do(http.MethodGet, "/", false)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the one closed on request not reused)", n)
	}
}

// TestLargeBodiesToFallback: a body over MaxInlineBody or of unknown
// length is written by net/http, which reads the answer while writing.
func TestLargeBodiesToFallback(t *testing.T) {
	fb := &fallback{}
	tr := &h1.Transport{Fallback: fb}
	defer tr.CloseIdleConnections()
	big, _ := http.NewRequest(http.MethodPost, "http://backend.invalid/big", bytes.NewReader(make([]byte, h1.MaxInlineBody+1)))
	unknown, _ := http.NewRequest(http.MethodPost, "http://backend.invalid/unknown", io.MultiReader(strings.NewReader("{}")))
	for _, req := range []*http.Request{big, unknown} {
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if len(fb.got) != 2 {
		t.Fatalf("fallback got %v", fb.got)
	}
}

func TestInformationalHook(t *testing.T) {
	u := answering(t, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	tr := newTransport()
	defer tr.CloseIdleConnections()
	var got []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprint(code, h.Get("Link")))
			return nil
		},
	})
	resp, err := post(t, tr, ctx, u, `{}`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.Join(got, ",") != "103</x>" {
		t.Fatalf("Got1xxResponse saw %v", got)
	}
}

// TestStatusBelow100: a status under 100 is not informational; skipping
// it without its body would read that body as the next answer.
func TestStatusBelow100(t *testing.T) {
	forged := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
	u := answering(t, fmt.Sprintf("HTTP/1.1 099 Odd\r\nContent-Length: %d\r\n\r\n%s", len(forged), forged))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), u, `{}`)
	if err == nil {
		body := readAll(t, resp)
		t.Fatalf("status %d %q, want an error", resp.StatusCode, body)
	}
}

// TestKeepAliveTimeoutHonoured: a backend that says how long it keeps an
// idle connection (Keep-Alive: timeout=1, as Node says 5) closes it then;
// a request written at that moment is lost and, being a POST, cannot be
// sent again. So a connection idle for most of that time is not reused.
func TestKeepAliveTimeoutHonoured(t *testing.T) {
	u, conns := repeating(t, "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok")
	tr := newTransport()
	defer tr.CloseIdleConnections()
	call := func() {
		postRead(t, tr, u, `{}`)
	}
	call()
	call() // at once: reused
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	time.Sleep(700 * time.Millisecond) // past half the backend's second
	call()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: one idle for most of the backend's keep-alive timeout was reused", n)
	}
}

// TestKeepAliveZeroNotReused: "Keep-Alive: timeout=0" means the backend
// keeps no idle connection.
func TestKeepAliveZeroNotReused(t *testing.T) {
	newConnEachCall(t, "Keep-Alive", "timeout=0", 2)
}
