package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// goSDKTraffic drives the official Go SDK client through the gateway at
// url in the given protocol mode ("" = the SDK's latest, 2026-07-28):
// tools (with progress, sampling and elicitation), resources,
// prompts, completion, ping and logging/setLevel (no roots: see
// TestOfficialClientTrafficReplaysClean on per-session catalogs).
func goSDKTraffic(t *testing.T, url, version string) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcptrail-gosdk-replay", Version: "1"}, &mcp.ClientOptions{
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Role: "assistant", Content: &mcp.TextContent{Text: "sampled by the Go SDK"}, Model: "test-model", StopReason: "endTurn"}, nil
		},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, opts)
	if err != nil {
		t.Fatalf("Go SDK (%q) connect: %v", version, err)
	}
	defer cs.Close()
	errs := 0
	check := func(what string, err error) {
		if err != nil {
			errs++
			t.Logf("Go SDK %q: %s: %v", version, what, err)
		}
	}
	call := func(tool string, args map[string]any, meta mcp.Meta) {
		p := &mcp.CallToolParams{Name: tool, Arguments: args}
		if meta != nil {
			p.Meta = meta
		}
		_, err := cs.CallTool(ctx, p)
		check("tools/call "+tool, err)
	}
	_, err = cs.ListTools(ctx, nil)
	check("tools/list", err)
	call("echo", map[string]any{"message": "hello"}, nil)
	call("get-sum", map[string]any{"a": 2, "b": 3}, nil)
	call("get-tiny-image", map[string]any{}, nil)
	call("get-annotated-message", map[string]any{"messageType": "error", "includeImage": true}, nil)
	call("trigger-long-running-operation", map[string]any{"duration": 0.5, "steps": 5}, mcp.Meta{"progressToken": "p-1"})
	call("trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5}, nil)
	call("trigger-elicitation-request", map[string]any{}, nil)
	res, err := cs.ListResources(ctx, nil)
	check("resources/list", err)
	_, err = cs.ListResourceTemplates(ctx, nil)
	check("resources/templates/list", err)
	if res != nil && len(res.Resources) > 0 {
		_, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: res.Resources[0].URI})
		check("resources/read", err)
	}
	_, err = cs.ListPrompts(ctx, nil)
	check("prompts/list", err)
	_, err = cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "args-prompt", Arguments: map[string]string{"city": "Paris"}})
	check("prompts/get", err)
	_, err = cs.Complete(ctx, &mcp.CompleteParams{
		Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "completable-prompt"},
		Argument: mcp.CompleteParamsArgument{Name: "department", Value: "E"},
	})
	check("completion/complete", err)
	check("ping", cs.Ping(ctx, nil))
	check("logging/setLevel", cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}))
	if errs > 0 {
		t.Errorf("Go SDK %q: %d steps failed through the gateway", version, errs)
	}
}

var replaySummary = regexp.MustCompile(`(\d+) requests, (\d+) replayed: \d+ identical, (\d+) changed, (\d+) failed, (\d+) skipped`)

// TestOfficialClientTrafficReplaysClean (issue 8, "replay: zero false
// alarms"): the traffic of the official clients — the TypeScript SDK over
// streamable HTTP and through `mcptrail stdio`, and the Go SDK in its
// 2025-11-25 and sessionless 2026-07-28 modes (multi round-trip sampling and
// elicitation included), and the MCP Inspector CLI (a session per step) — through a recording gateway in front of
// server-everything (mounted without a namespace), replayed with
// `mcptrail replay mock` three times in a row: every run exits 0 with 0
// changed and 0 failed. The Go SDK's 2026 traffic gave 19 changed answers
// before replay kept each request's protocol version, the recorded
// backend requests to the client and the backends' handshakes.
// server-everything lists get-roots-list, trigger-sampling-request and
// trigger-elicitation-request only to clients that declared roots,
// sampling or elicitation: the mock serves each capability profile the
// catalog its clients saw (these tools were --ignore-path'd before).
func TestOfficialClientTrafficReplaysClean(t *testing.T) {
	npm := npmDir(t)
	srv := chtest.Shared(t)
	everything := startEverythingHTTP(t, npm)
	cfgPath := filepath.Join(t.TempDir(), "gw.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
servers:
  - name: everything
    transport: http
    url: %s
    no_namespace: true
    required: true
recorder:
  clickhouse:
    addr: ["${E2E_CH_ADDR}"]
    database: ${E2E_CH_DB}
  spool:
    dir: ${E2E_SPOOL_DIR}
    fsync: interval
    fsync_interval: 50ms
  flush_interval: 100ms
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`, everything)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := e2eEnv{Config: cfgPath, CHAddr: srv.Addr(), CHDB: chtest.Database(t, srv.Addr()), SpoolDir: t.TempDir(), RedactKey: randAlnum(32)}
	gw := startGateway(t, env)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"streamable HTTP", []string{"--url", gw.url + "/mcp", "--scenario", "everything"}},
		{"mcptrail stdio", []string{"--transport", "stdio", "--cmd", mcptrailBin(t) + " stdio --url " + gw.url + "/mcp", "--scenario", "everything"}},
	} {
		if r := runClient(t, npm, tc.args...); len(r.Steps) < 10 {
			t.Fatalf("TypeScript client over %s: only %d steps ran (failed %v)", tc.name, len(r.Steps), r.Failed)
		}
	}
	goSDKTraffic(t, gw.url+"/mcp", "2025-11-25")
	goSDKTraffic(t, gw.url+"/mcp", "")
	// The Inspector CLI opens a session per step (each a Node start: the
	// steps the other clients do not cover, side by side).
	var wg sync.WaitGroup
	for _, step := range inspectorSteps {
		if !slices.Contains(step, "a=x") && !slices.Contains(step, "logging/setLevel") && !slices.Contains(step, "resources/read") && !slices.Contains(step, "tools/list") {
			continue
		}
		wg.Go(func() {
			if out := runInspector(t, npm, []string{gw.url + "/mcp"}, step); strings.Contains(out, "not JSON") {
				t.Errorf("Inspector CLI %v through the gateway: %s", step, out)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	gw.waitWritten(t)

	replayEnv := []string{"E2E_REDACTION_KEY=" + env.RedactKey}
	for run := 1; run <= 3; run++ {
		out, stderr, code := runCLIEnv(t, replayEnv, "replay", "mock", "--clickhouse", env.CHAddr, "--database", env.CHDB, "--since", "10m")
		m := replaySummary.FindStringSubmatch(out)
		if code != 0 || m == nil || m[3] != "0" || m[4] != "0" {
			t.Fatalf("replay mock run %d: exit %d, want 0 with 0 changed, 0 failed\n%s\n%s", run, code, tail(out, 6000), tail(stderr, 3000))
		}
		if n, _ := strconv.Atoi(m[2]); n < 50 {
			t.Errorf("replay mock run %d replayed %d requests, want the clients' traffic (>= 50)\n%s", run, n, out)
		}
		t.Logf("replay mock run %d: %s", run, strings.TrimSpace(m[0]))
	}
}
