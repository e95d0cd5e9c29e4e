package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder wraps a handler and records each HTTP request's method and
// session header.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.Header.Get("Mcp-Session-Id"))
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// pipes runs the bridge between two pipes and returns the client ends.
// Closing clientOut (the bridge's stdin) ends the bridge; the returned
// wait reports Run's error.
type pipes struct {
	clientIn  *io.PipeReader // bridge stdout
	clientOut *io.PipeWriter // bridge stdin
	done      chan error
}

func startBridge(t testing.TB, cfg Config) *pipes {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	p := &pipes{clientIn: stdoutR, clientOut: stdinW, done: make(chan error, 1)}
	go func() {
		err := Run(context.Background(), cfg, stdinR, stdoutW, nil)
		stdoutW.Close()
		stdinR.Close()
		p.done <- err
	}()
	return p
}

func (p *pipes) stop(t testing.TB) {
	t.Helper()
	p.clientOut.Close()
	go io.Copy(io.Discard, p.clientIn) // let pending writes finish
	if err := <-p.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

type cannedElicitor struct{}

func (cannedElicitor) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{
		Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"name": "from the client"},
	}}, nil
}

func TestMCPClientThroughBridge(t *testing.T) {
	for _, era := range []struct {
		name   string
		opts   []client.ClientOption
		legacy bool
	}{
		{"2025-11-25", []client.ClientOption{client.WithProtocolVersion("2025-11-25")}, true},
		{"2026-07-28", nil, false},
	} {
		t.Run(era.name, func(t *testing.T) {
			backend := testbackend.New(testbackend.Options{Variant: "v2"})
			h := backend.HTTPHandler()
			rec := &recorder{}
			rec.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" {
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(w, r)
			})
			ts := httptest.NewServer(rec)
			defer ts.Close()

			p := startBridge(t, Config{URL: ts.URL + "/mcp", Token: "tok", Headers: map[string]string{"X-Request-Id": "via-bridge"}})
			opts := append([]client.ClientOption{client.WithElicitationHandler(cannedElicitor{})}, era.opts...)
			c := client.NewClient(transport.NewIO(p.clientIn, p.clientOut, io.NopCloser(strings.NewReader(""))), opts...)
			ctx := context.Background()
			if err := c.Start(ctx); err != nil {
				t.Fatalf("starting client: %v", err)
			}
			var mu sync.Mutex
			var progress []float64
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == "notifications/progress" {
					mu.Lock()
					p, _ := n.Params.AdditionalFields["progress"].(float64)
					progress = append(progress, p)
					mu.Unlock()
				}
			})
			init := mcp.InitializeRequest{}
			init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
			init.Params.ClientInfo = mcp.Implementation{Name: "bridge-test", Version: "1"}
			if _, err := c.Initialize(ctx, init); err != nil {
				t.Fatalf("initializing through the bridge: %v", err)
			}

			call := func(name string, args map[string]any, meta *mcp.Meta) string {
				t.Helper()
				req := mcp.CallToolRequest{}
				req.Params.Name, req.Params.Arguments, req.Params.Meta = name, args, meta
				res, err := c.CallTool(ctx, req)
				if err != nil {
					t.Fatalf("calling %s: %v", name, err)
				}
				tc, _ := mcp.AsTextContent(res.Content[0])
				return tc.Text
			}
			if got := call("add", map[string]any{"a": 1, "b": 2}, nil); got != "4" {
				t.Errorf("v2 add(1,2) = %q, want 4", got)
			}
			if got := call("big", map[string]any{"bytes": 100000}, nil); len(got) != 100000 {
				t.Errorf("big(100000) returned %d chars", len(got))
			}
			if era.legacy {
				if got := call("slow", map[string]any{"steps": 3, "delay_ms": 1}, &mcp.Meta{ProgressToken: "p1"}); got != "done after 3 steps" {
					t.Errorf("slow = %q", got)
				}
				mu.Lock()
				if want := []float64{1, 2, 3}; !slices.Equal(progress, want) {
					t.Errorf("progress = %v, want %v", progress, want)
				}
				mu.Unlock()
				// elicitation/create travels server → bridge stdout →
				// client; the client's answer comes back on stdin.
				if got, want := call("elicit", nil, nil), `elicited: accept {"name":"from the client"}`; got != want {
					t.Errorf("elicit = %q, want %q", got, want)
				}
			}
			c.Close()
			p.stop(t)

			var sawHeader bool
			for _, s := range backend.Seen() {
				if s.Method == "tools/call" && s.RequestID == "via-bridge" {
					sawHeader = true
				}
			}
			if !sawHeader {
				t.Errorf("backend never saw X-Request-Id: via-bridge on tools/call: %+v", backend.Seen())
			}
			reqs := rec.requests()
			if era.legacy {
				last := reqs[len(reqs)-1]
				if !strings.HasPrefix(last, "DELETE mcp-session-") {
					t.Errorf("last HTTP request = %q, want DELETE with the session id (all: %v)", last, reqs)
				}
				if !slices.ContainsFunc(reqs, func(s string) bool { return strings.HasPrefix(s, "GET mcp-session-") }) {
					t.Errorf("no GET stream attempted: %v", reqs)
				}
			}
		})
	}
}

// rawSession drives the bridge with raw JSON lines.
type rawSession struct {
	t   testing.TB
	p   *pipes
	out *bufio.Scanner
}

func newRaw(t testing.TB, cfg Config) *rawSession {
	p := startBridge(t, cfg)
	sc := bufio.NewScanner(p.clientIn)
	sc.Buffer(nil, 1<<20)
	return &rawSession{t: t, p: p, out: sc}
}

func (r *rawSession) send(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.p.clientOut, line+"\n"); err != nil {
		r.t.Fatalf("writing stdin: %v", err)
	}
}

// next reads one stdout line and checks it is a single JSON object.
func (r *rawSession) next() map[string]any {
	r.t.Helper()
	if !r.out.Scan() {
		r.t.Fatalf("stdout ended: %v", r.out.Err())
	}
	var m map[string]any
	if err := json.Unmarshal(r.out.Bytes(), &m); err != nil {
		r.t.Fatalf("stdout line %q is not a JSON object: %v", r.out.Text(), err)
	}
	return m
}

func errCode(m map[string]any) float64 {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return c
}

func TestHTTPErrorsBecomeJSONRPCErrors(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		line     string
		wantID   any
		wantCode float64
		wantMsg  string
	}{
		{"401", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "who are you", 401) },
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, float64(1), -32003, "HTTP 401"},
		{"413", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "too big", 413) },
			`{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"x"}}`, "s", -32005, "HTTP 413"},
		{"502", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 502) },
			`{"jsonrpc":"2.0","id":3,"method":"ping"}`, float64(3), -32001, "HTTP 502"},
		{"JSON-RPC error body is relayed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"tool denied by policy"}}`)
		}, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"write_note"}}`, float64(4), -32003, "tool denied by policy"},
		{"wrong content type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>")
		}, `{"jsonrpc":"2.0","id":5,"method":"ping"}`, float64(5), -32001, "unexpected Content-Type"},
		{"SSE without the response", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "id: prime\ndata: \n\n") // priming event, not relayed
			io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")
		}, `{"jsonrpc":"2.0","id":6,"method":"ping"}`, nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			r := newRaw(t, Config{URL: ts.URL})
			r.send(tt.line)
			m := r.next()
			if tt.name == "SSE without the response" {
				// The notification is relayed, then the request gets an error.
				if m["method"] != "notifications/message" {
					t.Errorf("first line = %v, want the notification", m)
				}
				m = r.next()
				tt.wantID, tt.wantCode, tt.wantMsg = float64(6), -32001, "no response"
			}
			e, _ := m["error"].(map[string]any)
			if m["id"] != tt.wantID || errCode(m) != tt.wantCode || !strings.Contains(e["message"].(string), tt.wantMsg) {
				t.Errorf("stdout = %v, want id %v code %v message containing %q", m, tt.wantID, tt.wantCode, tt.wantMsg)
			}
			r.p.stop(t)
		})
	}
}

func TestInvalidStdinAndUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close() // nothing listens there any more
	r := newRaw(t, Config{URL: url})
	r.send(`{not json`)
	if m := r.next(); m["id"] != nil || errCode(m) != -32700 {
		t.Errorf("bad JSON answered %v, want parse error with id null", m)
	}
	r.send(`{"jsonrpc":"1.0","id":9,"method":"x"}`)
	if m := r.next(); m["id"] != float64(9) || errCode(m) != -32600 {
		t.Errorf("bad envelope answered %v, want -32600 for id 9", m)
	}
	r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`) // no answer expected
	r.send(`{"jsonrpc":"2.0","id":10,"method":"ping"}`)
	if m := r.next(); m["id"] != float64(10) || errCode(m) != -32001 {
		t.Errorf("unreachable gateway answered %v, want -32001 for id 10", m)
	}
	r.p.stop(t)
}

func TestGETStreamRelaysServerMessages(t *testing.T) {
	backend := testbackend.New(testbackend.Options{GETStream: true})
	ts := httptest.NewServer(backend.HTTPHandler())
	defer ts.Close()
	r := newRaw(t, Config{URL: ts.URL})
	r.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if m := r.next(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("initialize answered %v", m)
	}
	r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	// The GET stream opens asynchronously; broadcast until one arrives. No
	// request is in flight, so only the GET stream can deliver it.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			backend.MCPServer().SendNotificationToAllClients("notifications/tools/list_changed", nil)
			backend.MCPServer().SendNotificationToAllClients("notifications/message", map[string]any{"level": "info", "data": "hello"})
		}
	})
	m := r.next()
	close(stop)
	wg.Wait()
	if method, _ := m["method"].(string); !strings.HasPrefix(method, "notifications/") {
		t.Errorf("first server-initiated line = %v, want a notification", m)
	}
	r.p.stop(t)
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		want    Config
		wantErr string
	}{
		{"full", []string{"--url", "http://gw:8080/mcp", "--header", "X-Team: infra", "--header", "X-A:b:c", "--token", "t1"}, "",
			Config{URL: "http://gw:8080/mcp", Token: "t1", Headers: map[string]string{"X-Team": "infra", "X-A": "b:c"}}, ""},
		{"token from env", []string{"--url", "https://gw/mcp"}, "envtok", Config{URL: "https://gw/mcp", Token: "envtok", Headers: map[string]string{}}, ""},
		{"no url", nil, "", Config{}, "--url"},
		{"bad header", []string{"--url", "http://a", "--header", "nocolon"}, "", Config{}, "want K:V"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MCPTRAIL_TOKEN", tt.env)
			got, err := ParseArgs(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseArgs(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			if got.URL != tt.want.URL || got.Token != tt.want.Token || len(got.Headers) != len(tt.want.Headers) {
				t.Fatalf("ParseArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
			for k, v := range tt.want.Headers {
				if got.Headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
				}
			}
		})
	}
}

// A server→client request that travels on the GET stream (mcp-go sends
// sampling only there) reaches stdout, and the client's answer from stdin is
// POSTed back to complete the tool call.
func TestSamplingOverGETStream(t *testing.T) {
	backend := testbackend.New(testbackend.Options{GETStream: true})
	ts := httptest.NewServer(backend.HTTPHandler())
	defer ts.Close()
	r := newRaw(t, Config{URL: ts.URL})
	r.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}`)
	if m := r.next(); m["id"] != float64(1) {
		t.Fatalf("initialize answered %v", m)
	}
	r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	r.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sample","arguments":{"prompt":"hi"}}}`)
	req := r.next()
	if req["method"] != "sampling/createMessage" || req["id"] == nil {
		t.Fatalf("expected sampling/createMessage on stdout, got %v", req)
	}
	id, _ := json.Marshal(req["id"])
	r.send(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"role":"assistant","content":{"type":"text","text":"via GET"},"model":"m"}}`)
	res := r.next()
	result, _ := res["result"].(map[string]any)
	content, _ := result["content"].([]any)
	if res["id"] != float64(2) || len(content) == 0 || content[0].(map[string]any)["text"] != "sampled: via GET" {
		t.Errorf("tools/call answered %v, want sampled: via GET", res)
	}
	r.p.stop(t)
}

func TestRunStopsOnCancel(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	defer ts.Close()
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close() // releases the stdin reader after Run returned
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{URL: ts.URL}, stdinR, io.Discard, nil) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

// BenchmarkRoundTrip measures one tools/call through the bridge to the
// in-process testbackend (stdin line in, stdout line out).
func BenchmarkRoundTrip(b *testing.B) {
	ts := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	defer ts.Close()
	r := newRaw(b, Config{URL: ts.URL})
	r.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	r.next()
	r.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		r.send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(n) + `,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"}}}`)
		if m := r.next(); m["id"] != float64(n) || m["result"] == nil {
			b.Fatalf("answer %v", m)
		}
	}
	r.p.stop(b)
}

// gatedTransport serves the bridge in memory: POSTs are answered at once
// (requests with an empty result), a GET is held until open is closed.
type gatedTransport struct {
	open chan struct{}
	mu   sync.Mutex
	seen []string // "GET" when the GET stream opened, method of each POST
}

func (g *gatedTransport) note(s string) {
	g.mu.Lock()
	g.seen = append(g.seen, s)
	g.mu.Unlock()
}

func (g *gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r, Body: http.NoBody}
	if r.Method == http.MethodGet {
		select {
		case <-g.open:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		g.note("GET")
		resp.Header.Set("Content-Type", "text/event-stream")
		return resp, nil // an empty stream: the bridge reopens it later
	}
	if r.Method == http.MethodDelete {
		g.note("DELETE")
		return resp, nil
	}
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &m)
	g.note(m.Method)
	if m.ID == nil {
		resp.StatusCode = http.StatusAccepted
		return resp, nil
	}
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Mcp-Session-Id", "s1")
	resp.Body = io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"protocolVersion":"2025-11-25"}}`))
	return resp, nil
}

// The request after notifications/initialized is relayed only once the GET
// stream is open: a server that sends sampling only on that stream would
// otherwise lose it (mcp-go then serves the POST from a throwaway session).
func TestRequestsWaitForTheGETStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &gatedTransport{open: make(chan struct{})}
		stdinR, stdinW := io.Pipe()
		stdoutR, stdoutW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- Run(context.Background(), Config{URL: "http://gateway.test/mcp", HTTPClient: &http.Client{Transport: tr}, ReconnectDelay: time.Hour}, stdinR, stdoutW, nil)
			stdoutW.Close()
		}()
		out := bufio.NewScanner(stdoutR)
		go func() {
			for _, l := range []string{
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
				`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
				`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sample"}}`,
			} {
				if _, err := io.WriteString(stdinW, l+"\n"); err != nil {
					return
				}
			}
		}()
		if !out.Scan() {
			t.Fatal("no answer to initialize")
		}
		synctest.Wait() // everything is blocked: on the GET, or past it
		tr.mu.Lock()
		before := slices.Clone(tr.seen)
		tr.mu.Unlock()
		if want := []string{"initialize", "notifications/initialized"}; !slices.Equal(before, want) {
			t.Errorf("while the GET stream was opening the gateway saw %q, want %q", before, want)
		}
		close(tr.open)
		if !out.Scan() || !strings.Contains(out.Text(), `"id":2`) {
			t.Errorf("answer to tools/call = %q", out.Text())
		}
		stdinW.Close()
		go io.Copy(io.Discard, stdoutR)
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if want := []string{"initialize", "notifications/initialized", "GET", "tools/call", "DELETE"}; !slices.Equal(tr.seen, want) {
			t.Errorf("gateway saw %q, want %q", tr.seen, want)
		}
	})
}
