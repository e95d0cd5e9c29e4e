package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/bridge"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// goSDKPeer is the official Go SDK as a client, connected either directly
// to server-everything or through the gateway.
type goSDKPeer struct {
	cs      *mcp.ClientSession
	prefix  string // "everything." through the gateway
	mu      sync.Mutex
	prog    map[string][]float64
	samples int
	elicits int
}

func newGoSDKPeer(t *testing.T, url, prefix, version string) *goSDKPeer {
	t.Helper()
	return connectGoSDK(t, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, prefix, version)
}

// connectGoSDK connects the Go SDK client over tr.
func connectGoSDK(t *testing.T, tr mcp.Transport, prefix, version string) *goSDKPeer {
	t.Helper()
	p := &goSDKPeer{prefix: prefix, prog: map[string][]float64{}}
	c := mcp.NewClient(&mcp.Implementation{Name: "mcptrail-gosdk-e2e", Version: "1"}, &mcp.ClientOptions{
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			p.mu.Lock()
			p.samples++
			p.mu.Unlock()
			return &mcp.CreateMessageResult{Role: "assistant", Content: &mcp.TextContent{Text: "sampled by the Go SDK"}, Model: "test-model", StopReason: "endTurn"}, nil
		},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			p.mu.Lock()
			p.elicits++
			p.mu.Unlock()
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			p.mu.Lock()
			tok := fmt.Sprint(r.Params.ProgressToken)
			p.prog[tok] = append(p.prog[tok], r.Params.Progress)
			p.mu.Unlock()
		},
	})
	c.AddRoots(&mcp.Root{URI: "file:///tmp", Name: "tmp"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var opts *mcp.ClientSessionOptions
	if version != "" {
		opts = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := c.Connect(ctx, tr, opts)
	if err != nil {
		t.Fatalf("Go SDK connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	p.cs = cs
	return p
}

// goSDKNormalize renders what the SDK returned as comparable JSON: the
// gateway's request-id stamp and serverInfo leave _meta, wall-clock times
// and the namespace prefix are removed.
func goSDKNormalize(v any, err error, prefix string) string {
	if err != nil {
		s := "error: " + err.Error()
		if prefix != "" {
			s = strings.ReplaceAll(s, prefix, "")
		}
		return s
	}
	b, _ := json.Marshal(v)
	var x any
	_ = json.Unmarshal(b, &x)
	x = stripStamps(x)
	if m, ok := x.(map[string]any); ok {
		// Fields 2026-07-28 adds to every result (resultType) and to list
		// and read results (caching hints); in 2025-11-25 mode the SDK shows
		// their zero values.
		if m["resultType"] == "complete" {
			delete(m, "resultType")
		}
		delete(m, "ttlMs")
		delete(m, "cacheScope")
	}
	b, _ = json.Marshal(x)
	s := clockRE.ReplaceAllString(string(b), "<time>")
	s = sdkRequestIDRE.ReplaceAllString(s, "")
	if prefix != "" {
		s = strings.ReplaceAll(s, `"name":"`+prefix, `"name":"`)
	}
	return s
}

var sdkRequestIDRE = regexp.MustCompile(`mcptrail\.dev/request-id[^,}]*`)

// stripStamps removes, at any depth, the _meta keys the gateway adds.
func stripStamps(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "_meta" {
				if m, ok := e.(map[string]any); ok {
					delete(m, proxy.MetaRequestID)
					delete(m, "io.modelcontextprotocol/serverInfo")
					if len(m) == 0 {
						delete(x, k)
						continue
					}
				}
			}
			x[k] = stripStamps(e)
		}
	case []any:
		for i := range x {
			x[i] = stripStamps(x[i])
		}
	}
	return v
}

// goSDKScenario runs the same steps with the Go SDK and returns each step's
// normalized outcome.
func goSDKScenario(t *testing.T, p *goSDKPeer) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pre := p.prefix
	out := map[string]string{}
	call := func(step, tool string, args map[string]any, meta mcp.Meta) {
		params := &mcp.CallToolParams{Name: pre + tool, Arguments: args}
		if meta != nil {
			params.Meta = meta
		}
		res, err := p.cs.CallTool(ctx, params)
		out[step] = goSDKNormalize(res, err, pre)
	}
	var names []string
	for tool, err := range p.cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("listing tools: %v", err)
		}
		names = append(names, strings.TrimPrefix(tool.Name, pre))
	}
	slices.Sort(names)
	out["tools"] = strings.Join(names, ",")
	tools, err := p.cs.ListTools(ctx, nil)
	out["tools/list"] = goSDKNormalize(tools, err, pre)

	call("echo", "echo", map[string]any{"message": "hello"}, nil)
	call("get-sum", "get-sum", map[string]any{"a": 2, "b": 3}, nil)
	call("structured", "get-structured-content", map[string]any{"location": "Chicago"}, nil)
	call("image", "get-tiny-image", map[string]any{}, nil)
	call("annotated", "get-annotated-message", map[string]any{"messageType": "error", "includeImage": true}, nil)
	call("invalid args", "get-sum", map[string]any{"a": "not a number"}, nil)
	call("unknown tool", "no-such-tool", map[string]any{}, nil)
	call("progress", "trigger-long-running-operation", map[string]any{"duration": 0.5, "steps": 5}, mcp.Meta{"progressToken": "p-1"})
	call("sampling", "trigger-sampling-request", map[string]any{"prompt": "hi", "maxTokens": 5}, nil)
	call("elicitation", "trigger-elicitation-request", map[string]any{}, nil)
	call("roots", "get-roots-list", map[string]any{}, nil)

	res, err := p.cs.ListResources(ctx, nil)
	out["resources/list"] = goSDKNormalize(res, err, pre)
	tmpl, err := p.cs.ListResourceTemplates(ctx, nil)
	out["templates/list"] = goSDKNormalize(tmpl, err, pre)
	if res == nil || len(res.Resources) == 0 {
		for k, v := range out {
			t.Logf("%s = %.300s", k, v)
		}
		t.Fatalf("no resources listed")
	}
	read, err := p.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: res.Resources[0].URI})
	out["resources/read"] = goSDKNormalize(read, err, pre)
	read, err = p.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo://resource/dynamic/text/7"})
	out["resources/read template"] = goSDKNormalize(read, err, pre)
	prompts, err := p.cs.ListPrompts(ctx, nil)
	out["prompts/list"] = goSDKNormalize(prompts, err, pre)
	pr, err := p.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: pre + "simple-prompt"})
	out["prompts/get"] = goSDKNormalize(pr, err, pre)
	pr, err = p.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: pre + "args-prompt", Arguments: map[string]string{"city": "Paris"}})
	out["prompts/get args"] = goSDKNormalize(pr, err, pre)
	comp, err := p.cs.Complete(ctx, &mcp.CompleteParams{
		Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: pre + "completable-prompt"},
		Argument: mcp.CompleteParamsArgument{Name: "department", Value: "E"},
	})
	out["completion"] = goSDKNormalize(comp, err, pre)
	out["ping"] = goSDKNormalize(struct{}{}, p.cs.Ping(ctx, nil), pre)
	out["logging/setLevel"] = goSDKNormalize(struct{}{}, p.cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}), pre)
	return out
}

// TestGoSDKThroughGateway drives the official Go SDK against
// server-everything directly and through the gateway, in both of the SDK's
// modes: sessionless 2026-07-28 (it probes server/discover, which the
// gateway answers) and the 2025-11-25 session fallback; over streamable HTTP
// and over stdio through `mcptrail stdio` (the bridge). Each step must give
// what the same client gets directly.
func TestGoSDKThroughGateway(t *testing.T) {
	js := everythingJS(t)
	url := startEverythingHTTP(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}}})
	transports := map[string]struct {
		direct, via func(t *testing.T) mcp.Transport
	}{
		"http": {
			direct: func(*testing.T) mcp.Transport { return &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1} },
			via: func(*testing.T) mcp.Transport {
				return &mcp.StreamableClientTransport{Endpoint: e.url + "/mcp", MaxRetries: -1}
			},
		},
		"stdio": {
			direct: func(*testing.T) mcp.Transport {
				return &mcp.CommandTransport{Command: exec.Command("node", js, "stdio")}
			},
			via: func(t *testing.T) mcp.Transport { return bridgeTransport(t, e.url+"/mcp") },
		},
	}
	for _, tc := range []struct {
		name        string
		version     string // ClientSessionOptions.ProtocolVersion; "" = the SDK's latest
		wantGateway string // the version the SDK settles on through the gateway
	}{
		{name: "2026-07-28", version: "", wantGateway: "2026-07-28"},
		{name: "2025-11-25", version: "2025-11-25", wantGateway: "2025-11-25"},
	} {
		for _, trName := range []string{"http", "stdio"} {
			tr := transports[trName]
			t.Run(tc.name+"/"+trName, func(t *testing.T) {
				direct := connectGoSDK(t, tr.direct(t), "", tc.version)
				if v := direct.cs.InitializeResult().ProtocolVersion; v != "2025-11-25" {
					t.Fatalf("directly, the SDK negotiated %s; server-everything speaks 2025-11-25", v)
				}
				via := connectGoSDK(t, tr.via(t), "everything.", tc.version)
				if v := via.cs.InitializeResult().ProtocolVersion; v != tc.wantGateway {
					t.Fatalf("through the gateway, the SDK negotiated %s, want %s", v, tc.wantGateway)
				}
				want := goSDKScenario(t, direct)
				got := goSDKScenario(t, via)
				for _, step := range keys(want) {
					if step == "invalid args" {
						// The gateway's own argument validation answers
						// (TestArgumentValidation): a tool error of its own.
						if g := got[step]; !strings.Contains(g, `"isError":true`) || !strings.Contains(g, "mcptrail: invalid arguments") {
							t.Errorf("invalid args through the gateway = %.300s, want the gateway's tool error", g)
						}
						continue
					}
					if g, w := got[step], want[step]; g != w {
						t.Errorf("%s: through the gateway\n  got  %.600s\n  want %.600s", step, g, w)
					}
				}
				if !slices.Equal(keys(got), keys(want)) {
					t.Errorf("steps differ: %v vs %v", keys(got), keys(want))
				}
				via.mu.Lock()
				defer via.mu.Unlock()
				if prog := via.prog["p-1"]; len(prog) == 0 || !slices.IsSorted(prog) {
					t.Errorf("progress through the gateway = %v, want notifications in order", prog)
				}
				if via.samples != 1 || !strings.Contains(got["sampling"], "sampled by the Go SDK") {
					t.Errorf("sampling: the SDK handled %d requests; the tool said %.200s", via.samples, got["sampling"])
				}
				if via.elicits != 1 {
					t.Errorf("elicitation: the SDK handled %d requests, want 1", via.elicits)
				}
				if !strings.Contains(got["roots"], "file:///tmp") {
					t.Errorf("roots: the tool said %.200s, want the SDK's root", got["roots"])
				}
			})
		}
	}
}

// bridgeTransport is `mcptrail stdio --url url` in process: the SDK writes
// to the bridge's stdin and reads its stdout.
func bridgeTransport(t *testing.T, url string) mcp.Transport {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bridge.Run(ctx, bridge.Config{URL: url}, inR, outW, nil)
		_ = outW.Close()
	}()
	t.Cleanup(func() {
		_ = inW.Close()
		cancel()
		_ = inR.Close()
		<-done
	})
	return &mcp.IOTransport{Reader: outR, Writer: inW}
}

// TestGoSDKListen: the Go SDK in 2026-07-28 mode opens subscriptions/listen
// through the gateway: it is told when the merged tool list changes (a
// backend goes away) and, after Subscribe, when server-everything updates a
// resource (the gateway subscribed upstream on the SDK's behalf).
func TestGoSDKListen(t *testing.T) {
	url := startEverythingHTTP(t)
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second},
		{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second},
	}})
	toolsChanged := make(chan struct{}, 16)
	updated := make(chan string, 16)
	c := mcp.NewClient(&mcp.Implementation{Name: "mcptrail-gosdk-listen", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { toolsChanged <- struct{}{} },
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) { updated <- r.Params.URI },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.url + "/mcp", MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %s, want 2026-07-28", v)
	}
	res, err := cs.ListResources(ctx, nil)
	if err != nil || len(res.Resources) == 0 {
		t.Fatalf("resources/list: %v", err)
	}
	uri := res.Resources[0].URI
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
		t.Fatal(err)
	}
	// The subscription is in place once the gateway has acknowledged it;
	// the SDK does not wait for that, so wait for the listener here.
	waitFor(t, "listen stream open", func() bool { return e.gw.Status().Listens >= 2 })
	toggle := func() {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "everything.toggle-subscriber-updates", Arguments: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	toggle()
	defer toggle()
	select {
	case got := <-updated:
		if got != uri {
			t.Errorf("resources/updated for %q, want %q", got, uri)
		}
	case <-ctx.Done():
		t.Fatal("no notifications/resources/updated reached the Go SDK")
	}

	hs.CloseClientConnections()
	hs.Close()
	select {
	case <-toolsChanged:
	case <-ctx.Done():
		t.Fatal("no notifications/tools/list_changed reached the Go SDK after a backend went away")
	}
}
