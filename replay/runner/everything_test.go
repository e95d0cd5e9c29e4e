package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/bundle"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
)

func everythingServer(t testing.TB) config.Server {
	t.Helper()
	p, err := filepath.Abs("../../testdata/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("server-everything is not installed (%v): run `npm ci --prefix testdata/npm`", err)
	}
	return config.Server{Name: "everything", Transport: "stdio", Command: "node", Args: []string{p, "stdio"}, Timeout: 30 * time.Second}
}

// sampler answers sampling requests like an LLM client would.
func sampler(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	if req.Method != "sampling/createMessage" {
		return transport.NewJSONRPCErrorResponse(req.ID, -32601, "not supported", nil), nil
	}
	return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(
		`{"role":"assistant","content":{"type":"text","text":"sampled by the test client"},"model":"test-model","stopReason":"endTurn"}`)), nil
}

// recordEverything records a scenario against server-everything: tools with
// progress, sampling, tool and protocol errors, images, resources, prompts.
func recordEverything(t *testing.T) []recorder.Event {
	t.Helper()
	gwURL, rec := recordingGateway(t, &config.Config{Servers: []config.Server{everythingServer(t)}})

	// server-everything registers its sampling tool once a client with
	// sampling is known; wait on a session that is left out of the recording.
	warm := newPeer(t, gwURL, sampler)
	deadline := time.Now().Add(15 * time.Second)
	for !bytes.Contains(warm.Call("tools/list", map[string]any{}).Result, []byte(`"everything.trigger-sampling-request"`)) {
		if time.Now().After(deadline) {
			t.Fatal("trigger-sampling-request never listed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	warmSession := warm.TR.GetSessionId()

	p := newPeer(t, gwURL, sampler)
	p.Call("tools/list", map[string]any{})
	p.Tool("everything.echo", map[string]any{"message": "hello"})
	p.Tool("everything.get-sum", map[string]any{"a": 2, "b": 3})
	p.Tool("everything.get-tiny-image", map[string]any{})
	p.Tool("everything.get-annotated-message", map[string]any{"messageType": "error", "includeImage": true})
	p.Tool("everything.get-structured-content", map[string]any{"location": "Chicago"})
	p.Tool("everything.get-sum", map[string]any{"a": "not a number"})
	p.Tool("everything.no-such-tool", map[string]any{})
	p.Call("tools/call", map[string]any{"name": "everything.trigger-long-running-operation", "arguments": map[string]any{"duration": 0.3, "steps": 3},
		"_meta": map[string]any{"progressToken": "p-1"}})
	if r := p.Tool("everything.trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5}); !bytes.Contains(r.Result, []byte("sampled by the test client")) {
		t.Fatalf("sampling did not reach the client: %s", r.Result)
	}
	p.Call("resources/list", map[string]any{})
	p.Call("resources/templates/list", map[string]any{})
	p.Call("resources/read", map[string]any{"uri": "demo://resource/dynamic/text/7"})
	p.Call("prompts/list", map[string]any{})
	p.Call("prompts/get", map[string]any{"name": "everything.simple-prompt"})
	p.Call("prompts/get", map[string]any{"name": "everything.args-prompt", "arguments": map[string]string{"city": "Paris"}})
	p.Call("prompts/get", map[string]any{"name": "everything.no-such-prompt"})

	var events []recorder.Event
	for _, e := range rec.All() {
		if e.SessionID != warmSession {
			events = append(events, e)
		}
	}
	return events
}

// TestEverythingAllModes records a scenario against server-everything and
// replays it in all three modes, from memory and from a bundle file: no
// differences, nothing failed or skipped.
func TestEverythingAllModes(t *testing.T) {
	recorded := recordEverything(t)
	var buf bytes.Buffer
	if err := bundle.Write(&buf, &bundle.Bundle{Events: recorded}); err != nil {
		t.Fatal(err)
	}
	fromBundle, err := bundle.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name   string
		events []recorder.Event
	}{{"memory", recorded}, {"bundle", fromBundle.Events}} {
		reqs := replay.Requests(src.events)
		for _, mode := range []runner.Mode{runner.ModeMock, runner.ModeUpstream, runner.ModeE2E} {
			t.Run(src.name+"/"+string(mode), func(t *testing.T) {
				// The dynamic text resource carries the time it was read.
				o := runner.RunOptions{Options: runner.Options{Mode: mode, Ignore: mustIgnore(t, "everything:*:/contents/0/text")}}
				switch mode {
				case runner.ModeMock:
					gw, store := mockGateway(t, src.events, nil, nil)
					o.GatewayURL, o.KeepPlaceholders = gw.MCPURL, true
					o.BeforePass = func(int) { store.Reset() }
				case runner.ModeUpstream:
					o.Targets = map[string]config.Server{"everything": everythingServer(t)}
					// server-everything annotates none of its tools read-only.
					o.AllowWrites = true
				case runner.ModeE2E:
					gw, err := runner.StartGateway(context.Background(), &config.Config{Servers: []config.Server{everythingServer(t)}}, 20*time.Second, nil)
					if err != nil {
						t.Fatal(err)
					}
					defer gw.Close()
					o.GatewayURL = gw.MCPURL
					o.AllowWrites = true // as upstream: replay every tool
				}
				rep, err := runner.Run(context.Background(), reqs, o)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Cases) == 0 {
					t.Fatal("nothing replayed")
				}
				for _, c := range rep.Cases {
					if c.Status != report.StatusIdentical {
						t.Errorf("%s: %s\n%s", c.Tool(), c.Status, summary(rep.Cases))
						break
					}
				}
				if mode == runner.ModeUpstream {
					// Only the calls that reached the backend are replayed,
					// sampling included (answered from the recording).
					if !slices.ContainsFunc(rep.Cases, func(c report.Case) bool { return c.Tool() == "everything.trigger-sampling-request" }) {
						t.Errorf("sampling call not replayed upstream:\n%s", summary(rep.Cases))
					}
				}
			})
		}
	}
}
