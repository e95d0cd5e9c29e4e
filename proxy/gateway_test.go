package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// TestMain lets the test binary serve as a stdio backend: the gateway under
// test spawns os.Args[0] with MCPTRAIL_TESTBACKEND set.
func TestMain(m *testing.M) {
	if addr := os.Getenv("MCPTRAIL_TESTBACKEND_HTTP"); addr != "" {
		// A backend process of its own over HTTP, for tests that kill it.
		if err := testbackend.RunHTTP(context.Background(), "v1", addr, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv("MCPTRAIL_TESTBACKEND"); v != "" && os.Getenv("MCPTRAIL_TESTBACKEND_SUBSCRIBABLE") != "" {
		if err := testbackend.New(testbackend.Options{Variant: v, Subscribable: true}).ServeStdio(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv("MCPTRAIL_TESTBACKEND"); v != "" {
		if err := testbackend.RunStdio(context.Background(), v, os.Getenv("MCPTRAIL_TESTBACKEND_MUTABLE") != ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// mcp-go's HTTP transports and net/http keep idle-connection
		// readers that outlive a test by a moment.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/mark3labs/mcp-go/client/transport.(*Stdio).readResponses"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).Start.func2"),
		// The test backend's mcp-go server keeps a per-session pump.
		goleak.IgnoreAnyFunction("github.com/mark3labs/mcp-go/server.(*StreamableHTTPServer).startListeningPump.func1"),
	)
}

// memRecorder is an in-memory proxy.Recorder.
type memRecorder struct {
	mu     sync.Mutex
	events []recorder.Event
}

func (m *memRecorder) Record(ev *recorder.Event) error {
	m.mu.Lock()
	m.events = append(m.events, *ev)
	m.mu.Unlock()
	return nil
}

func (m *memRecorder) byRequest(id string) []recorder.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []recorder.Event
	for _, e := range m.events {
		if e.RequestID == id {
			out = append(out, e)
		}
	}
	return out
}

// fakeRedactor passes payloads through, so tests can see them.
type fakeRedactor struct{}

func (fakeRedactor) Payload(b []byte) ([]byte, int, bool, string) { return b, 0, false, "" }
func (fakeRedactor) String(s string) (string, int)                { return s, 0 }
func (fakeRedactor) Version() string                              { return "test" }

// stdioServer is a config entry that runs the test binary as a backend.
func stdioServer(name, variant string) config.Server {
	return config.Server{Name: name, Transport: "stdio", Command: os.Args[0], Env: map[string]string{"MCPTRAIL_TESTBACKEND": variant}, Timeout: 10 * time.Second}
}

type env struct {
	gw   *proxy.Gateway
	url  string
	rec  *memRecorder
	logs *bytes.Buffer
}

// startGateway runs a gateway with the given servers until the test ends,
// once it and every backend are ready.
func startGateway(t testing.TB, cfg *config.Config, opts ...func(*proxy.Options)) *env {
	t.Helper()
	e := startGatewayUnready(t, cfg, opts...)
	waitFor(t, "gateway ready", func() bool { ok, _ := e.gw.Ready(); return ok && allReady(e.gw, cfg) })
	return e
}

// startGatewayUnready is startGateway without waiting for readiness.
func startGatewayUnready(t testing.TB, cfg *config.Config, opts ...func(*proxy.Options)) *env {
	t.Helper()
	if cfg.NamespaceSeparator == "" {
		cfg.NamespaceSeparator = "."
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	rec := &memRecorder{}
	logs := &bytes.Buffer{}
	o := proxy.Options{
		Config: cfg, Recorder: rec, Redactor: fakeRedactor{},
		Logger:         slog.New(slog.NewJSONHandler(&syncWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HealthInterval: 200 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.CloseClientConnections()
		_ = gw.Shutdown(ctx)
		srv.Close()
	})
	return &env{gw: gw, url: srv.URL, rec: rec, logs: logs}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// String is what was written, when w is a fmt.Stringer (a bytes.Buffer);
// safe while the gateway writes.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(fmt.Stringer).String()
}

func allReady(gw *proxy.Gateway, cfg *config.Config) bool {
	for _, s := range cfg.Servers {
		if b := gw.Backend(s.Name); b == nil || !b.Ready() {
			return false
		}
	}
	return true
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newClient connects an mcp-go client through the gateway.
func newClient(t *testing.T, url string, opts ...client.ClientOption) *client.Client {
	t.Helper()
	return newClientWithHeaders(t, url, nil, opts...)
}

func newClientWithHeaders(t *testing.T, url string, headers map[string]string, opts ...client.ClientOption) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url+"/mcp", transport.WithHTTPHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]client.ClientOption{client.WithProtocolVersion("2025-11-25")}, opts...)
	c := client.NewClient(tr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "gateway-test", Version: "1"}
	req.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}

func callTool(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("CallTool(%s) error: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var sb strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String()
}

func twoBackends(t testing.TB) (*config.Config, *testbackend.Backend) {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second},
		stdioServer("beta", "v2"),
	}}
	return cfg, tb
}

func TestCollidingBackendsAreBothReachable(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	c := newClient(t, e.url)
	ctx := context.Background()
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	for _, want := range []string{"alpha.echo", "alpha.add", "beta.echo", "beta.add"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list = %v, missing %s", names, want)
		}
	}
	// alpha is v1, beta is v2 (add off by one): the namespace decides.
	if got := text(callTool(t, c, "alpha.add", map[string]any{"a": 2, "b": 3})); got != "5" {
		t.Errorf("alpha.add(2,3) = %q, want 5", got)
	}
	if got := text(callTool(t, c, "beta.add", map[string]any{"a": 2, "b": 3})); got != "6" {
		t.Errorf("beta.add(2,3) = %q, want 6 (v2)", got)
	}
	// Colliding resource URIs are rewritten per server and both readable.
	res, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	for _, u := range uris {
		rr := mcp.ReadResourceRequest{}
		rr.Params.URI = u
		got, err := c.ReadResource(ctx, rr)
		if err != nil {
			t.Errorf("ReadResource(%s): %v", u, err)
			continue
		}
		if len(got.Contents) == 0 {
			t.Errorf("ReadResource(%s): no contents", u)
		}
	}
	if len(uris) < 2 || !slices.ContainsFunc(uris, func(u string) bool { return strings.HasPrefix(u, "mcptrail://alpha/") }) {
		t.Errorf("resource URIs = %v, want colliding ones rewritten as mcptrail://<server>/...", uris)
	}
}

// post sends one raw JSON-RPC body to /mcp.
func post(t testing.TB, url, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// initSession opens a session with raw HTTP and returns its id.
func initSession(t testing.TB, url string, hdr map[string]string) string {
	t.Helper()
	resp, b := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`, hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("initialize: %d %s", resp.StatusCode, b)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("initialize: no Mcp-Session-Id")
	}
	return sid
}

type rpcResp struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func decodeResp(t testing.TB, b []byte) rpcResp {
	t.Helper()
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		// SSE: take the last data line with a message.
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if d, ok := strings.CutPrefix(lines[i], "data: "); ok && strings.TrimSpace(d) != "" {
				b = []byte(d)
				break
			}
		}
	}
	var r rpcResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return r
}

func TestRequestIDOnEveryHop(t *testing.T) {
	cfg, tb := twoBackends(t)
	e := startGateway(t, cfg)
	sid := initSession(t, e.url, nil)
	const clientID = "01JCLIENTSUPPLIEDREQUEST01"
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"hi"}}}`,
		map[string]string{"Mcp-Session-Id": sid, "X-Request-Id": clientID})
	if got := resp.Header.Get("X-Request-Id"); got != clientID {
		t.Errorf("response X-Request-Id = %q, want %q (kept from the client)", got, clientID)
	}
	r := decodeResp(t, b)
	var res struct {
		Meta map[string]string `json:"_meta"`
	}
	_ = json.Unmarshal(r.Result, &res)
	if got := res.Meta[proxy.MetaRequestID]; got != clientID {
		t.Errorf("result._meta[%s] = %q, want %q", proxy.MetaRequestID, got, clientID)
	}
	// The backend saw it in the header and in params._meta.
	var seen *testbackend.Seen
	for _, s := range tb.Seen() {
		if s.Method == "tools/call" {
			seen = &s
		}
	}
	if seen == nil {
		t.Fatal("backend saw no tools/call")
	}
	if seen.RequestID != clientID {
		t.Errorf("upstream X-Request-Id = %q, want %q", seen.RequestID, clientID)
	}
	if !strings.Contains(string(seen.Meta), clientID) {
		t.Errorf("upstream params._meta = %s, want it to carry %s", seen.Meta, clientID)
	}
	// Generated IDs are ULIDs, and gateway errors carry them in data.
	resp, b = post(t, e.url, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"nosuch.tool"}}`, map[string]string{"Mcp-Session-Id": sid})
	gen := resp.Header.Get("X-Request-Id")
	if len(gen) != 26 {
		t.Errorf("generated request ID %q is not a ULID", gen)
	}
	r = decodeResp(t, b)
	if r.Error == nil || !strings.Contains(string(r.Error.Data), gen) {
		t.Errorf("error = %+v, want data carrying request ID %s", r.Error, gen)
	}
	// Every recorded hop and the log lines carry the ID.
	hops := e.rec.byRequest(clientID)
	var kinds []string
	for _, h := range hops {
		kinds = append(kinds, h.Hop.String())
	}
	for _, want := range []string{"inbound", "upstream", "response"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("recorded hops for %s = %v, missing %s", clientID, kinds, want)
		}
	}
	if !strings.Contains(e.logs.String(), gen) {
		t.Errorf("logs do not mention failed request %s", gen)
	}
}

// TestEmptyResultsStayEmpty: ping and logging/setLevel answer {} exactly
// (the spec's empty result); their request ID is in the header only.
func TestEmptyResultsStayEmpty(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	sid := initSession(t, e.url, nil)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}`,
	} {
		resp, b := post(t, e.url, body, map[string]string{"Mcp-Session-Id": sid})
		r := decodeResp(t, b)
		if string(r.Result) != "{}" {
			t.Errorf("%s: result = %s, want {}", body, r.Result)
		}
		if id := resp.Header.Get("X-Request-Id"); id == "" || len(e.rec.byRequest(id)) == 0 {
			t.Errorf("%s: X-Request-Id %q does not name recorded hops", body, id)
		}
	}
}

func TestBadInput(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.MaxBodyBytes = 1024
	e := startGateway(t, cfg)
	sid := initSession(t, e.url, nil)
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"` + strings.Repeat("x", 2048) + `"}}}`
	tests := []struct {
		name       string
		body       string
		hdr        map[string]string
		wantStatus int
		wantCode   int
	}{
		{"malformed JSON", `{"jsonrpc":"2.0",`, map[string]string{"Mcp-Session-Id": sid}, 400, -32700},
		{"not JSON-RPC 2.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": sid}, 400, -32600},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, map[string]string{"Mcp-Session-Id": sid}, 400, -32600},
		{"no session", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil, 400, -32600},
		{"unknown session", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": "nope"}, 404, -32600},
		{"oversized body", big, map[string]string{"Mcp-Session-Id": sid}, 413, -32005},
		{"unknown tool", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"zzz"}}`, map[string]string{"Mcp-Session-Id": sid}, 200, -32602},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"no/such"}`, map[string]string{"Mcp-Session-Id": sid}, 200, -32601},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := post(t, e.url, tt.body, tt.hdr)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, b)
			}
			r := decodeResp(t, b)
			if r.Error == nil || r.Error.Code != tt.wantCode {
				t.Fatalf("error = %s, want code %d", b, tt.wantCode)
			}
			id := resp.Header.Get("X-Request-Id")
			if id == "" || !strings.Contains(string(r.Error.Data), id) {
				t.Errorf("error data %s does not carry request ID %q", r.Error.Data, id)
			}
		})
	}
	// The gateway still serves after all of that.
	c := newClient(t, e.url)
	if got := text(callTool(t, c, "alpha.echo", map[string]any{"message": "still here"})); !strings.Contains(got, "still here") {
		t.Errorf("echo after bad input = %q", got)
	}
}

func TestProgressArrivesInOrderBeforeResult(t *testing.T) {
	// Only the HTTP backend here: mcp-go's own stdio server writes
	// notifications from a separate goroutine, so it may put its result
	// before its last progress. The stdio relay's ordering is covered with
	// server-everything in the end-to-end tests.
	for _, server := range []string{"alpha"} {
		t.Run(server, func(t *testing.T) {
			cfg, _ := twoBackends(t)
			e := startGateway(t, cfg)
			var mu sync.Mutex
			var progress []float64
			var resultSeen bool
			var lateProgress bool
			c := newClient(t, e.url)
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method != "notifications/progress" {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if resultSeen {
					lateProgress = true
				}
				if p, ok := n.Params.AdditionalFields["progress"].(float64); ok {
					progress = append(progress, p)
				}
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = server + ".slow"
			req.Params.Arguments = map[string]any{"steps": 5, "delay_ms": 10}
			req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1"}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.CallTool(ctx, req); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			resultSeen = true
			got := slices.Clone(progress)
			mu.Unlock()
			if len(got) != 5 || !slices.IsSorted(got) {
				t.Errorf("progress = %v, want 5 increasing values before the result", got)
			}
			if lateProgress {
				t.Error("progress arrived after the result")
			}
		})
	}
}

func TestAuthMatrix(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Auth.Tokens = []config.Token{
		{Name: "alice", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"alpha.*"}},
		{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"beta.echo"}},
	}
	e := startGateway(t, cfg)
	// No token and a wrong token: 401 with WWW-Authenticate.
	for _, tok := range []string{"", "wrong"} {
		hdr := map[string]string{}
		if tok != "" {
			hdr["Authorization"] = "Bearer " + tok
		}
		resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, hdr)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("token %q: status %d, WWW-Authenticate %q; want 401 Bearer (%s)", tok, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
		}
	}
	tests := []struct {
		token, tool string
		allowed     bool
	}{
		{"alice-token", "alpha.echo", true},
		{"alice-token", "alpha.add", true},
		{"alice-token", "beta.echo", false},
		{"bob-token", "beta.echo", true},
		{"bob-token", "beta.add", false},
		{"bob-token", "alpha.echo", false},
	}
	clients := map[string]*client.Client{}
	for _, tok := range []string{"alice-token", "bob-token"} {
		clients[tok] = newClientWithHeaders(t, e.url, map[string]string{"Authorization": "Bearer " + tok})
	}
	for _, tt := range tests {
		t.Run(tt.token+"/"+tt.tool, func(t *testing.T) {
			c := clients[tt.token]
			req := mcp.CallToolRequest{}
			req.Params.Name = tt.tool
			req.Params.Arguments = map[string]any{"message": "x", "a": 1, "b": 1}
			_, err := c.CallTool(context.Background(), req)
			if tt.allowed && err != nil {
				t.Errorf("CallTool(%s) with %s = %v, want allowed", tt.tool, tt.token, err)
			}
			if !tt.allowed && (err == nil || !strings.Contains(err.Error(), "not allowed")) {
				t.Errorf("CallTool(%s) with %s = %v, want a not-allowed error", tt.tool, tt.token, err)
			}
			tools, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			listed := slices.ContainsFunc(tools.Tools, func(x mcp.Tool) bool { return x.Name == tt.tool })
			if listed != tt.allowed {
				t.Errorf("tools/list for %s lists %s = %v, want %v", tt.token, tt.tool, listed, tt.allowed)
			}
		})
	}
	// The denial is recorded with the principal and decision.
	var denied bool
	e.rec.mu.Lock()
	for _, ev := range e.rec.events {
		if ev.Hop == recorder.HopAuth && ev.Principal == "bob" && ev.AuthDecision == "denied" && ev.Target == "beta.add" {
			denied = true
		}
	}
	e.rec.mu.Unlock()
	if !denied {
		t.Error("no auth hop recorded for bob denied on beta.add")
	}
}

func TestBackendDiesAndComesBack(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: tb.HTTPHandler()}
	go func() { _ = srv.Serve(ln) }()
	cfg := &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: "http://" + addr + "/mcp", Timeout: 5 * time.Second, ConnectTimeout: time.Second},
		stdioServer("beta", "v1"),
	}}
	e := startGateway(t, cfg)
	var listChanged sync.WaitGroup
	listChanged.Add(1)
	var once sync.Once
	c := newClient(t, e.url)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/tools/list_changed" {
			once.Do(listChanged.Done)
		}
	})
	// Open the standalone stream so list_changed can reach us.
	_ = callTool(t, c, "alpha.echo", map[string]any{"message": "before"})

	_ = srv.Close()
	req := mcp.CallToolRequest{}
	req.Params.Name = "alpha.echo"
	req.Params.Arguments = map[string]any{"message": "during"}
	_, err = c.CallTool(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "alpha") {
		t.Fatalf("call to dead backend = %v, want a clear error naming it", err)
	}
	waitFor(t, "alpha marked down", func() bool { return !e.gw.Backend("alpha").Ready() })
	// The other backend still serves.
	if got := text(callTool(t, c, "beta.echo", map[string]any{"message": "other"})); !strings.Contains(got, "other") {
		t.Errorf("beta.echo while alpha is down = %q", got)
	}
	tools, _ := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	for _, tl := range tools.Tools {
		if strings.HasPrefix(tl.Name, "alpha.") {
			t.Errorf("tools/list still has %s while alpha is down", tl.Name)
			break
		}
	}
	// Bring it back on the same address: it reconnects and its tools return.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := &http.Server{Handler: testbackend.New(testbackend.Options{}).HTTPHandler()}
	go func() { _ = srv2.Serve(ln2) }()
	t.Cleanup(func() { _ = srv2.Close() })
	waitFor(t, "alpha back", func() bool { return e.gw.Backend("alpha").Ready() })
	if got := text(callTool(t, c, "alpha.echo", map[string]any{"message": "after"})); !strings.Contains(got, "after") {
		t.Errorf("alpha.echo after reconnect = %q", got)
	}
}

func TestStatusAndHealth(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(e.url + "/statusz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st proxy.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Backends) != 2 || !st.Backends[0].Ready || !st.Backends[1].Ready {
		t.Errorf("status backends = %+v, want 2 ready", st.Backends)
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestLegacySSEClient: a 2024-11-05 client on /sse + /message lists and
// calls tools, and receives progress before the result.
func TestLegacySSEClient(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	c, err := client.NewSSEMCPClient(e.url + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var progress int
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			mu.Lock()
			progress++
			mu.Unlock()
		}
	})
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2024-11-05"
	req.Params.ClientInfo = mcp.Implementation{Name: "sse-test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize over SSE: %v", err)
	}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil || len(tools.Tools) == 0 {
		t.Fatalf("tools/list over SSE: %v, %d tools", err, len(tools.Tools))
	}
	if got := text(callTool(t, c, "beta.echo", map[string]any{"message": "over sse"})); !strings.Contains(got, "over sse") {
		t.Errorf("echo over SSE = %q", got)
	}
	slow := mcp.CallToolRequest{}
	slow.Params.Name = "alpha.slow"
	slow.Params.Arguments = map[string]any{"steps": 3, "delay_ms": 5}
	slow.Params.Meta = &mcp.Meta{ProgressToken: "sse-tok"}
	if _, err := c.CallTool(ctx, slow); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if progress != 3 {
		t.Errorf("progress over SSE = %d, want 3", progress)
	}
}

// TestModernClient: mcp-go's default client probes server/discover
// (protocol 2026-07-28) and then works without a session.
func TestModernClient(t *testing.T) {
	cfg, tb := twoBackends(t)
	e := startGateway(t, cfg)
	tr, err := transport.NewStreamableHTTP(e.url + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "modern", Version: "1"}
	res, err := c.Initialize(ctx, req)
	if err != nil {
		t.Fatalf("initialize (discover): %v", err)
	}
	if res.ProtocolVersion != "2026-07-28" {
		t.Errorf("negotiated %q, want 2026-07-28", res.ProtocolVersion)
	}
	if got := text(callTool(t, c, "alpha.add", map[string]any{"a": 40, "b": 2})); got != "42" {
		t.Errorf("alpha.add = %q, want 42", got)
	}
	// The older backend never saw the 2026 per-request _meta keys.
	for _, s := range tb.Seen() {
		if strings.Contains(string(s.Meta), "io.modelcontextprotocol/") {
			t.Errorf("backend (2025-11-25) saw 2026 _meta keys: %s", s.Meta)
		}
	}
}

// markRedactor marks what it redacted, so tests can see where it ran.
type markRedactor struct{}

func (markRedactor) Payload(b []byte) ([]byte, int, bool, string) {
	return []byte(`{"redacted":` + strconv.Quote(string(b[:min(len(b), 8)])) + `}`), 1, false, "sum"
}
func (markRedactor) String(s string) (string, int) { return "redacted", 1 }
func (markRedactor) Version() string               { return "mark" }

// TestDeferredRedaction: small payloads reach the recorder raw and marked,
// large ones already redacted; RedactEvent finishes the small ones the same
// way the gateway would have.
func TestDeferredRedaction(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg, func(o *proxy.Options) {
		o.Redactor = markRedactor{}
		o.DeferRedactionBytes = 4096
	})
	c := newClient(t, e.url)
	_ = callTool(t, c, "alpha.echo", map[string]any{"message": "small"})
	_ = callTool(t, c, "alpha.echo", map[string]any{"message": strings.Repeat("L", 8192)})
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	var small, large int
	for _, ev := range e.rec.events {
		if ev.Hop != recorder.HopUpstream {
			continue
		}
		switch {
		case strings.Contains(string(ev.Params), "small"):
			small++
			if !ev.Unredacted {
				t.Errorf("small upstream payload was redacted on the hot path")
			}
			cp := ev
			proxy.RedactEvent(markRedactor{}, &cp)
			if cp.Unredacted || !strings.HasPrefix(string(cp.Params), `{"redacted":`) || cp.ParamsSHA256 != "sum" {
				t.Errorf("RedactEvent left %+v", cp)
			}
		case strings.HasPrefix(string(ev.Params), `{"redacted":`):
			large++
			// Redacted already (it bounds the queue), but its other
			// strings are left to the recorder, which must not redact the
			// payload twice.
			if !ev.Unredacted || ev.ParamsSHA256 != "sum" {
				t.Errorf("large payload: Unredacted %v, digest %q; want true and the digest of its redaction", ev.Unredacted, ev.ParamsSHA256)
			}
			cp := ev
			proxy.RedactEvent(markRedactor{}, &cp)
			if string(cp.Params) != string(ev.Params) || cp.Target != "redacted" {
				t.Errorf("RedactEvent on a large payload: params %s, target %q; want the params unchanged and the target redacted", cp.Params, cp.Target)
			}
		default:
			t.Errorf("upstream event with unexpected params %.60s", ev.Params)
		}
	}
	if small != 1 || large != 1 {
		t.Errorf("upstream events: %d small (raw), %d large (redacted); want 1 and 1", small, large)
	}
}

// TestClientCancellation: notifications/cancelled from the client stops the
// call at the gateway and is passed on to the backend.
func TestClientCancellation(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	var cancels atomic.Int32
	inner := tb.HTTPHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if bytes.Contains(b, []byte(`"notifications/cancelled"`)) && bytes.Contains(b, []byte(`"user gave up"`)) {
				cancels.Add(1)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	cfg := &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 20 * time.Second}}}
	e := startGateway(t, cfg)
	sid := initSession(t, e.url, nil)
	type answer struct {
		r    rpcResp
		body []byte
	}
	done := make(chan answer, 1)
	go func() {
		_, b := post(t, e.url, `{"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":200,"delay_ms":50}}}`,
			map[string]string{"Mcp-Session-Id": sid})
		done <- answer{decodeResp(t, b), b}
	}()
	waitFor(t, "the backend to start the slow call", func() bool {
		for _, s := range tb.Seen() {
			if s.Tool == "slow" {
				return true
			}
		}
		return false
	})
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user gave up"}}`, map[string]string{"Mcp-Session-Id": sid})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel notification: %d %s", resp.StatusCode, b)
	}
	a := <-done
	if a.r.Error == nil || !strings.Contains(a.r.Error.Message, "cancelled") {
		t.Fatalf("cancelled call answered %s, want a cancellation error (not the 200-step result)", a.body)
	}
	waitFor(t, "the backend to get notifications/cancelled", func() bool { return cancels.Load() == 1 })
}

// refusingRecorder refuses tools/call events, as recorder.Pipeline does
// under overflow: fail_closed when its queue or spool is full.
type refusingRecorder struct{}

func (refusingRecorder) Record(ev *recorder.Event) error {
	if ev.Method == "tools/call" {
		return errors.New("recording overflow: spool full")
	}
	return nil
}

// TestFailClosedRefusesUnrecordedCalls: when the recorder refuses the
// inbound hop, the call never reaches the backend and the client gets an
// error carrying the request ID.
func TestFailClosedRefusesUnrecordedCalls(t *testing.T) {
	cfg, tb := twoBackends(t)
	e := startGateway(t, cfg, func(o *proxy.Options) { o.Recorder = refusingRecorder{} })
	sid := initSession(t, e.url, nil)
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"must not run"}}}`, map[string]string{"Mcp-Session-Id": sid})
	r := decodeResp(t, b)
	if r.Error == nil || !strings.Contains(r.Error.Message, "fail_closed") || !strings.Contains(string(r.Error.Data), resp.Header.Get("X-Request-Id")) {
		t.Fatalf("answer %s, want a fail_closed error with the request ID", b)
	}
	for _, s := range tb.Seen() {
		if s.Method == "tools/call" {
			t.Fatalf("the backend ran %s although the call could not be recorded", s.Tool)
		}
	}
}

// TestRefusedInitializeOpensNoSession: an initialize the gateway refuses
// hands out no session id and leaves no session behind.
func TestRefusedInitializeOpensNoSession(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":7}}`, nil)
	if r := decodeResp(t, b); r.Error == nil {
		t.Fatalf("initialize with a numeric protocolVersion answered %s, want an error", b)
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		t.Errorf("refused initialize handed out session %q", sid)
	}
	if n := e.gw.Status().Sessions; n != 0 {
		t.Errorf("%d sessions after a refused initialize, want 0", n)
	}
}

// TestHTTPRefusalKeepsBackendUp: a backend's HTTP 500 for one call fails
// that call with the request ID but leaves the backend connected.
func TestHTTPRefusalKeepsBackendUp(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	inner := tb.HTTPHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if bytes.Contains(b, []byte(`"boom"`)) {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}})
	sid := initSession(t, e.url, nil)
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"boom"}}}`, map[string]string{"Mcp-Session-Id": sid})
	r := decodeResp(t, b)
	if r.Error == nil || r.Error.Code != -32001 || !strings.Contains(string(r.Error.Data), resp.Header.Get("X-Request-Id")) {
		t.Fatalf("answer %s, want -32001 carrying the request ID", b)
	}
	if !e.gw.Backend("alpha").Ready() {
		t.Fatal("one HTTP 500 took the backend down")
	}
	_, b = post(t, e.url, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"fine"}}}`, map[string]string{"Mcp-Session-Id": sid})
	if !strings.Contains(string(b), "fine") {
		t.Errorf("next call answered %s", b)
	}
}

// TestServerWithoutNamespace: a server mounted with no_namespace keeps its
// own tool and prompt names next to a namespaced one; two such servers
// with the same names are refused, naming the names.
func TestServerWithoutNamespace(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Servers[0].NoNamespace = true
	e := startGateway(t, cfg)
	c := newClient(t, e.url)
	ctx := context.Background()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	for _, want := range []string{"echo", "add", "beta.echo", "beta.add"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools = %v, missing %s", names, want)
		}
	}
	if got := text(callTool(t, c, "add", map[string]any{"a": 2, "b": 3})); got != "5" {
		t.Errorf("add (unprefixed) = %q, want 5", got)
	}
	if got := text(callTool(t, c, "beta.add", map[string]any{"a": 2, "b": 3})); got != "6" {
		t.Errorf("beta.add = %q, want 6 (the v2 variant)", got)
	}
	// A name the bare server does not list is its own to answer.
	_, b := post(t, e.url, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"no-such-tool","arguments":{}}}`, map[string]string{"Mcp-Session-Id": initSession(t, e.url, nil)})
	if r := decodeResp(t, b); r.Error == nil && !strings.Contains(string(r.Result), "isError") {
		t.Errorf("unknown tool = %s, want the backend's error", b)
	}

	// Both without a namespace: every name collides.
	cfg2, _ := twoBackends(t)
	cfg2.Servers[0].NoNamespace, cfg2.Servers[1].NoNamespace = true, true
	gw, err := proxy.New(proxy.Options{Config: cfg2})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
	waitFor(t, "collision reported", func() bool {
		ok, why := gw.Ready()
		return !ok && strings.Contains(why, `tool "echo" of server beta is also one of server alpha`)
	})
}

// legacySSE is a client of the legacy SSE transport: GET /sse, then POST
// /message to the endpoint it names.
type legacySSE struct {
	t      testing.TB
	msgURL string
	hdr    map[string]string
	lines  *bufio.Reader
}

// openLegacySSE opens a legacy SSE session with headers hdr.
func openLegacySSE(t testing.TB, url string, hdr map[string]string) *legacySSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	s := &legacySSE{t: t, hdr: hdr, lines: bufio.NewReader(resp.Body)}
	s.msgURL = url + s.next()
	return s
}

// next returns the data of the next SSE event.
func (s *legacySSE) next() string {
	s.t.Helper()
	for {
		l, err := s.lines.ReadString('\n')
		if err != nil {
			s.t.Fatalf("SSE stream: %v", err)
		}
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "data:"); ok {
			return strings.TrimSpace(d)
		}
	}
}

// post sends body to the session's /message endpoint.
func (s *legacySSE) post(body string) (status int, reqID string, answer []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.msgURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range s.hdr {
		req.Header.Set(k, v)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, r.Header.Get("X-Request-Id"), b
}

// TestLegacySSERequestIDMatches: on legacy SSE, the request ID of the 202
// to POST /message is the one the answer, the records and the span carry,
// with and without a client-chosen ID in params._meta.
func TestLegacySSERequestIDMatches(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	sse := openLegacySSE(t, e.url, nil)
	next := sse.next
	postMsg := func(body string) string {
		t.Helper()
		status, reqID, _ := sse.post(body)
		if status != http.StatusAccepted {
			t.Fatalf("POST /message: %d", status)
		}
		return reqID
	}
	postMsg(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`)
	next()
	for i, meta := range []string{``, `,"_meta":{"mcptrail.dev/request-id":"01JMETACHOSENREQUESTID0001"}`} {
		hdr := postMsg(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}%s}}`, i+2, meta))
		answer := next()
		var m struct {
			Result struct {
				Meta map[string]string `json:"_meta"`
			} `json:"result"`
		}
		_ = json.Unmarshal([]byte(answer), &m)
		if got := m.Result.Meta[proxy.MetaRequestID]; hdr == "" || got != hdr {
			t.Errorf("call %d: X-Request-Id of the 202 = %q, result._meta request ID = %q (answer %s)", i, hdr, got, answer)
		}
		if meta != "" && hdr != "01JMETACHOSENREQUESTID0001" {
			t.Errorf("call %d: X-Request-Id = %q, want the one from params._meta", i, hdr)
		}
		if len(e.rec.byRequest(hdr)) == 0 {
			t.Errorf("call %d: nothing recorded under %s", i, hdr)
		}
	}
}

// TestRefusedRequestsAreRecorded: a request refused before routing leaves
// an inbound and a response hop (outcome, reason) and a span under the
// request ID its error carries; with auth off the principal is anonymous.
func TestRefusedRequestsAreRecorded(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg, _ := twoBackends(t)
	cfg.MaxBodyBytes = 2048
	e := startGateway(t, cfg, func(o *proxy.Options) { o.TracerProvider = tp })
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   int32
	}{
		{"parse error", `{"jsonrpc":"2.0","id":1,"method":`, nil, 400, -32700},
		{"invalid request", `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, nil, 400, -32600},
		{"no session", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil, 400, -32600},
		{"unknown session", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": "nosuchsession"}, 404, -32600},
		{"too large", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"` + strings.Repeat("x", 4096) + `"}}}`, nil, 413, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, e.url, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, tc.status)
			}
			id := resp.Header.Get("X-Request-Id")
			hops := e.rec.byRequest(id)
			var kinds []string
			for _, h := range hops {
				kinds = append(kinds, h.Hop.String())
				if h.Hop == recorder.HopResponse {
					if h.Outcome != recorder.OutcomeJSONRPCError || h.ErrorMessage == "" || tc.code != 0 && h.ErrorCode != tc.code {
						t.Errorf("response hop: outcome %s, code %d, reason %q; want a JSON-RPC error %d with its reason", h.Outcome, h.ErrorCode, h.ErrorMessage, tc.code)
					}
				}
				if h.Principal != "anonymous" {
					t.Errorf("%s hop principal = %q, want anonymous (auth off)", h.Hop, h.Principal)
				}
			}
			if !slices.Contains(kinds, "inbound") || !slices.Contains(kinds, "response") {
				t.Errorf("hops recorded under %s = %v, want inbound and response", id, kinds)
			}
			var span *tracetest.SpanStub
			for _, s := range exp.GetSpans() {
				for _, kv := range s.Attributes {
					if kv.Key == "mcptrail.request_id" && kv.Value.AsString() == id {
						span = &s
					}
				}
			}
			if span == nil || span.Status.Code != otelcodes.Error {
				t.Errorf("no error span for refused request %s", id)
			}
		})
	}
}

// TestModernRequestRecordsClient: a sessionless 2026-07-28 request records
// the client name and version its _meta carries, and (auth off) the
// principal anonymous.
func TestModernRequestRecordsClient(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	resp, b := post(t, e.url, modernBody(1, "tools/call", map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": "x"}}, nil), modernHeaders("tools/call", "alpha.echo"))
	if resp.StatusCode != 200 {
		t.Fatalf("2026 call: %d %s", resp.StatusCode, b)
	}
	evs := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
	if len(evs) == 0 {
		t.Fatal("nothing recorded")
	}
	for _, ev := range evs {
		if ev.ClientName != "raw-modern" || ev.ClientVersion != "9" || ev.ProtocolVersion != "2026-07-28" || ev.Principal != "anonymous" {
			t.Errorf("%s hop: client %q %q, protocol %q, principal %q; want raw-modern 9 2026-07-28 anonymous", ev.Hop, ev.ClientName, ev.ClientVersion, ev.ProtocolVersion, ev.Principal)
		}
	}
}

// TestReadRenamesOnlyTheContentsURI: a read of a colliding (renamed) URI
// gives contents[].uri the client's name for it, and leaves the
// resource's own text alone even where it spells the backend's URI (fails
// before the fix: every JSON string equal to the URI in the result was
// rewritten).
func TestReadRenamesOnlyTheContentsURI(t *testing.T) {
	cfg, _ := twoBackends(t)
	srv := server.NewMCPServer("self-naming", "1", server.WithResourceCapabilities(false, false))
	srv.AddResource(mcp.NewResource("test://static/1", "self"), func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: "test://static/1", MIMEType: "text/plain", Text: "test://static/1"}}, nil
	})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true)))
	t.Cleanup(hs.Close)
	cfg.Servers = append(cfg.Servers[:1], config.Server{Name: "gamma", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second})
	e := startGateway(t, cfg)
	c := newClient(t, e.url)
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = "mcptrail://gamma/test://static/1"
	res, err := c.ReadResource(context.Background(), rr)
	if err != nil {
		list, _ := c.ListResources(context.Background(), mcp.ListResourcesRequest{})
		t.Fatalf("ReadResource(%s): %v (listed %+v)", rr.Params.URI, err, list)
	}
	if len(res.Contents) != 1 {
		t.Fatalf("contents = %+v, want 1", res.Contents)
	}
	tc, ok := res.Contents[0].(mcp.TextResourceContents)
	if !ok || tc.URI != rr.Params.URI || tc.Text != "test://static/1" {
		t.Errorf("contents = %+v, want uri %s and the resource's own text test://static/1", res.Contents[0], rr.Params.URI)
	}
}
