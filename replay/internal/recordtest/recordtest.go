// Package recordtest records MCP traffic through a real gateway into memory,
// with the real redactor, for replay tests: the in-memory equivalent of
// `mcptrail serve` recording into ClickHouse.
package recordtest

import (
	"context"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// MemRecorder is an in-memory proxy.Recorder.
type MemRecorder struct {
	mu     sync.Mutex
	events []recorder.Event
}

func (m *MemRecorder) Record(ev *recorder.Event) error {
	m.mu.Lock()
	m.events = append(m.events, *ev)
	m.mu.Unlock()
	return nil
}

func (m *MemRecorder) All() []recorder.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// NewRedactor is the real redactor with the default rules and a fixed key.
func NewRedactor(t testing.TB) *redact.Redactor {
	t.Helper()
	r, err := redact.New(redact.Config{}, []byte("replay-test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// StartBackend serves a testbackend over streamable HTTP.
func StartBackend(t testing.TB, variant string) (*testbackend.Backend, string) {
	t.Helper()
	b := testbackend.New(testbackend.Options{Variant: variant})
	srv := httptest.NewServer(b.HTTPHandler())
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return b, srv.URL + "/mcp"
}

// RecordingGateway runs a gateway that records into memory with a real
// redactor, the way `mcptrail serve` records into ClickHouse.
func RecordingGateway(t testing.TB, cfg *config.Config) (string, *MemRecorder) {
	t.Helper()
	rec := &MemRecorder{}
	if cfg.NamespaceSeparator == "" {
		cfg.NamespaceSeparator = "."
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	cfg.Hash = "cfg-hash-1"
	gw, err := proxy.New(proxy.Options{Config: cfg, Recorder: rec, Redactor: NewRedactor(t), HealthInterval: time.Second})
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, s := range cfg.Servers {
			ready = ready && gw.Backend(s.Name).Ready()
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("recording gateway: backends not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return srv.URL + "/mcp", rec
}

// Peer is a raw MCP client session.
type Peer struct {
	t   testing.TB
	TR  *transport.StreamableHTTP
	seq atomic.Int64
}

func NewPeer(t testing.TB, url string, answer transport.RequestHandler) *Peer {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url)
	if err != nil {
		t.Fatal(err)
	}
	if answer != nil {
		tr.SetRequestHandler(answer)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	p := &Peer{t: t, TR: tr}
	p.Call("initialize", map[string]any{
		"protocolVersion": "2025-11-25",
		"capabilities":    map[string]any{"sampling": map[string]any{}, "elicitation": map[string]any{}},
		"clientInfo":      map[string]any{"name": "replay-test", "version": "1"},
	})
	tr.SetProtocolVersion("2025-11-25")
	if err := tr.SendNotification(context.Background(), mcp.JSONRPCNotification{JSONRPC: "2.0", Notification: mcp.Notification{Method: "notifications/initialized"}}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *Peer) Call(method string, params any) *transport.JSONRPCResponse {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.TR.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(p.seq.Add(1)), Method: method, Params: params})
	if err != nil {
		p.t.Fatalf("%s: %v", method, err)
	}
	return resp
}

func (p *Peer) Tool(name string, args map[string]any) *transport.JSONRPCResponse {
	p.t.Helper()
	return p.Call("tools/call", map[string]any{"name": name, "arguments": args})
}

// SecretMessage is echoed by the backend; the recorder's "bearer" pattern
// redacts its token in both the request and the answer.
const (
	SecretToken   = "abcdefgh12345678"
	SecretMessage = "Bearer " + SecretToken
)

// RecordTestbackend records a scenario through a gateway to testbackend
// (variant v1) and returns the events.
func RecordTestbackend(t testing.TB) []recorder.Event {
	t.Helper()
	_, url := StartBackend(t, "v1")
	gwURL, rec := RecordingGateway(t, &config.Config{Servers: []config.Server{{Name: "backend", Transport: "http", URL: url, Timeout: 10 * time.Second}}})
	p := NewPeer(t, gwURL, nil)
	p.Call("tools/list", map[string]any{})
	p.Call("resources/list", map[string]any{})
	p.Call("prompts/list", map[string]any{})
	p.Tool("backend.echo", map[string]any{"message": "hello"})
	p.Tool("backend.add", map[string]any{"a": 2, "b": 3})
	p.Tool("backend.now", map[string]any{})
	p.Tool("backend.fail", map[string]any{})
	p.Tool("backend.write_note", map[string]any{"text": "remember"})
	p.Call("tools/call", map[string]any{"name": "backend.slow", "arguments": map[string]any{"steps": 3, "delay_ms": 1}, "_meta": map[string]any{"progressToken": "tok-1"}})
	p.Call("resources/read", map[string]any{"uri": "test://static/1"})
	p.Call("prompts/get", map[string]any{"name": "backend.greet", "arguments": map[string]any{"name": "Ann"}})
	p.Call("prompts/get", map[string]any{"name": "backend.greet", "arguments": map[string]any{}})
	p.Tool("backend.no_such_tool", map[string]any{})
	p.Tool("backend.echo", map[string]any{"message": SecretMessage})
	p.Call("ping", nil)
	return rec.All()
}
