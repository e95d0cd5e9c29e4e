package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// goSDKLoggingServer is the official Go SDK (v1.8.0) as a backend whose
// "log" tool logs at debug, info and error while it runs (the SDK sends
// what the connection's level, the last logging/setLevel, allows).
func goSDKLoggingServer(t *testing.T) string {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "gosdk-logger", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "log", Description: "logs three messages"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		for _, l := range []mcp.LoggingLevel{"debug", "info", "error"} {
			if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: l, Logger: "tool", Data: "a " + string(l) + " message"}); err != nil {
				return nil, nil, err
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "logged"}}}, nil, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestLogMessagesPerSessionLevel: two sessions share the backend connection
// of their capability profile, whose log level is the last one either set.
// Each client gets the log messages of a call at or above its own level
// (a client at "error" got the other's debug and info before), and what it
// got is recorded as notification hops of the call (nothing was). A
// 2026-07-28 request gets the messages at or above the level in its _meta,
// none without one, and -32602 for a level the protocol does not define.
func TestLogMessagesPerSessionLevel(t *testing.T) {
	url := goSDKLoggingServer(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "gs", Transport: "http", URL: url, Timeout: 10 * time.Second}}})
	type peer struct {
		cs     *mcp.ClientSession
		mu     sync.Mutex
		levels []string
	}
	connect := func() *peer {
		p := &peer{}
		c := mcp.NewClient(&mcp.Implementation{Name: "log-client", Version: "1"}, &mcp.ClientOptions{
			LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
				p.mu.Lock()
				p.levels = append(p.levels, string(r.Params.Level))
				p.mu.Unlock()
			},
		})
		cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: e.url + "/mcp", MaxRetries: -1},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.Close() })
		p.cs = cs
		return p
	}
	got := func(p *peer) []string {
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.Clone(p.levels)
	}
	ctx := context.Background()
	quiet, chatty := connect(), connect()
	if err := quiet.cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "error"}); err != nil {
		t.Fatal(err)
	}
	if err := chatty.cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
		t.Fatal(err) // the shared backend connection now logs at debug
	}
	for _, tc := range []struct {
		p    *peer
		want []string
	}{{quiet, []string{"error"}}, {chatty, []string{"debug", "info", "error"}}} {
		if _, err := tc.p.cs.CallTool(ctx, &mcp.CallToolParams{Name: "gs.log"}); err != nil {
			t.Fatal(err)
		}
		// The messages come in order on the call's stream: once the last
		// one is there, any earlier one would be too.
		waitFor(t, "the error message", func() bool { return slices.Contains(got(tc.p), "error") })
		if g := got(tc.p); !slices.Equal(g, tc.want) {
			t.Errorf("a client at level %s got %v, want %v", tc.want[0], g, tc.want)
		}
		var recorded []string
		e.rec.mu.Lock()
		for _, ev := range e.rec.events {
			if ev.SessionID == tc.p.cs.ID() && ev.Hop == recorder.HopNotification && ev.Method == "notifications/message" {
				recorded = append(recorded, string(ev.Params))
			}
		}
		e.rec.mu.Unlock()
		if len(recorded) != len(tc.want) {
			t.Errorf("recorded log notifications of the session = %v, want %d (what the client got)", recorded, len(tc.want))
		}
	}

	// 2026-07-28: the level travels with each request. These declare the
	// profile of the sessions above, whose backend connection logs at debug.
	call := modernBody(7, "tools/call", map[string]any{"name": "gs.log", "arguments": map[string]any{}}, map[string]any{"roots": map[string]any{"listChanged": true}})
	for _, tc := range []struct {
		name, level string
		want        []string
		wantCode    int
	}{
		{"level error", "error", []string{"error"}, 0},
		{"no level", "", nil, 0},
		{"unknown level", "verbose", nil, -32602},
	} {
		body := call
		if tc.level != "" {
			var m map[string]any
			_ = json.Unmarshal([]byte(call), &m)
			m["params"].(map[string]any)["_meta"].(map[string]any)["io.modelcontextprotocol/logLevel"] = tc.level
			b, _ := json.Marshal(m)
			body = string(b)
		}
		_, b := post(t, e.url, body, modernHeaders("tools/call", "gs.log"))
		var levels []string
		for _, line := range strings.Split(string(b), "\n") {
			var n struct {
				Method string `json:"method"`
				Params struct {
					Level string `json:"level"`
				} `json:"params"`
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok && json.Unmarshal([]byte(d), &n) == nil && n.Method == "notifications/message" {
				levels = append(levels, n.Params.Level)
			}
		}
		a := decodeAnswer(t, b)
		code := 0
		if a.Error != nil {
			code = a.Error.Code
		}
		if !slices.Equal(levels, tc.want) || code != tc.wantCode {
			t.Errorf("2026 %s: log levels %v, error %d; want %v, error %d\n%s", tc.name, levels, code, tc.want, tc.wantCode, b)
		}
	}
}
