package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// TestRootsListThroughStdioBackend: a stdio backend's roots/list during a
// call reaches the client that declared roots, like sampling and
// elicitation, and the call completes with the client's roots (issue 9.11).
// Fails before the fix: everything.get-roots-list never completed.
func TestRootsListThroughStdioBackend(t *testing.T) {
	js := everythingJS(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{
		Name: "everything", Transport: "stdio", Command: "node", Args: []string{js, "stdio"}, Timeout: 10 * time.Second,
	}}})
	tr, err := transport.NewStreamableHTTP(e.url+"/mcp", transport.WithContinuousListening())
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithRootsHandler(rootsHandler{}))
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2025-11-25"
	req.Params.ClientInfo = mcp.Implementation{Name: "roots-client", Version: "1"}
	req.Params.Capabilities = mcp.ClientCapabilities{Roots: &struct {
		ListChanged bool `json:"listChanged,omitempty"`
	}{ListChanged: true}}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatal(err)
	}
	for {
		tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(toolNames(tools), "everything.get-roots-list") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("get-roots-list never listed: %s", toolNames(tools))
		case <-time.After(100 * time.Millisecond):
		}
	}
	var call mcp.CallToolRequest
	call.Params.Name = "everything.get-roots-list"
	res, err := c.CallTool(ctx, call)
	if err != nil {
		t.Fatalf("get-roots-list through a stdio backend: %v", err)
	}
	if got := text(res); !strings.Contains(got, "Current MCP Roots (1 total)") || !strings.Contains(got, "file:///tmp") {
		t.Errorf("get-roots-list = %q, want the client's one root file:///tmp", got)
	}
}

func toolNames(r *mcp.ListToolsResult) string {
	var names []string
	for _, tool := range r.Tools {
		names = append(names, tool.Name)
	}
	return strings.Join(names, ",")
}

// TestRootsChangedOnlyToTheSessionsBackends: a client's
// notifications/roots/list_changed reaches the backends its session sent
// requests to, not a backend it never used, even when another session
// with the same capabilities made that backend open the same kind of
// connection (fails before the fix: every backend with a connection for
// the capability profile was told).
func TestRootsChangedOnlyToTheSessionsBackends(t *testing.T) {
	var alphaGot, betaGot atomic.Int64
	counting := func(n *atomic.Int64) string {
		inner := testbackend.New(testbackend.Options{}).HTTPHandler()
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if strings.Contains(string(b), "notifications/roots/list_changed") {
				n.Add(1)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			inner.ServeHTTP(w, r)
		}))
		t.Cleanup(hs.Close)
		return hs.URL + "/mcp"
	}
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: counting(&alphaGot), Timeout: 10 * time.Second},
		{Name: "beta", Transport: "http", URL: counting(&betaGot), Timeout: 10 * time.Second},
	}})
	const initRoots = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true}},"clientInfo":{"name":"raw","version":"0"}}}`
	open := func() map[string]string {
		resp, b := post(t, e.url, initRoots, nil)
		sid := resp.Header.Get("Mcp-Session-Id")
		if sid == "" {
			t.Fatalf("initialize: %s", b)
		}
		hdr := map[string]string{"Mcp-Session-Id": sid}
		post(t, e.url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr)
		return hdr
	}
	a, b := open(), open()
	for _, c := range []struct {
		hdr  map[string]string
		tool string
	}{{a, "alpha.echo"}, {b, "beta.echo"}} {
		if _, body := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"`+c.tool+`","arguments":{"message":"x"}}}`, c.hdr); !strings.Contains(string(body), `"text":"x"`) {
			t.Fatalf("%s: %s", c.tool, body)
		}
	}
	if resp, body := post(t, e.url, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, a); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("roots/list_changed: %d %s", resp.StatusCode, body)
	}
	if alphaGot.Load() != 1 || betaGot.Load() != 0 {
		t.Errorf("roots/list_changed of a session that used alpha only reached alpha %d and beta %d times, want 1 and 0", alphaGot.Load(), betaGot.Load())
	}
}
