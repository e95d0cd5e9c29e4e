package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/config"
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
