package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

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

func startBridge(t *testing.T, cfg Config) *pipes {
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

func (p *pipes) stop(t *testing.T) {
	t.Helper()
	p.clientOut.Close()
	go io.Copy(io.Discard, p.clientIn) // let pending writes finish
	if err := <-p.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

type cannedSampler struct{}

func (cannedSampler) CreateMessage(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("from the client")},
		Model:           "canned",
	}, nil
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
			opts := append([]client.ClientOption{client.WithSamplingHandler(cannedSampler{})}, era.opts...)
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
				// sampling/createMessage travels server → bridge stdout →
				// client; the client's answer comes back on stdin.
				if got := call("sample", map[string]any{"prompt": "hi"}, nil); got != "sampled: from the client" {
					t.Errorf("sample = %q, want %q", got, "sampled: from the client")
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
	t   *testing.T
	p   *pipes
	out *bufio.Scanner
}

func newRaw(t *testing.T, cfg Config) *rawSession {
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

func TestReadSSE(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []string
		lastID string
	}{
		{"two events", "id: 1\ndata: a\n\nid: 2\ndata: b\n\n", []string{"a", "b"}, "2"},
		{"multi-line and crlf", "data: x\r\ndata: y\r\n\r\n", []string{"x\ny"}, ""},
		{"comments and empty events", ": ping\n\nevent: message\n\nretry: 5\n\ndata:z\n\n", []string{"z"}, ""},
		{"unterminated last event", "data: tail", []string{"tail"}, ""},
		{"empty data line counts", "data:\n\n", []string{""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			last, err := readSSE(strings.NewReader(tt.in), 1<<10, func(_, d []byte) bool {
				got = append(got, string(d))
				return true
			})
			if err != nil || !slices.Equal(got, tt.want) || last != tt.lastID {
				t.Errorf("readSSE(%q) = %q, last id %q, %v; want %q, %q", tt.in, got, last, err, tt.want, tt.lastID)
			}
		})
	}
	if _, err := readSSE(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 10, func(_, _ []byte) bool { return true }); err == nil {
		t.Errorf("readSSE accepted an event over the limit")
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add("id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
	f.Add("data: x\r\ndata: y\r\n\r\n")
	f.Add(": ping\n\nevent: message\n\nretry: 5\n\ndata:z\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		_, _ = readSSE(strings.NewReader(in), 1<<12, func(_, d []byte) bool {
			if len(d) > 1<<12 {
				t.Fatalf("event of %d bytes over the limit", len(d))
			}
			n++
			return true
		})
		if n > strings.Count(in, "data")+1 {
			t.Fatalf("%d events from %d data fields", n, strings.Count(in, "data"))
		}
	})
}
