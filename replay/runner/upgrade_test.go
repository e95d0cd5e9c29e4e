package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
)

// everythingVersion is server-everything at one published version, installed
// side by side by testdata/npm/package.json ("" is the main pin, 2026.8.31;
// others are npm aliases such as server-everything-2026-1-26).
func everythingVersion(t testing.TB, alias string) config.Server {
	t.Helper()
	dir := "@modelcontextprotocol/server-everything"
	if alias != "" {
		dir = alias
	}
	p, err := filepath.Abs("../../testdata/npm/node_modules/" + dir + "/dist/index.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed (%v): run scripts/setup.sh", dir, err)
	}
	// The gate compares what each version answers, its own validation errors
	// included: with the gateway's argument validation on (the default), an
	// invalid call would be answered by the gateway for every version alike.
	off := false
	return config.Server{Name: "everything", Transport: "stdio", Command: "node", Args: []string{p, "stdio"}, Timeout: 30 * time.Second, ValidateArguments: &off}
}

// clientAnswers answers a backend's sampling and elicitation requests the
// way client number n does, each client differently, so that an answer
// given from another session's recording shows.
func clientAnswers(n int) transport.RequestHandler {
	return func(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
		switch req.Method {
		case "sampling/createMessage":
			return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(fmt.Sprintf(
				`{"role":"assistant","content":{"type":"text","text":"sampled by client %d"},"model":"test-model","stopReason":"endTurn"}`, n))), nil
		case "elicitation/create":
			return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(`{"action":"decline"}`)), nil
		}
		return transport.NewJSONRPCErrorResponse(req.ID, -32601, "not supported", nil), nil
	}
}

// recordUpgradeScenario records three client sessions against
// server-everything 2026.8.31 over stdio, the way a day of traffic looks:
// catalogs, tools with text, images, structured content, progress,
// sampling and elicitation, tool and protocol errors, resources with the
// server's clock in them, prompts and completions.
func recordUpgradeScenario(t *testing.T) []recorder.Event {
	t.Helper()
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{everythingVersion(t, "")}})
	for n := 1; n <= 3; n++ {
		p := newPeer(t, gwURL, clientAnswers(n))
		p.Call("tools/list", map[string]any{})
		p.Call("prompts/list", map[string]any{})
		p.Call("resources/list", map[string]any{})
		p.Call("resources/templates/list", map[string]any{})
		p.Tool("everything.echo", map[string]any{"message": fmt.Sprintf("hello %d", n)})
		p.Tool("everything.get-sum", map[string]any{"a": n, "b": 3})
		p.Tool("everything.get-sum", map[string]any{"a": "not a number"})
		p.Tool("everything.get-tiny-image", map[string]any{})
		p.Tool("everything.get-annotated-message", map[string]any{"messageType": "error", "includeImage": true})
		p.Tool("everything.get-structured-content", map[string]any{"location": "Chicago"})
		p.Tool("everything.no-such-tool", map[string]any{})
		p.Tool("everything.get-env", map[string]any{})
		p.Call("tools/call", map[string]any{"name": "everything.trigger-long-running-operation", "arguments": map[string]any{"duration": 0.2, "steps": 2},
			"_meta": map[string]any{"progressToken": fmt.Sprintf("p-%d", n)}})
		if r := p.Tool("everything.trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5}); !strings.Contains(string(r.Result), fmt.Sprintf("sampled by client %d", n)) {
			t.Fatalf("sampling of client %d: %s", n, r.Result)
		}
		p.Tool("everything.trigger-elicitation-request", map[string]any{})
		p.Tool("everything.get-resource-links", map[string]any{"count": 2})
		p.Tool("everything.get-resource-reference", map[string]any{"resourceType": "Text", "resourceId": 2})
		p.Call("resources/read", map[string]any{"uri": "demo://resource/dynamic/text/7"})
		p.Call("resources/read", map[string]any{"uri": "demo://resource/static/document/architecture.md"})
		p.Call("prompts/get", map[string]any{"name": "everything.simple-prompt"})
		p.Call("prompts/get", map[string]any{"name": "everything.args-prompt", "arguments": map[string]string{"city": "Paris"}})
		p.Call("prompts/get", map[string]any{"name": "everything.no-such-prompt"})
		p.Call("completion/complete", map[string]any{"ref": map[string]any{"type": "ref/prompt", "name": "everything.completable-prompt"},
			"argument": map[string]any{"name": "department", "value": "E"}})
	}
	return rec.All()
}

// gateRun replays the recording against server-everything at version alias
// in mode, at the default concurrency, as `mcptrail replay <mode>` does.
func gateRun(t *testing.T, events []recorder.Event, mode runner.Mode, alias string, baselineTwice bool) *report.Report {
	t.Helper()
	// --allow-writes: sampling and elicitation tools are not annotated
	// read-only, and they are what item 1 of the issue is about.
	o := runner.RunOptions{Options: runner.Options{Mode: mode, AllowWrites: true}, BaselineTwice: baselineTwice}
	switch mode {
	case runner.ModeMock:
		// The recording gateway's config, as `replay mock --config` takes it.
		gw, store := mockGateway(t, events, &config.Config{Servers: []config.Server{everythingVersion(t, "")}}, nil)
		o.GatewayURL, o.KeepPlaceholders = gw.MCPURL, true
		o.BeforePass = func(int) { store.Reset() }
	case runner.ModeUpstream:
		o.Targets = map[string]config.Server{"everything": everythingVersion(t, alias)}
	case runner.ModeE2E:
		gw, err := runner.StartGateway(context.Background(), &config.Config{Servers: []config.Server{everythingVersion(t, alias)}}, 20*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gw.Close() })
		o.GatewayURL = gw.MCPURL
	}
	rep, err := runner.Run(context.Background(), replay.Requests(events), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// changeLines is the report's regressions as sorted "tool kind path" lines
// (catalog cases read "tools/list everything …").
func changeLines(rep *report.Report) []string {
	var out []string
	for _, c := range rep.Cases {
		switch c.Status {
		case report.StatusChanged:
			for _, ch := range c.Diff.Changes {
				p := ch.Path
				if p == "" {
					p = "/"
				}
				out = append(out, fmt.Sprintf("%s %s %s %s", c.Tool(), ch.Risk, ch.Kind, p))
			}
		case report.StatusFailed:
			out = append(out, fmt.Sprintf("%s failed: %s", c.Tool(), c.Reason))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestUpgradeGate is issue 9's multi-version scenario: traffic recorded
// against server-everything 2026.8.31 replayed against published versions
// installed side by side, with the ground truth established by calling the
// versions directly (see the expectations below).
func TestUpgradeGate(t *testing.T) {
	events := recordUpgradeScenario(t)
	t.Run("same version", func(t *testing.T) {
		for _, mode := range []runner.Mode{runner.ModeMock, runner.ModeUpstream, runner.ModeE2E} {
			t.Run(string(mode), func(t *testing.T) {
				rep := gateRun(t, events, mode, "", mode != runner.ModeMock)
				if n := rep.Regressions(); n != 0 || rep.Total.Skipped != 0 {
					t.Errorf("%d regressions, %d skipped, want 0:\n%s\n%s", n, rep.Total.Skipped, strings.Join(changeLines(rep), "\n"), summary(rep.Cases))
				}
			})
		}
	})
	t.Run("same version without baseline", func(t *testing.T) {
		// What --baseline-twice calls noise: the server's clock in the
		// dynamic text resource (read directly and embedded by
		// get-resource-reference).
		rep := gateRun(t, events, runner.ModeUpstream, "", false)
		want := []string{
			"demo://resource/dynamic/text/7 medium value_changed /contents/0/text",
			"everything.get-resource-reference medium value_changed /content/1/resource/text",
		}
		// (A subset: a read replayed within the second it was recorded in
		// reads the same clock.)
		for _, got := range changeLines(rep) {
			if !slices.Contains(want, got) {
				t.Errorf("change %q, want only\n%s", got, strings.Join(want, "\n"))
			}
		}
	})
	t.Run("2026.8.18 only timestamps", func(t *testing.T) {
		for _, mode := range []runner.Mode{runner.ModeUpstream, runner.ModeE2E} {
			t.Run(string(mode), func(t *testing.T) {
				rep := gateRun(t, events, mode, "server-everything-2026-8-18", true)
				if n := rep.Regressions(); n != 0 {
					t.Errorf("%d regressions, want 0:\n%s", n, strings.Join(changeLines(rep), "\n"))
				}
			})
		}
	})
	t.Run("2026.1.26 real changes", func(t *testing.T) {
		// Ground truth (both versions called directly): every tool lost its
		// annotations (get-roots-list is not offered: the recorded clients
		// declared sampling and elicitation, not roots); eleven input schemas gained additionalProperties:
		// false; args-prompt's second argument gained a description; the
		// get-sum validation error is worded differently.
		tightened := []string{"echo", "get-annotated-message", "get-resource-links", "get-resource-reference", "get-structured-content",
			"get-sum", "gzip-file-as-resource", "simulate-research-query", "trigger-long-running-operation", "trigger-sampling-request"}
		var want []string
		for _, tool := range []string{"echo", "get-annotated-message", "get-env", "get-resource-links", "get-resource-reference",
			"get-structured-content", "get-sum", "get-tiny-image", "gzip-file-as-resource", "simulate-research-query", "toggle-simulated-logging",
			"toggle-subscriber-updates", "trigger-elicitation-request", "trigger-long-running-operation", "trigger-sampling-request"} {
			want = append(want, "tools/list everything medium removed /tools/"+tool+"/annotations")
			if slices.Contains(tightened, tool) {
				want = append(want, "tools/list everything medium added /tools/"+tool+"/inputSchema/additionalProperties")
			}
		}
		want = append(want,
			"everything.get-sum medium value_changed /content/0/text",
			"prompts/list everything medium added /prompts/args-prompt/arguments/state/description",
		)
		sort.Strings(want)
		rep := gateRun(t, events, runner.ModeUpstream, "server-everything-2026-1-26", true)
		if got := changeLines(rep); !slices.Equal(got, want) {
			t.Errorf("upstream changes =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// e2e: the same, as the clients see it (namespaced, in the
		// recorded list requests rather than catalog cases).
		var wantE2E []string
		for _, w := range want {
			w = strings.Replace(w, "tools/list everything ", "tools/list ", 1)
			w = strings.Replace(w, "prompts/list everything ", "prompts/list ", 1)
			w = strings.Replace(w, "/tools/", "/tools/everything.", 1)
			w = strings.Replace(w, "/prompts/", "/prompts/everything.", 1)
			wantE2E = append(wantE2E, w)
		}
		sort.Strings(wantE2E)
		if got := changeLines(gateRun(t, events, runner.ModeE2E, "server-everything-2026-1-26", true)); !slices.Equal(got, wantE2E) {
			t.Errorf("e2e changes =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantE2E, "\n"))
		}
		// The report names what it replayed against (issue 9.8).
		if len(rep.Against) != 1 || !strings.Contains(rep.Against[0].Address, "server-everything-2026-1-26") ||
			rep.Against[0].ServerName != "mcp-servers/everything" || rep.Against[0].ProtocolVersion == "" ||
			!slices.Contains(rep.Against[0].Env, "PATH") || slices.Contains(rep.Against[0].Env, "SHLVL") {
			t.Errorf("Against = %+v, want the 2026.1.26 command, its serverInfo and the environment a gateway gives it", rep.Against)
		}
	})
}
