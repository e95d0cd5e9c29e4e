package proxy

// Tests of unexported gateway machinery: the upstream HTTP connection, the
// backend's reconnect bookkeeping, session answer delivery and progress
// routing. They drive the pieces directly with fakes, so each one pins a
// single behaviour.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

var discard = slog.New(slog.DiscardHandler)

// recv waits for one value; the deadline only guards against a hang.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// sseBackend is a streamable-HTTP backend that answers every request with an
// SSE stream, the way the TypeScript SDK does by default.
type sseBackend struct {
	srv     *httptest.Server
	gets    chan struct{} // one per GET stream opened
	answers chan []byte   // bodies of POSTed responses
	down    atomic.Bool   // answer every POST with HTTP 500
	inits   atomic.Int64  // initialize requests seen
}

func newSSEBackend(t *testing.T, beforeAnswer []string) *sseBackend {
	t.Helper()
	sb := &sseBackend{gets: make(chan struct{}, 16), answers: make(chan []byte, 16)}
	sb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush()
			sb.gets <- struct{}{}
			<-r.Context().Done()
			return
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if sb.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		m, err := jsonrpc.Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch m.Kind() {
		case jsonrpc.KindResponse:
			sb.answers <- body
			w.WriteHeader(http.StatusAccepted)
			return
		case jsonrpc.KindNotification:
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result string
		events := beforeAnswer
		switch m.Method {
		case "initialize":
			sb.inits.Add(1)
			w.Header().Set("Mcp-Session-Id", fmt.Sprintf("sess-%d", sb.inits.Load()))
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"sse","version":"1"}}`
			events = nil
		case "tools/list":
			result = `{"tools":[{"name":"t","inputSchema":{"type":"object"}}]}`
			events = nil
		default:
			result = `{}`
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, e := range events {
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", e)
		}
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}\n\n", m.ID, result)
	}))
	t.Cleanup(sb.srv.Close)
	return sb
}

func TestHTTPConnListensAfterSSEInitialize(t *testing.T) {
	sb := newSSEBackend(t, nil)
	c := newHTTPConn(sb.srv.URL, sb.srv.Client(), nil, connHooks{
		notification: func(context.Context, jsonrpc.Message) {},
		request:      func(context.Context, jsonrpc.Message) jsonrpc.Message { return jsonrpc.Message{} },
	}, discard)
	defer c.close()
	res, err := c.call(context.Background(), 1, "initialize", []byte(`{}`), nil, nil)
	if err != nil || res.Error != nil {
		t.Fatalf("initialize = %v, %v", res.Error, err)
	}
	// An initialize answered on an SSE stream must open the standalone GET
	// stream just like a JSON answer does, or list_changed and log
	// notifications from the backend are never heard.
	recv(t, "GET stream after an SSE-answered initialize", sb.gets)
}

func TestHTTPConnServerRequestKeepsItsParams(t *testing.T) {
	want := `{"messages":[{"role":"user","content":{"type":"text","text":"` + strings.Repeat("a", 200) + `"}}],"maxTokens":10}`
	// The sampling request is followed, on the same stream, by shorter events
	// that reuse the reader's buffer in place before the request's goroutine
	// reads it.
	events := []string{
		`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":` + want + `}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"zz"}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"yy"}}`,
	}
	sb := newSSEBackend(t, events)
	release := make(chan struct{})
	got := make(chan string, 1)
	c := newHTTPConn(sb.srv.URL, sb.srv.Client(), nil, connHooks{
		notification: func(context.Context, jsonrpc.Message) {},
		request: func(_ context.Context, req jsonrpc.Message) jsonrpc.Message {
			<-release
			got <- string(req.ID) + " " + string(req.Params)
			return jsonrpc.NewResult(nil, json.RawMessage(`{"role":"assistant"}`))
		},
	}, discard)
	defer c.close()
	if _, err := c.call(context.Background(), 7, "tools/call", []byte(`{"name":"x"}`), nil, nil); err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	close(release) // the whole stream has been read
	if g, w := recv(t, "sampling request", got), `"s1" `+want; g != w {
		t.Errorf("request seen by the hook = %.80s…, want %.80s…", g, w)
	}
	ans, err := jsonrpc.Decode(recv(t, "answer POSTed to the backend", sb.answers))
	if err != nil || string(ans.ID) != `"s1"` {
		t.Errorf("answer = %+v (%v), want id \"s1\"", ans, err)
	}
}

// hookRecorder is a backendHooks that ignores everything.
type hookRecorder struct{ changed atomic.Int64 }

func (h *hookRecorder) backendChanged(*Backend)                                        { h.changed.Add(1) }
func (h *hookRecorder) backendNotification(context.Context, *Backend, jsonrpc.Message) {}
func (h *hookRecorder) backendConnected(*Backend, string, *backendSnapshot)            {}
func (h *hookRecorder) backendRequest(_ context.Context, _ *Backend, req jsonrpc.Message) jsonrpc.Message {
	return jsonrpc.NewError(req.ID, jsonrpc.CodeMethodNotFound, "no", nil)
}

func runBackend(t *testing.T, url string) (*Backend, func()) {
	t.Helper()
	b := newBackend(config.Server{Name: "s", Transport: "http", URL: url, ConnectTimeout: 2 * time.Second},
		&hookRecorder{}, http.DefaultClient, discard)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.run(ctx, 20*time.Millisecond) })
	return b, func() { cancel(); wg.Wait() }
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBackendLostAfterRefreshIsNotReady(t *testing.T) {
	sb := newSSEBackend(t, nil)
	b, stop := runBackend(t, sb.srv.URL)
	defer stop()
	waitUntil(t, "backend ready", b.Ready)
	first := b.snap.Load()
	b.Refresh(context.Background(), listTools) // replaces the snapshot, same connection
	if b.snap.Load() == first {
		t.Fatal("Refresh did not publish a new snapshot")
	}
	sb.down.Store(true) // health pings and reconnects fail from now on
	// The dead connection's snapshot must be withdrawn even though Refresh
	// replaced the one the run loop started with.
	waitUntil(t, "backend not ready after its connection died", func() bool { return !b.Ready() })
}

func TestBackendIgnoresFailuresOfAnOldConnection(t *testing.T) {
	sb := newSSEBackend(t, nil)
	b, stop := runBackend(t, sb.srv.URL)
	defer stop()
	waitUntil(t, "backend ready", b.Ready)
	old := b.snap.Load()
	b.markDown(old.conn, errors.New("boom"))
	b.markDown(old.conn, errors.New("boom again")) // a second call failing at once
	waitUntil(t, "reconnect", func() bool { s := b.snap.Load(); return s != nil && s.conn != old.conn })
	fresh := b.snap.Load()
	// A call that was in flight on the old connection fails late.
	b.markDown(old.conn, errors.New("late failure"))
	if got := b.snap.Load(); got != fresh {
		t.Errorf("after a late failure on the old connection, snapshot = %p, want the fresh %p", got, fresh)
	}
	if n := len(b.kick); n != 0 {
		t.Errorf("kicks pending against the fresh connection = %d, want 0", n)
	}
}

func testGateway(t *testing.T, servers ...string) *Gateway {
	t.Helper()
	cfg := &config.Config{}
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, config.Server{Name: s, Transport: "http", URL: "http://127.0.0.1:1/mcp"})
	}
	g, err := New(Options{Config: cfg, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSessionDuplicateAnswerDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testGateway(t).newSession("s", nil)
		ch, done := s.awaitResponse(`"q1"`)
		defer done()
		answer := jsonrpc.NewResult(json.RawMessage(`"q1"`), json.RawMessage(`{}`))
		if !s.deliver(answer) {
			t.Fatal("first deliver = false, want true")
		}
		finished := make(chan struct{})
		go func() { s.deliver(answer); close(finished) }() // the client repeats itself
		synctest.Wait()
		select {
		case <-finished:
		default:
			t.Error("a duplicate answer blocked deliver (and the client's POST) forever")
			<-ch
			<-finished
		}
		if got := <-ch; string(got.ID) != `"q1"` {
			t.Errorf("delivered id = %s, want \"q1\"", got.ID)
		}
	})
}

// TestSessionAnswerFoundByEqualID: a client's answer to a server request
// reaches it when the id is spelled another way JSON deems equal (an
// escaped character), and not when it is the number that reads alike
// (fails before the fix: answers were matched byte for byte).
func TestSessionAnswerFoundByEqualID(t *testing.T) {
	s := testGateway(t).newSession("s", nil)
	ch, done := s.awaitResponse(`"mcptrail-s1"`)
	defer done()
	if s.deliver(jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{}`))) {
		t.Error("an answer with id 1 reached the request \"mcptrail-s1\"")
	}
	if !s.deliver(jsonrpc.NewResult(json.RawMessage(`"mcptrail\u002ds1"`), json.RawMessage(`{}`))) {
		t.Fatal(`an answer with id "mcptrail\u002ds1" did not reach the request "mcptrail-s1"`)
	}
	if got := <-ch; string(got.Result) != `{}` {
		t.Errorf("delivered %+v", got)
	}
}

// captureReplier collects what a call sends its client before the answer.
type captureReplier struct {
	mu  sync.Mutex
	got []string
}

func (r *captureReplier) notify(b []byte) error {
	r.mu.Lock()
	r.got = append(r.got, string(b))
	r.mu.Unlock()
	return nil
}

func TestProgressRoutedOnlyFromTheCallsBackend(t *testing.T) {
	tests := []struct {
		name, from string
		want       []string
	}{
		{"from the serving backend", "alpha", []string{`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}`}},
		{"spoofed by another backend", "beta", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testGateway(t, "alpha", "beta")
			out := &captureReplier{}
			c := &call{g: g, ps: g.ps(), server: "alpha", out: out, msg: jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", nil)}
			g.progress.Store(`"mcptrail-1"`, &progressRoute{c: c, original: json.RawMessage(`7`)})
			g.backendNotification(context.Background(), g.bs().byName[tt.from],
				jsonrpc.NewNotification("notifications/progress", json.RawMessage(`{"progressToken":"mcptrail-1","progress":1}`)))
			if fmt.Sprint(out.got) != fmt.Sprint(tt.want) {
				t.Errorf("client got %q, want %q", out.got, tt.want)
			}
		})
	}
}

func TestClosedSessionEndsItsStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testGateway(t).newSession("s", nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ended := make(chan struct{})
		go func() {
			s.streamLoop(ctx, func([]byte) error { return nil })
			close(ended)
		}()
		synctest.Wait()
		s.close() // DELETE /mcp, or the session expired
		synctest.Wait()
		select {
		case <-ended:
		default:
			t.Error("the standalone stream of a closed session stays open")
			cancel()
			<-ended
		}
	})
}

// streamed drains what is queued on a session's standalone stream.
func streamed(s *Session) []string {
	var out []string
	for {
		select {
		case b := <-s.stream:
			out = append(out, string(b))
		default:
			return out
		}
	}
}

func TestNotificationsOnACallsStreamStayWithItsClient(t *testing.T) {
	const logMsg = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"secret of session one"}}`
	const custom = `{"jsonrpc":"2.0","method":"notifications/custom","params":{"x":1}}`
	tests := []struct {
		name     string
		msg      string
		fromCall bool // arrived on the call's own response stream
		wantCall []string
		wantMine []string // session one's standalone stream
		wantThem []string // session two's standalone stream
	}{
		{"log on the call's stream", logMsg, true, []string{logMsg}, nil, nil},
		{"custom on the call's stream", custom, true, []string{custom}, nil, nil},
		{"log on the GET stream", logMsg, false, nil, []string{logMsg}, []string{logMsg}},
		{"custom on the GET stream", custom, false, nil, []string{custom}, []string{custom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testGateway(t, "alpha")
			one, two := g.newSession("one", nil), g.newSession("two", nil)
			for _, s := range []*Session{one, two} {
				s.setLogLevel("info")
				_ = g.sessions.add(s, config.Limits{})
			}
			out := &captureReplier{}
			c := &call{g: g, ps: g.ps(), sess: one, server: "alpha", out: out, msg: jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", nil)}
			ctx := context.Background()
			if tt.fromCall {
				ctx = context.WithValue(ctx, callKey{}, c)
			}
			n, err := jsonrpc.Decode([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			g.backendNotification(ctx, g.bs().byName["alpha"], n)
			for _, check := range []struct {
				who       string
				got, want []string
			}{{"the call", out.got, tt.wantCall}, {"session one", streamed(one), tt.wantMine}, {"session two", streamed(two), tt.wantThem}} {
				if !slices.Equal(check.got, check.want) {
					t.Errorf("%s got %q, want %q", check.who, check.got, check.want)
				}
			}
		})
	}
}

// listConn is an upstreamConn serving lists; tools/list waits for gate.
type listConn struct {
	toolsAsked chan struct{}
	gate       chan struct{}
}

func (c *listConn) call(_ context.Context, _ int64, method string, _ []byte, _ http.Header, _ *hopTiming) (upstreamResult, error) {
	switch method {
	case "tools/list":
		close(c.toolsAsked)
		<-c.gate
		return upstreamResult{Result: json.RawMessage(`{"tools":[{"name":"new-tool"}]}`)}, nil
	case "prompts/list":
		return upstreamResult{Result: json.RawMessage(`{"prompts":[{"name":"new-prompt"}]}`)}, nil
	}
	return upstreamResult{}, fmt.Errorf("unexpected %s", method)
}
func (c *listConn) notify(context.Context, string, []byte) error { return nil }
func (c *listConn) setProtocolVersion(string)                    {}
func (c *listConn) close() error                                 { return nil }

func TestConcurrentRefreshesKeepBothLists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(config.Server{Name: "s"}, &hookRecorder{}, nil, discard)
		conn := &listConn{toolsAsked: make(chan struct{}), gate: make(chan struct{})}
		b.snap.Store(&backendSnapshot{conn: conn})
		var wg sync.WaitGroup
		wg.Go(func() { b.Refresh(context.Background(), listTools) }) // tools/list_changed
		<-conn.toolsAsked
		wg.Go(func() { b.Refresh(context.Background(), listPrompts) }) // prompts/list_changed
		synctest.Wait()
		close(conn.gate)
		wg.Wait()
		s := b.snap.Load()
		got := fmt.Sprintf("tools=%s prompts=%s", s.lists[listTools], s.lists[listPrompts])
		if want := `tools=[{"name":"new-tool"}] prompts=[{"name":"new-prompt"}]`; got != want {
			t.Errorf("after two refreshes %s, want %s", got, want)
		}
	})
}

func TestSessionlessRequestsAllocateNoStream(t *testing.T) {
	g := testGateway(t)
	allocs := testing.AllocsPerRun(100, func() {
		s := g.newSession("", nil)
		s.push([]byte(`{}`)) // a late message for a sessionless request is dropped
	})
	with := testing.AllocsPerRun(100, func() {
		s := g.newSession("x", nil)
		s.push([]byte(`{}`)) // queued for the session's stream
	})
	if s := g.newSession("", nil); s.stream != nil {
		t.Errorf("sessionless session has a %d-slot stream buffer, want none", cap(s.stream))
	}
	if allocs >= with {
		t.Errorf("allocations for a sessionless session = %v, want fewer than a real session's %v", allocs, with)
	}
}

func TestBackendErrorsHideURLSecrets(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close() // nothing listens there any more
	hostOf := func(u string) string { return strings.TrimPrefix(u, "http://") }
	tests := []struct {
		name, url, wantIn string
	}{
		{"HTTP error", "http://user:hunter2@" + hostOf(down.URL) + "/mcp?api_key=SECRET", "HTTP 503"},
		{"connection refused", "http://user:hunter2@" + hostOf(refusedURL) + "/mcp?api_key=SECRET", "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newHTTPConn(tt.url, http.DefaultClient, nil, connHooks{}, discard)
			defer c.close()
			_, err := c.call(context.Background(), 1, "tools/call", []byte(`{}`), nil, nil)
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "SECRET") || strings.Contains(msg, "hunter2") || !strings.Contains(msg, tt.wantIn) {
				t.Errorf("error = %q, want it to say %q without the password or query", msg, tt.wantIn)
			}
			if err := c.notify(context.Background(), "notifications/x", nil); err == nil || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("notify error = %v, want one without the query", err)
			}
		})
	}
}

// TestBackendRequestWithoutCauseNeedsOneSession: a server→client request
// with no causal link goes to the newest call in flight only when every call
// in flight on that backend belongs to one session.
func TestBackendRequestWithoutCauseNeedsOneSession(t *testing.T) {
	tests := []struct {
		name     string
		sessions []string // session of each call in flight
		wantSent bool
	}{
		{"one session", []string{"s1", "s1"}, true},
		{"two sessions", []string{"s1", "s2"}, false},
		{"no call", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := testGateway(t, "alpha")
			b := g.bs().byName["alpha"]
			byID := map[string]*Session{}
			var outs []*captureReplier
			for i, sid := range tt.sessions {
				s := byID[sid]
				if s == nil {
					s = g.newSession(sid, nil)
					s.setClient("2025-11-25", "c", "1", map[string]json.RawMessage{"sampling": json.RawMessage(`{}`)})
					byID[sid] = s
				}
				out := &captureReplier{}
				outs = append(outs, out)
				c := &call{g: g, ps: g.ps(), sess: s, out: out, start: time.Now().Add(time.Duration(i) * time.Millisecond), reqID: fmt.Sprint("r", i),
					msg: jsonrpc.NewRequest(json.RawMessage(fmt.Sprint(i)), "tools/call", nil)}
				b.inflight.Store(fmt.Sprint(i), c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			answer := g.backendRequest(ctx, b, jsonrpc.NewRequest(json.RawMessage(`"s-1"`), "sampling/createMessage", json.RawMessage(`{"messages":[]}`)))
			sent := false
			for _, o := range outs {
				if len(o.got) > 0 {
					sent = true
				}
			}
			if sent != tt.wantSent {
				t.Errorf("request forwarded to a client = %v, want %v", sent, tt.wantSent)
			}
			if !tt.wantSent && (answer.Error == nil || !strings.Contains(answer.Error.Message, "session")) {
				t.Errorf("answer = %+v, want an error saying no single session could be chosen", answer)
			}
		})
	}
}

func TestCapError(t *testing.T) {
	long := strings.Repeat("é", maxErrorMessage) // 2 bytes a rune
	tests := []struct {
		in   string
		want int // length of the result
	}{
		{"short", 5},
		{strings.Repeat("a", maxErrorMessage), maxErrorMessage},
		{strings.Repeat("a", maxErrorMessage+1), maxErrorMessage + len("…(truncated)")},
		{long, maxErrorMessage + len("…(truncated)")},
	}
	for _, tt := range tests {
		got := capError(tt.in)
		if len(got) != tt.want || !utf8.ValidString(got) {
			t.Errorf("capError(%d bytes) = %d bytes (valid UTF-8 %v), want %d", len(tt.in), len(got), utf8.ValidString(got), tt.want)
		}
	}
}

// blockingWriter is a ResponseWriter whose writes block until its write
// deadline passes, like a client that stopped reading.
type blockingWriter struct {
	hdr      http.Header
	deadline time.Time
	writes   atomic.Int32
}

func (w *blockingWriter) Header() http.Header { return w.hdr }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Flush()              {}
func (w *blockingWriter) SetWriteDeadline(t time.Time) error {
	w.deadline = t
	return nil
}
func (w *blockingWriter) Write(b []byte) (int, error) {
	w.writes.Add(1)
	if w.deadline.IsZero() {
		select {} // would block forever
	}
	time.Sleep(time.Until(w.deadline))
	return 0, errors.New("i/o timeout")
}

// TestStuckClientDoesNotStallTheBackend: a notification to a client that
// stopped reading gives up at the write deadline, and later ones fail at
// once (the caller then queues them on the session without blocking).
func TestStuckClientDoesNotStallTheBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{hdr: http.Header{}}
		h := &httpReplier{w: w, reqID: "r1"}
		start := time.Now()
		if err := h.notify([]byte(`{"jsonrpc":"2.0","method":"notifications/progress"}`)); err == nil {
			t.Fatal("notify to a stuck client succeeded")
		}
		if waited := time.Since(start); waited != notifyWriteTimeout {
			t.Errorf("first notify waited %v, want the write timeout %v", waited, notifyWriteTimeout)
		}
		start = time.Now()
		if err := h.notify([]byte(`{}`)); !errors.Is(err, errStuck) {
			t.Errorf("second notify = %v, want errStuck at once", err)
		}
		if time.Since(start) != 0 || w.writes.Load() != 1 {
			t.Errorf("second notify wrote again (%d writes) or waited", w.writes.Load())
		}
	})
}

// TestEnsureProfileWaitsForTheConnect: a list request of a capability
// profile whose connection is published but still finishing (re-reading
// lists the backend changed during the handshake, rebuilding the profile's
// catalog) waits for it, instead of being served the catalog built from the
// primary connection's lists (a client saw its first tools/list without the
// tools server-everything offers its profile; fails before the fix).
func TestEnsureProfileWaitsForTheConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := testGateway(t, "s")
		b := g.bs().byName["s"]
		b.snap.Store(&backendSnapshot{conn: &listConn{}, lists: [numLists][]json.RawMessage{listTools: {json.RawMessage(`{"name":"plain"}`)}}})
		g.backendChanged(b)
		key, caps := profileOf(map[string]json.RawMessage{"sampling": json.RawMessage(`{}`)})
		v := b.variantFor(key, caps)
		g.catalogFor(key)          // built from the primary's lists: the profile's connection is not up
		v.connecting <- struct{}{} // the connect in flight
		v.snap.Store(&backendSnapshot{conn: &listConn{}, lists: [numLists][]json.RawMessage{listTools: {json.RawMessage(`{"name":"plain"}`), json.RawMessage(`{"name":"sample"}`)}}})
		sess := g.newSession("x", nil)
		sess.setClient("2025-11-25", "c", "1", map[string]json.RawMessage{"sampling": json.RawMessage(`{}`)})
		c := &call{g: g, sess: sess}
		done := make(chan struct{})
		go func() { c.ensureProfile(context.Background()); close(done) }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("ensureProfile returned while the profile's connect was still finishing")
		default:
		}
		g.backendChanged(b) // the connect finishes: catalogs rebuilt, then released
		<-v.connecting
		<-done
		var names []string
		for _, it := range g.catalogFor(key).items[listTools] {
			names = append(names, it.name)
		}
		if got := strings.Join(names, ","); got != "s.plain,s.sample" {
			t.Errorf("the profile's tools = %s, want s.plain,s.sample", got)
		}
	})
}
