package runner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
)

// TestLogNotificationsReplay: the log messages a backend (the official Go
// SDK, v1.8.0) sends during a call are recorded with the call, sent again by
// the mock and compared (count, order, content) under /(log)/N: unchanged
// traffic replays clean, and a lost message is reported (log notifications
// were neither recorded nor compared before).
func TestLogNotificationsReplay(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "gosdk-logger", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "log"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		for _, l := range []mcp.LoggingLevel{"debug", "info", "error"} {
			if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: l, Logger: "tool", Data: "a " + string(l) + " message"}); err != nil {
				return nil, nil, err
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "logged"}}}, nil, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(func() {
		// After the gateways let go (cleanups run last first): then the
		// SDK's sessions end with their connections.
		hs.CloseClientConnections()
		hs.Close()
	})
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{{Name: "gs", Transport: "http", URL: hs.URL, Timeout: 10 * time.Second}}})
	p := newPeer(t, gwURL, nil)
	p.Call("logging/setLevel", map[string]any{"level": "info"})
	if r := p.Tool("gs.log", map[string]any{}); r.Error != nil {
		t.Fatalf("tools/call gs.log: %+v", r.Error)
	}
	events := rec.All()
	reqs := replay.Requests(events)
	i := slices.IndexFunc(reqs, func(r replay.Request) bool { return r.Method == "tools/call" })
	if i < 0 || len(reqs[i].Logs()) != 2 {
		t.Fatalf("recorded log notifications of the call: %d, want 2 (info, error)", len(reqs[i].Logs()))
	}
	replayMock := func(reqs []replay.Request) []report.Case {
		gw, _ := mockGateway(t, events, nil, nil)
		rep, err := runner.Run(context.Background(), reqs, runner.RunOptions{Options: runner.Options{Mode: runner.ModeMock, GatewayURL: gw.MCPURL, KeepPlaceholders: true}})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Cases
	}
	if cs := replayMock(reqs); byStatus(cs)[report.StatusIdentical] != len(cs) {
		t.Errorf("unchanged traffic:\n%s", summary(cs))
	}
	// The recorded client got one message more than the backend sends now.
	extra := reqs[i].Other[len(reqs[i].Other)-1]
	for _, e := range reqs[i].Other {
		if e.Hop == recorder.HopNotification && e.Method == "notifications/message" {
			extra = e
		}
	}
	extra.Params = []byte(`{"level":"error","logger":"tool","data":"lost"}`)
	changed := slices.Clone(reqs)
	changed[i].Other = append(slices.Clone(changed[i].Other), extra)
	got := summary(replayMock(changed))
	if want := "gs.log changed removed/(log)/2"; !strings.Contains(got, want) {
		t.Errorf("a lost log message: report\n%s\nwant a line %q", got, want)
	}
}
