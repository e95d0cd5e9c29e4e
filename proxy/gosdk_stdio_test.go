package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy/bridge"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestGoSDKThroughStdioBridge: the official Go SDK in its 2025-11-25 mode,
// as a stdio client of `mcptrail stdio` (the bridge, in process) in front
// of the gateway, sees every step of its scenario as it does directly on
// server-everything.
func TestGoSDKThroughStdioBridge(t *testing.T) {
	url := startEverythingHTTP(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}}})

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.Run(ctx, bridge.Config{URL: e.url + "/mcp"}, stdinR, stdoutW, slog.New(slog.DiscardHandler))
		stdoutW.Close()
	}()
	t.Cleanup(func() {
		cancel()
		stdinW.Close()
		<-done
	})

	direct := newGoSDKPeer(t, url, "", "2025-11-25")
	via := connectGoSDK(t, &mcp.IOTransport{Reader: stdoutR, Writer: stdinW}, "everything.", "2025-11-25")
	if v := via.cs.InitializeResult().ProtocolVersion; v != "2025-11-25" {
		t.Fatalf("through mcptrail stdio the SDK negotiated %s, want 2025-11-25", v)
	}
	want := goSDKScenario(t, direct)
	got := goSDKScenario(t, via)
	for _, step := range keys(want) {
		if step == "invalid args" {
			// The gateway's own argument validation answers (issue 11.4,
			// TestArgumentValidation): a tool error of its own, by design.
			if g := got[step]; !strings.Contains(g, `"isError":true`) || !strings.Contains(g, "mcptrail: invalid arguments") {
				t.Errorf("invalid args through mcptrail stdio = %.300s, want the gateway's tool error", g)
			}
			continue
		}
		if g, w := got[step], want[step]; g != w {
			t.Errorf("%s: through mcptrail stdio\n  got  %.600s\n  want %.600s", step, g, w)
		}
	}
	if !slices.Equal(keys(got), keys(want)) {
		t.Errorf("steps differ: %v vs %v", keys(got), keys(want))
	}
	via.mu.Lock()
	defer via.mu.Unlock()
	if via.samples != 1 || via.elicits != 1 {
		t.Errorf("through mcptrail stdio the SDK handled %d sampling and %d elicitation requests, want 1 each", via.samples, via.elicits)
	}
}
