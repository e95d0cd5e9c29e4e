package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestParamHeaders (2026-07-28 transports, x-mcp-header): toward a 2026
// backend (mcp-go's server, which validates them) the gateway
// mirrors the parameters the backend's tool marks into Mcp-Param-* headers,
// for 2026 and session-era clients alike; a 2026 client's own Mcp-Param-*
// headers are checked against its arguments (400, -32020 on a mismatch).
// Before, the backend refused every call of such a tool (-32020: the header
// was missing) and a client's wrong header went unnoticed.
func TestParamHeaders(t *testing.T) {
	srv := server.NewMCPServer("params-backend", "1", server.WithToolCapabilities(false))
	tool := mcpgo.NewTool("query", mcpgo.WithString("q"))
	tool.InputSchema.Properties["region"] = map[string]any{"type": "string", "x-mcp-header": "Region"}
	srv.AddTool(tool, func(_ context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText(req.GetString("q", "") + " in " + req.GetString("region", "")), nil
	})
	h := server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true))
	var mu sync.Mutex
	var regions []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Method") == "tools/call" {
			mu.Lock()
			regions = append(regions, r.Header.Get("Mcp-Param-Region"))
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "gs", Transport: "http", URL: hs.URL + "/mcp", ProtocolVersion: "2026-07-28", Timeout: 10 * time.Second}}})

	call := modernBody(1, "tools/call", map[string]any{"name": "gs.query", "arguments": map[string]any{"region": "us-west1", "q": "select"}}, nil)
	for _, tc := range []struct {
		name, region string
		wantStatus   int
		wantCode     int
		wantText     string
	}{
		{"matching header", "us-west1", 200, 0, "select in us-west1"},
		{"different header", "eu-west1", 400, -32020, ""},
		{"missing header", "", 400, -32020, ""},
	} {
		hdr := modernHeaders("tools/call", "gs.query")
		if tc.region != "" {
			hdr["Mcp-Param-Region"] = tc.region
		}
		resp, b := post(t, e.url, call, hdr)
		a := decodeAnswer(t, b)
		code := 0
		if a.Error != nil {
			code = a.Error.Code
		}
		if resp.StatusCode != tc.wantStatus || code != tc.wantCode || !strings.Contains(string(a.Result["content"]), tc.wantText) {
			t.Errorf("2026 client, %s: HTTP %d, error %d, %s; want HTTP %d, error %d, %q", tc.name, resp.StatusCode, code, b, tc.wantStatus, tc.wantCode, tc.wantText)
		}
	}
	// A session-era client knows nothing of the headers: the gateway sets them.
	c := mcp.NewClient(&mcp.Implementation{Name: "old", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: e.url + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "gs.query", Arguments: map[string]any{"region": "ap-south1", "q": "count"}})
	if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(*mcp.TextContent).Text != "count in ap-south1" {
		t.Errorf("2025 client: %+v, %v; want count in ap-south1", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"us-west1", "ap-south1"}; strings.Join(regions, ",") != strings.Join(want, ",") {
		t.Errorf("Mcp-Param-Region the backend got = %q, want %q", regions, want)
	}
}

// TestModernBackendListChanged: a 2026 backend announces list changes only
// on a subscriptions/listen stream (the GET stream is gone); the gateway
// keeps one open, so a tool the backend adds reaches clients' lists (it
// never did: the gateway listened to nothing).
func TestModernBackendListChanged(t *testing.T) {
	srv := server.NewMCPServer("changing-backend", "1", server.WithToolCapabilities(true))
	srv.AddTool(mcpgo.NewTool("grow"), func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		srv.AddTool(mcpgo.NewTool("grown"), func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return mcpgo.NewToolResultText("here"), nil
		})
		return mcpgo.NewToolResultText("grew"), nil
	})
	hs := httptest.NewServer(server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true)))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "gs", Transport: "http", URL: hs.URL + "/mcp", ProtocolVersion: "2026-07-28", Timeout: 10 * time.Second}}})
	c := mcp.NewClient(&mcp.Implementation{Name: "old", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: e.url + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	names := func() string {
		res, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, tl := range res.Tools {
			n = append(n, tl.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(); got != "gs.grow" {
		t.Fatalf("tools before = %s, want gs.grow", got)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "gs.grow"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gs.grown listed through the gateway", func() bool { return strings.Contains(names(), "gs.grown") })
}

// TestInvalidHeaderAnnotationsHidden: a tool whose x-mcp-header annotation
// breaks the 2026-07-28 rules (here: under items, not reachable through
// properties only, which mcp-go's server lets through) is left out of
// tools/list for 2026 clients, a call to it is refused as a call to an
// unknown tool, and the log names the tool and the reason; session-era
// clients, which know nothing of the annotation, still see it. Fails before
// the fix: 2026 clients were offered it.
func TestInvalidHeaderAnnotationsHidden(t *testing.T) {
	srv := server.NewMCPServer("params-backend", "1", server.WithToolCapabilities(false))
	text := func(s string) server.ToolHandlerFunc {
		return func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return mcpgo.NewToolResultText(s), nil
		}
	}
	srv.AddTool(mcpgo.NewToolWithRawSchema("query", "", []byte(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}`)), text("query"))
	srv.AddTool(mcpgo.NewToolWithRawSchema("rows", "", []byte(`{"type":"object","properties":{"ids":{"type":"array","items":{"type":"string","x-mcp-header":"Id"}}}}`)), text("rows"))
	hs := httptest.NewServer(server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true)))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "gs", Transport: "http", URL: hs.URL + "/mcp", ProtocolVersion: "2026-07-28", Timeout: 10 * time.Second}}})

	_, b := post(t, e.url, modernBody(1, "tools/list", nil, nil), modernHeaders("tools/list", ""))
	if tools := string(decodeAnswer(t, b).Result["tools"]); !strings.Contains(tools, `"gs.query"`) || strings.Contains(tools, `"gs.rows"`) {
		t.Errorf("2026 tools/list = %s, want gs.query and not gs.rows", tools)
	}
	refusal := func(name string) string {
		t.Helper()
		_, b := post(t, e.url, modernBody(2, "tools/call", map[string]any{"name": name, "arguments": map[string]any{}}, nil), modernHeaders("tools/call", name))
		a := decodeAnswer(t, b)
		if a.Error == nil {
			return "no error: " + string(b)
		}
		return fmt.Sprintf("%d %s", a.Error.Code, strings.ReplaceAll(a.Error.Message, name, "NAME"))
	}
	if got, want := refusal("gs.rows"), refusal("nosuch"); got != want || !strings.HasPrefix(got, "-32602 ") {
		t.Errorf("2026 call of gs.rows refused with %q, want what an unknown tool gets: %q", got, want)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"tool":"gs.rows"`) || !strings.Contains(logs, "/properties/ids/items is not on a property reached") {
		t.Errorf("no log line names gs.rows and why:\n%s", logs)
	}

	sid := initSession(t, e.url, nil)
	_, b = post(t, e.url, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": sid})
	if r := decodeResp(t, b); !strings.Contains(string(r.Result), `"gs.rows"`) {
		t.Errorf("2025 tools/list = %s, want gs.rows still listed", r.Result)
	}
}
