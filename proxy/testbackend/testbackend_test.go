package testbackend_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// httpClient starts b over httptest and returns an initialized mcp-go client.
// The client negotiates the newest protocol (2026-07-28, server/discover)
// unless opts pin an older one.
func httpClient(t *testing.T, b *testbackend.Backend, headers map[string]string, opts ...client.ClientOption) *client.Client {
	return httpClientTr(t, b, []transport.StreamableHTTPCOption{transport.WithHTTPHeaders(headers)}, opts...)
}

func httpClientTr(t *testing.T, b *testbackend.Backend, tropts []transport.StreamableHTTPCOption, opts ...client.ClientOption) *client.Client {
	t.Helper()
	ts := httptest.NewServer(b.HTTPHandler())
	t.Cleanup(ts.Close)
	tr, err := transport.NewStreamableHTTP(ts.URL+"/mcp", tropts...)
	if err != nil {
		t.Fatalf("creating transport: %v", err)
	}
	c := client.NewClient(tr, opts...)
	initialize(t, c)
	return c
}

// legacy pins the initialize handshake era, which real backends such as
// server-everything speak and where server-initiated requests exist.
var legacy = client.WithProtocolVersion("2025-11-25")

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("starting client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "testbackend-test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initializing: %v", err)
	}
}

func callTool(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("calling %s: %v", name, err)
	}
	return res
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) == 0 {
		t.Fatalf("result has no content: %+v", res)
	}
	tc, ok := mcp.AsTextContent(res.Content[0])
	if !ok {
		t.Fatalf("content[0] is %T, want text", res.Content[0])
	}
	return tc.Text
}

func TestTools(t *testing.T) {
	tests := []struct {
		name    string
		variant string
		tool    string
		args    map[string]any
		want    string
		isError bool
	}{
		{"echo", "", "echo", map[string]any{"message": "hello ✓"}, "hello ✓", false},
		{"add v1", "v1", "add", map[string]any{"a": 2, "b": 3}, "5", false},
		{"add v2 is wrong", "v2", "add", map[string]any{"a": 2, "b": 3}, "6", false},
		{"add fractions", "", "add", map[string]any{"a": 0.5, "b": 0.25}, "0.75", false},
		{"fail", "", "fail", nil, "fail: this tool always fails", true},
		{"write_note", "", "write_note", map[string]any{"text": "n1"}, "stored note 1", false},
		{"big", "", "big", map[string]any{"bytes": 5}, "xxxxx", false},
		{"big rejects negative", "", "big", map[string]any{"bytes": -1}, "big: bytes must be in [0, 67108864], got -1", true},
		{"slow without token", "", "slow", map[string]any{"steps": 2, "delay_ms": 1}, "done after 2 steps", false},
	}
	for _, tt := range tests {
		for _, era := range []struct {
			name string
			opts []client.ClientOption
		}{{"2026-07-28", nil}, {"2025-11-25", []client.ClientOption{legacy}}} {
			t.Run(tt.name+"/"+era.name, func(t *testing.T) {
				c := httpClient(t, testbackend.New(testbackend.Options{Variant: tt.variant}), nil, era.opts...)
				res := callTool(t, c, tt.tool, tt.args)
				if got := text(t, res); got != tt.want || res.IsError != tt.isError {
					t.Errorf("%s(%v) = %q (isError %v), want %q (isError %v)", tt.tool, tt.args, got, res.IsError, tt.want, tt.isError)
				}
			})
		}
	}
}

func TestNowIsATimestamp(t *testing.T) {
	c := httpClient(t, testbackend.New(testbackend.Options{}), nil)
	got := text(t, callTool(t, c, "now", nil))
	if _, err := time.Parse(time.RFC3339Nano, got); err != nil {
		t.Errorf("now = %q, not RFC 3339: %v", got, err)
	}
}

func TestToolListAnnotations(t *testing.T) {
	c := httpClient(t, testbackend.New(testbackend.Options{}), nil)
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("listing tools: %v", err)
	}
	readOnly := map[string]bool{}
	for _, tool := range res.Tools {
		readOnly[tool.Name] = tool.Annotations.ReadOnlyHint != nil && *tool.Annotations.ReadOnlyHint
	}
	want := map[string]bool{"echo": true, "add": true, "now": true, "fail": true, "slow": true, "big": true, "sample": true, "elicit": true, "write_note": false}
	for name, ro := range want {
		got, ok := readOnly[name]
		if !ok {
			t.Errorf("tool %q missing from tools/list", name)
			continue
		}
		if got != ro {
			t.Errorf("readOnlyHint(%s) = %v, want %v", name, got, ro)
		}
	}
	for _, tool := range res.Tools {
		if tool.Name == "write_note" && (tool.Annotations.DestructiveHint == nil || !*tool.Annotations.DestructiveHint) {
			t.Errorf("write_note destructiveHint = %v, want true", tool.Annotations.DestructiveHint)
		}
	}
}

func TestProgressInOrder(t *testing.T) {
	c := httpClient(t, testbackend.New(testbackend.Options{}), nil, legacy)
	var mu sync.Mutex
	var progress []float64
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/progress" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		p, _ := n.Params.AdditionalFields["progress"].(float64)
		progress = append(progress, p)
	})
	req := mcp.CallToolRequest{}
	req.Params.Name = "slow"
	req.Params.Arguments = map[string]any{"steps": 4, "delay_ms": 1}
	req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1"}
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("calling slow: %v", err)
	}
	if got := text(t, res); got != "done after 4 steps" {
		t.Errorf("slow = %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []float64{1, 2, 3, 4}; !slices.Equal(progress, want) {
		t.Errorf("progress before result = %v, want %v", progress, want)
	}
}

func TestResourcesAndPrompts(t *testing.T) {
	c := httpClient(t, testbackend.New(testbackend.Options{}), nil)
	ctx := context.Background()
	rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatalf("listing resources: %v", err)
	}
	var uris []string
	for _, r := range rl.Resources {
		uris = append(uris, r.URI)
	}
	slices.Sort(uris)
	if want := []string{"test://static/1", "test://static/2"}; !slices.Equal(uris, want) {
		t.Errorf("resources = %v, want %v", uris, want)
	}
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = "test://static/1"
	res, err := c.ReadResource(ctx, rr)
	if err != nil {
		t.Fatalf("reading resource: %v", err)
	}
	if tc, ok := res.Contents[0].(mcp.TextResourceContents); !ok || tc.Text != "static resource one" {
		t.Errorf("read test://static/1 = %+v", res.Contents)
	}
	rr.Params.URI = "test://missing"
	if _, err := c.ReadResource(ctx, rr); err == nil {
		t.Errorf("reading unknown resource succeeded, want an error")
	}
	gp := mcp.GetPromptRequest{}
	gp.Params.Name = "greet"
	gp.Params.Arguments = map[string]string{"name": "Ada"}
	pr, err := c.GetPrompt(ctx, gp)
	if err != nil {
		t.Fatalf("getting prompt: %v", err)
	}
	if tc, ok := mcp.AsTextContent(pr.Messages[0].Content); !ok || tc.Text != "Hello, Ada!" {
		t.Errorf("greet = %+v", pr.Messages)
	}
}

func TestSeenAndTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	b := testbackend.New(testbackend.Options{TracerProvider: tp})
	c := httpClient(t, b, map[string]string{"X-Request-Id": "req-42"}, legacy)

	// Make a parent span context and carry it in params._meta.
	parentCtx, parent := tp.Tracer("test").Start(context.Background(), "client")
	parent.End()
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(parentCtx, carrier)
	req := mcp.CallToolRequest{}
	req.Params.Name = "echo"
	req.Params.Arguments = map[string]any{"message": "m"}
	req.Params.Meta = &mcp.Meta{AdditionalFields: map[string]any{"traceparent": carrier["traceparent"], "x-custom": 1}}
	if _, err := c.CallTool(context.Background(), req); err != nil {
		t.Fatalf("calling echo: %v", err)
	}

	var call *testbackend.Seen
	seen := b.Seen()
	for i := range seen {
		if seen[i].Method == "tools/call" {
			call = &seen[i]
		}
	}
	if call == nil {
		t.Fatalf("no tools/call in Seen() = %+v", seen)
	}
	if call.Tool != "echo" || call.RequestID != "req-42" || call.Traceparent != carrier["traceparent"] {
		t.Errorf("Seen = %+v, want tool echo, request id req-42, traceparent %s", *call, carrier["traceparent"])
	}
	var meta map[string]any
	if err := json.Unmarshal(call.Meta, &meta); err != nil || meta["x-custom"] != float64(1) {
		t.Errorf("Seen.Meta = %s (%v), want x-custom: 1", call.Meta, err)
	}
	if seen[0].Method != "initialize" {
		t.Errorf("first seen method = %q, want initialize", seen[0].Method)
	}

	var span sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "tools/call echo" {
			span = s
		}
	}
	if span == nil {
		t.Fatalf("no span %q among %d ended spans", "tools/call echo", len(rec.Ended()))
	}
	want := trace.SpanContextFromContext(parentCtx)
	if span.Parent().SpanID() != want.SpanID() || span.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("span parent = %s/%s, want %s/%s", span.SpanContext().TraceID(), span.Parent().SpanID(), want.TraceID(), want.SpanID())
	}
}

type cannedElicitor struct{}

func (cannedElicitor) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{
		Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"name": "Ada"},
	}}, nil
}

func TestServerInitiatedRequestsOverHTTP(t *testing.T) {
	// sample needs the GET stream, which the client opens with continuous listening.
	c := httpClientTr(t, testbackend.New(testbackend.Options{GETStream: true}),
		[]transport.StreamableHTTPCOption{transport.WithContinuousListening()}, legacy,
		client.WithElicitationHandler(cannedElicitor{}), client.WithSamplingHandler(cannedSampler{}))
	if got, want := text(t, callTool(t, c, "elicit", nil)), `elicited: accept {"name":"Ada"}`; got != want {
		t.Errorf("elicit = %q, want %q", got, want)
	}
	if got, want := text(t, callTool(t, c, "sample", map[string]any{"prompt": "p"})), "sampled: canned answer"; got != want {
		t.Errorf("sample = %q, want %q", got, want)
	}
}

type cannedSampler struct{}

func (cannedSampler) CreateMessage(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("canned answer")},
		Model:           "canned",
	}, nil
}

func TestStdio(t *testing.T) {
	b := testbackend.New(testbackend.Options{Variant: "v2"})
	cr, sw := io.Pipe() // server → client
	sr, cw := io.Pipe() // client → server
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ServeStdio(ctx, sr, sw) }()
	t.Cleanup(func() {
		cw.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeStdio: %v", err)
		}
		sw.Close()
		sr.Close()
		cr.Close()
	})

	c := client.NewClient(transport.NewIO(cr, cw, io.NopCloser(strings.NewReader(""))),
		client.WithSamplingHandler(cannedSampler{}), legacy)
	initialize(t, c)
	if got := text(t, callTool(t, c, "add", map[string]any{"a": 1, "b": 1})); got != "3" {
		t.Errorf("v2 add(1,1) over stdio = %q, want 3", got)
	}
	if got := text(t, callTool(t, c, "sample", map[string]any{"prompt": "hi"})); got != "sampled: canned answer" {
		t.Errorf("sample over stdio = %q, want %q", got, "sampled: canned answer")
	}
	var methods []string
	for _, s := range b.Seen() {
		methods = append(methods, s.Method)
	}
	if !slices.Contains(methods, "tools/call") {
		t.Errorf("Seen methods = %v, want a tools/call", methods)
	}
}

func TestRunRejectsUnknownVariant(t *testing.T) {
	if err := testbackend.RunStdio(context.Background(), "v3", false); err == nil || !strings.Contains(err.Error(), "v3") {
		t.Errorf("RunStdio(v3) = %v, want an error naming v3", err)
	}
	if err := testbackend.RunHTTP(context.Background(), "v9", "127.0.0.1:0", false); err == nil {
		t.Errorf("RunHTTP(v9) = nil, want an error")
	}
}

func TestRunHTTPStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- testbackend.RunHTTP(ctx, "v1", "127.0.0.1:0", false) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunHTTP after cancel = %v, want nil", err)
	}
}

func TestSeenLimit(t *testing.T) {
	b := testbackend.New(testbackend.Options{SeenLimit: 4})
	c := httpClient(t, b, nil, legacy)
	for i := range 10 {
		callTool(t, c, "echo", map[string]any{"message": strconv.Itoa(i)})
	}
	seen := b.Seen()
	if len(seen) > 4 || b.SeenTotal() != 11 { // initialize + 10 calls
		t.Fatalf("len(Seen()) = %d, SeenTotal() = %d; want <= 4 and 11", len(seen), b.SeenTotal())
	}
	if last := seen[len(seen)-1]; last.Tool != "echo" {
		t.Errorf("last seen = %+v, want the last echo", last)
	}
}
