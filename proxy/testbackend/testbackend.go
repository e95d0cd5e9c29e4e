// Package testbackend is a small, deterministic MCP server used as an
// upstream in mcptrail's tests, benchmarks and demos. It is built with
// mcp-go's server package and serves streamable HTTP (in-process through
// httptest or on a port) and stdio.
//
// Tools:
//
//	echo {message}            read-only; returns the message unchanged
//	add {a, b}                read-only; returns a+b ("v2" variant: a+b+1, a planted regression)
//	now                       read-only; returns the current time (non-deterministic)
//	fail                      read-only; returns a tool error (isError: true)
//	slow {steps, delay_ms}    read-only; sends notifications/progress per step when a progressToken is given
//	write_note {text}         destructive; stores the note in memory
//	big {bytes}               read-only; returns that many characters
//	elicit {message}          asks the client with elicitation/create (on the POST stream) and returns the answer
//	sample {prompt}           asks the client with sampling/createMessage; over HTTP mcp-go sends it
//	                          only on the GET stream, so it needs Options.GETStream
//	touch {uri}               (Options.Subscribable only) sends notifications/resources/updated for
//	                          the URI on every open subscriptions/listen stream subscribed to it
//	                          and to every session that did resources/subscribe to it (see
//	                          [Backend.Touch]), and answers how many it reached
//	mutate {tool, description, read_only, input_schema}
//	                          (Options.Mutable only) redefines another tool — a rug pull — and sends
//	                          notifications/tools/list_changed on the call's stream
//
// Resources test://static/1 and test://static/2, and the prompt greet {name}.
//
// Every request the backend receives is recorded (see [Backend.Seen]) so
// tests can assert what a proxy forwarded: the method, tool, X-Request-Id
// header, params._meta and the W3C traceparent.
package testbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Options configures a Backend.
type Options struct {
	// Variant selects the behaviour: "v1" (default, correct) or "v2", whose
	// add tool returns a+b+1 so replay diffs have a regression to find.
	Variant string
	// Name is the serverInfo name; default "mcptrail-testbackend".
	Name string
	// TracerProvider, when set, makes the backend continue the trace found in
	// params._meta.traceparent and record one span "tools/call <tool>" per
	// tool call. Nil records nothing.
	TracerProvider trace.TracerProvider
	// GETStream enables the standalone GET SSE stream for server-initiated
	// messages. Default off (GET answers 405): mcp-go v1.2.1 hands a
	// session's notifications to whichever stream reads first, so with a GET
	// stream open, progress for a tools/call may leave on the GET stream
	// after the result. Off, every notification travels on the POST stream
	// of the request that caused it, in order, before the result.
	GETStream bool
	// SeenLimit caps how many requests Seen keeps, dropping the oldest, so a
	// long benchmark against the backend stays in bounded memory. Default
	// 100000.
	SeenLimit int
	// Logger receives mcp-go's transport logs; nil discards them.
	Logger *slog.Logger
	// Mutable adds the tool mutate, which changes another tool's
	// description, readOnlyHint or inputSchema at runtime, as a server
	// turning on its users would (tool pinning's tests).
	Mutable bool
	// Subscribable declares resources.subscribe and adds the tool touch:
	// a 2026-07-28 client's subscriptions/listen with resourceSubscriptions
	// then receives notifications/resources/updated, which mcp-go v1.2.1
	// cannot send on a listen stream by itself. Over stdio the backend
	// drops a subscription when the client sends notifications/cancelled
	// for its listen request. A session-era client's resources/subscribe
	// is tracked too: touch (and Touch) tell its session, on the GET
	// stream (so over HTTP it needs GETStream).
	Subscribable bool
}

// Seen is one request the backend received.
type Seen struct {
	// Method is the JSON-RPC method, for example "tools/call".
	Method string
	// ID is the raw JSON-RPC id.
	ID json.RawMessage
	// Tool is params.name for tools/call, empty otherwise, read as mcp-go
	// reads it (encoding/json: the last of duplicate keys, matched
	// case-insensitively).
	Tool string
	// Params is the raw params as received, nil when absent.
	Params json.RawMessage
	// RequestID is the X-Request-Id HTTP header (empty over stdio).
	RequestID string
	// SessionID is the Mcp-Session-Id HTTP header (empty over stdio).
	SessionID string
	// Meta is params._meta as raw JSON, nil when absent.
	Meta json.RawMessage
	// Traceparent is params._meta.traceparent, or else the traceparent HTTP
	// header.
	Traceparent string
}

// Backend is a test MCP server. Create it with New.
type Backend struct {
	opts   Options
	srv    *server.MCPServer
	tracer trace.Tracer

	mu        sync.Mutex
	seen      []Seen
	seenTotal int64
	notes     []string
	// listens are the open subscriptions/listen streams with resource
	// subscriptions (Options.Subscribable).
	listens []*resourceListen
	// sessionSubs are the session-era resources/subscribe subscriptions,
	// by session ID (Options.Subscribable).
	sessionSubs map[string]*sessionSub
}

// sessionSub is one session's resources/subscribe subscriptions.
type sessionSub struct {
	session server.ClientSession
	uris    map[string]bool
}

// resourceListen is one subscriptions/listen stream's resource
// subscriptions, and where to send their updates.
type resourceListen struct {
	ctx     context.Context
	id      any
	uris    []string
	session server.ClientSession
	dropped bool // notifications/cancelled named it
}

type headerKey struct{}

// New builds a backend with all tools, resources and prompts registered.
func New(o Options) *Backend {
	if o.Variant == "" {
		o.Variant = "v1"
	}
	if o.Name == "" {
		o.Name = "mcptrail-testbackend"
	}
	if o.SeenLimit <= 0 {
		o.SeenLimit = 100000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{opts: o}
	if o.TracerProvider != nil {
		b.tracer = o.TracerProvider.Tracer("github.com/mcptrail/mcptrail/proxy/testbackend")
	}
	hooks := &server.Hooks{}
	hooks.AddOnRequestInitialization(b.record)
	if o.Subscribable {
		hooks.AddBeforeSubscriptionsListen(b.trackListen)
		hooks.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
			b.trackSubscribe(ctx, req.Params.URI, true)
		})
		hooks.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
			b.trackSubscribe(ctx, req.Params.URI, false)
		})
		hooks.AddOnUnregisterSession(func(_ context.Context, sess server.ClientSession) {
			b.mu.Lock()
			delete(b.sessionSubs, sess.SessionID())
			b.mu.Unlock()
		})
	}
	b.srv = server.NewMCPServer(o.Name, o.Variant,
		server.WithHooks(hooks),
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(o.Subscribable, false),
		server.WithPromptCapabilities(false),
		server.WithToolHandlerMiddleware(b.traceMiddleware),
	)
	b.addTools()
	if o.Mutable {
		b.addMutate()
	}
	if o.Subscribable {
		b.addTouch()
	}
	b.addResources()
	b.addPrompts()
	return b
}

// MCPServer exposes the underlying mcp-go server.
func (b *Backend) MCPServer() *server.MCPServer { return b.srv }

// HTTPHandler serves MCP streamable HTTP at any path. Sessions are stateful
// (unknown Mcp-Session-Id values get 404, as with most real servers) and
// the DNS-rebinding guard is off so proxies may forward any Host.
//
// An in-memory event store is configured because, without one, mcp-go
// v1.2.1 can drop the last notification sent just before a response (its
// forwarder races the final write); with it, progress for clients on
// protocol versions before 2026-07-28 arrives complete and in order. Stored
// SSE events are freed when the session is deleted.
//
// Each call builds an independent session table: call it once per listener.
func (b *Backend) HTTPHandler() http.Handler {
	return server.NewStreamableHTTPServer(b.srv,
		server.WithStateful(true),
		server.WithEventStore(server.NewInMemoryEventStore()),
		server.WithDisableLocalhostProtection(true),
		server.WithStreamableHTTPLogger(b.opts.Logger.With("component", "testbackend")),
		server.WithDisableStreaming(!b.opts.GETStream),
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			return context.WithValue(ctx, headerKey{}, r.Header.Clone())
		}),
	)
}

// ServeStdio serves newline-delimited JSON-RPC on in/out until in ends or
// ctx is cancelled. mcp-go keeps one process-wide stdio session, so run at
// most one ServeStdio at a time per process.
func (b *Backend) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	s := server.NewStdioServer(b.srv)
	if err := s.Listen(ctx, in, out); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serving testbackend on stdio: %w", err)
	}
	return nil
}

// Seen returns a copy of the requests received so far (at most
// Options.SeenLimit, the most recent), in arrival order.
func (b *Backend) Seen() []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Seen(nil), b.seen...)
}

// SeenTotal counts every request received, including those Seen no longer
// keeps.
func (b *Backend) SeenTotal() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seenTotal
}

// Notes returns the notes stored by write_note.
func (b *Backend) Notes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.notes...)
}

func (b *Backend) record(ctx context.Context, _ any, message any) error {
	raw, ok := message.(json.RawMessage)
	if !ok {
		return nil
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name string          `json:"name"`
			Meta json.RawMessage `json:"_meta"`
		} `json:"params"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil // mcp-go answers the parse error itself
	}
	var env struct {
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(raw, &env)
	s := Seen{Method: m.Method, ID: m.ID, Meta: m.Params.Meta, Params: env.Params}
	if m.Method == string(mcp.MethodToolsCall) {
		s.Tool = m.Params.Name
	}
	if len(s.Meta) > 0 {
		var meta struct {
			Traceparent string `json:"traceparent"`
		}
		_ = json.Unmarshal(s.Meta, &meta)
		s.Traceparent = meta.Traceparent
	}
	if h, ok := ctx.Value(headerKey{}).(http.Header); ok {
		s.RequestID = h.Get("X-Request-Id")
		s.SessionID = h.Get("Mcp-Session-Id")
		if s.Traceparent == "" {
			s.Traceparent = h.Get("Traceparent")
		}
	}
	b.mu.Lock()
	if len(b.seen) >= b.opts.SeenLimit {
		// Drop the oldest half at once so trimming is amortised O(1).
		keep := b.opts.SeenLimit / 2
		b.seen = append(b.seen[:0], b.seen[len(b.seen)-keep:]...)
	}
	b.seen = append(b.seen, s)
	b.seenTotal++
	b.mu.Unlock()
	return nil
}

// traceMiddleware continues the caller's trace from params._meta and records
// a span per tool call.
func (b *Backend) traceMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if b.tracer == nil {
			return next(ctx, req)
		}
		carrier := propagation.MapCarrier{}
		if req.Params.Meta != nil {
			for k, v := range req.Params.Meta.AdditionalFields {
				if s, ok := v.(string); ok {
					carrier[k] = s
				}
			}
		}
		ctx = propagation.TraceContext{}.Extract(ctx, carrier)
		ctx, span := b.tracer.Start(ctx, "tools/call "+req.Params.Name,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("mcp.method.name", "tools/call"),
				attribute.String("gen_ai.tool.name", req.Params.Name),
			))
		defer span.End()
		res, err := next(ctx, req)
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		case res != nil && res.IsError:
			span.SetStatus(codes.Error, "tool returned isError")
		}
		return res, err
	}
}

func (b *Backend) addTools() {
	b.srv.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Echoes the message back unchanged."),
		mcp.WithString("message", mcp.Required(), mcp.Description("Text to echo.")),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		msg, err := req.RequireString("message")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText(msg), nil
	})

	b.srv.AddTool(mcp.NewTool("add",
		mcp.WithDescription("Adds two numbers."),
		mcp.WithNumber("a", mcp.Required()),
		mcp.WithNumber("b", mcp.Required()),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		a, err := req.RequireFloat("a")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		c, err := req.RequireFloat("b")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		sum := a + c
		if b.opts.Variant == "v2" {
			sum++ // the planted regression
		}
		return mcp.NewToolResultStructured(map[string]any{"sum": sum},
			strconv.FormatFloat(sum, 'g', -1, 64)), nil
	})

	b.srv.AddTool(mcp.NewTool("now",
		mcp.WithDescription("Returns the current time (RFC 3339, nanoseconds)."),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(time.Now().UTC().Format(time.RFC3339Nano)), nil
	})

	b.srv.AddTool(mcp.NewTool("fail",
		mcp.WithDescription("Always fails with a tool error (isError: true)."),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("fail: this tool always fails"), nil
	})

	b.srv.AddTool(mcp.NewTool("slow",
		mcp.WithDescription("Takes steps*delay_ms milliseconds, reporting progress per step."),
		mcp.WithNumber("steps", mcp.Description("Number of steps; default 3.")),
		mcp.WithNumber("delay_ms", mcp.Description("Milliseconds per step; default 10.")),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), b.slow)

	b.srv.AddTool(mcp.NewTool("write_note",
		mcp.WithDescription("Stores a note. Not read-only."),
		mcp.WithString("text", mcp.Required()),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(true),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		text, err := req.RequireString("text")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		b.mu.Lock()
		b.notes = append(b.notes, text)
		n := len(b.notes)
		b.mu.Unlock()
		return mcp.NewToolResultText(fmt.Sprintf("stored note %d", n)), nil
	})

	b.srv.AddTool(mcp.NewTool("big",
		mcp.WithDescription("Returns a text of the requested length (max 64 MiB)."),
		mcp.WithNumber("bytes", mcp.Required()),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		n, err := req.RequireInt("bytes")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		if n < 0 || n > 64<<20 {
			return mcp.NewToolResultError(fmt.Sprintf("big: bytes must be in [0, %d], got %d", 64<<20, n)), nil
		}
		return mcp.NewToolResultText(strings.Repeat("x", n)), nil
	})

	b.srv.AddTool(mcp.NewTool("elicit",
		mcp.WithDescription("Asks the client for input (elicitation/create) and returns its answer."),
		mcp.WithString("message", mcp.Description("Message shown to the user.")),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), b.elicit)

	b.srv.AddTool(mcp.NewTool("sample",
		mcp.WithDescription("Asks the client to sample an LLM (sampling/createMessage) and returns its text. Over HTTP it needs the GET stream (Options.GETStream)."),
		mcp.WithString("prompt", mcp.Required()),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		prompt, err := req.RequireString("prompt")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		res, err := b.srv.RequestSampling(ctx, mcp.CreateMessageRequest{
			CreateMessageParams: mcp.CreateMessageParams{
				Messages: []mcp.SamplingMessage{{
					Role:    mcp.RoleUser,
					Content: mcp.NewTextContent(prompt),
				}},
				MaxTokens: 50,
			},
		})
		if err != nil {
			return mcp.NewToolResultError(fmt.Sprintf("sample: requesting sampling: %v", err)), nil
		}
		return mcp.NewToolResultText("sampled: " + contentText(res.Content)), nil
	})
}

// addMutate registers mutate: it redefines the named tool (keeping its
// handler) with the arguments given, then tells the client its tool list
// changed, on the stream of this call.
func (b *Backend) addMutate() {
	b.srv.AddTool(mcp.NewTool("mutate",
		mcp.WithDescription("Redefines another tool of this server: its description, readOnlyHint or inputSchema."),
		mcp.WithString("tool", mcp.Required(), mcp.Description("The tool to redefine.")),
		mcp.WithString("description", mcp.Description("Its new description.")),
		mcp.WithBoolean("read_only", mcp.Description("Its new readOnlyHint.")),
		mcp.WithObject("input_schema", mcp.Description("Its new inputSchema.")),
		mcp.WithDestructiveHintAnnotation(true),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		name, err := req.RequireString("tool")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		st := b.srv.GetTool(name)
		if st == nil || name == "mutate" {
			return mcp.NewToolResultError("mutate: no tool " + name + " to redefine"), nil
		}
		t := st.Tool
		args := req.GetArguments()
		if d, ok := args["description"].(string); ok {
			t.Description = d
		}
		if ro, ok := args["read_only"].(bool); ok {
			t.Annotations.ReadOnlyHint = &ro
		}
		if sch, ok := args["input_schema"]; ok {
			raw, err := json.Marshal(sch)
			if err != nil {
				return mcp.NewToolResultError("mutate: input_schema: " + err.Error()), nil
			}
			t.InputSchema, t.RawInputSchema = mcp.ToolInputSchema{}, raw
		}
		b.srv.AddTool(t, st.Handler)
		if err := b.srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationToolsListChanged), nil); err != nil {
			return mcp.NewToolResultError("mutate: notifying the client: " + err.Error()), nil
		}
		return mcp.NewToolResultText("redefined " + name), nil
	})
}

// elicit asks the client for a name with elicitation/create. Over streamable
// HTTP mcp-go sends the request on the tools/call POST stream, so it works
// without the GET stream.
func (b *Backend) elicit(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	res, err := b.srv.RequestElicitation(ctx, mcp.ElicitationRequest{Params: mcp.ElicitationParams{
		Message: req.GetString("message", "What is your name?"),
		RequestedSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"name": map[string]any{"type": "string"}},
			"required":   []string{"name"},
		},
	}})
	if err != nil {
		return mcp.NewToolResultError(fmt.Sprintf("elicit: requesting elicitation: %v", err)), nil
	}
	raw, _ := json.Marshal(res.Content)
	return mcp.NewToolResultText(fmt.Sprintf("elicited: %s %s", res.Action, raw)), nil
}

func (b *Backend) slow(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	steps := req.GetInt("steps", 3)
	delay := time.Duration(req.GetInt("delay_ms", 10)) * time.Millisecond
	if steps < 0 || steps > 10000 {
		return mcp.NewToolResultError(fmt.Sprintf("slow: steps must be in [0, 10000], got %d", steps)), nil
	}
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for i := 1; i <= steps; i++ {
		t.Reset(delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("slow: cancelled at step %d: %w", i, ctx.Err())
		case <-t.C:
		}
		if token != nil {
			err := b.srv.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
				"progressToken": token,
				"progress":      i,
				"total":         steps,
				"message":       fmt.Sprintf("step %d of %d", i, steps),
			})
			if err != nil {
				return nil, fmt.Errorf("slow: sending progress %d: %w", i, err)
			}
		}
	}
	return mcp.NewToolResultText(fmt.Sprintf("done after %d steps", steps)), nil
}

func (b *Backend) addResources() {
	for i, text := range []string{"static resource one", "static resource two"} {
		uri := fmt.Sprintf("test://static/%d", i+1)
		b.srv.AddResource(mcp.NewResource(uri, fmt.Sprintf("static-%d", i+1),
			mcp.WithResourceDescription("A fixed text resource."),
			mcp.WithMIMEType("text/plain"),
		), func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/plain", Text: text}}, nil
		})
	}
}

func (b *Backend) addPrompts() {
	b.srv.AddPrompt(mcp.NewPrompt("greet",
		mcp.WithPromptDescription("Greets someone by name."),
		mcp.WithArgument("name", mcp.RequiredArgument(), mcp.ArgumentDescription("Who to greet.")),
	), func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		name := req.Params.Arguments["name"]
		if name == "" {
			return nil, fmt.Errorf("greet: argument name is required")
		}
		return mcp.NewGetPromptResult("A greeting", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Hello, "+name+"!")),
		}), nil
	})
}

// contentText returns the text of a sampling answer's content, which arrives
// as a typed value in process and as a generic map after a wire hop.
func contentText(c any) string {
	raw, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	var tc struct {
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &tc)
	return tc.Text
}

// trackListen records a subscriptions/listen stream's resource
// subscriptions, for touch.
func (b *Backend) trackListen(ctx context.Context, id any, req *mcp.SubscriptionsListenRequest) {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil || len(req.Params.Notifications.ResourceSubscriptions) == 0 {
		return
	}
	b.mu.Lock()
	b.listens = append(b.listens, &resourceListen{ctx: ctx, id: id, uris: slices.Clone(req.Params.Notifications.ResourceSubscriptions), session: sess})
	b.mu.Unlock()
}

// addTouch registers touch and the handling of a cancelled listen.
func (b *Backend) addTouch() {
	b.srv.AddNotificationHandler("notifications/cancelled", func(_ context.Context, n mcp.JSONRPCNotification) {
		id := fmt.Sprint(n.Params.AdditionalFields["requestId"])
		b.mu.Lock()
		for _, l := range b.listens {
			if fmt.Sprint(l.id) == id {
				l.dropped = true
			}
		}
		b.mu.Unlock()
	})
	b.srv.AddTool(mcp.NewTool("touch",
		mcp.WithDescription("Tells the listen streams subscribed to a resource that it changed."),
		mcp.WithString("uri", mcp.Required()),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		uri, err := req.RequireString("uri")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText(strconv.Itoa(b.Touch(uri))), nil
	})
}

// Touch sends notifications/resources/updated for uri on every open
// subscriptions/listen stream subscribed to it (tagged with the stream's
// id) and to every session that did resources/subscribe to it (untagged,
// on the session's GET stream: it needs Options.GETStream over HTTP). It
// returns how many streams and sessions it reached. Options.Subscribable
// only.
func (b *Backend) Touch(uri string) int {
	b.mu.Lock()
	live := b.listens[:0]
	for _, l := range b.listens {
		if l.ctx.Err() == nil && !l.dropped {
			live = append(live, l)
		}
	}
	b.listens = live
	var reached []*resourceListen
	for _, l := range live {
		if slices.Contains(l.uris, uri) {
			reached = append(reached, l)
		}
	}
	var sessions []server.ClientSession
	for _, ss := range b.sessionSubs {
		if ss.uris[uri] {
			sessions = append(sessions, ss.session)
		}
	}
	b.mu.Unlock()
	for _, l := range reached {
		l.session.NotificationChannel() <- mcp.JSONRPCNotification{
			JSONRPC: mcp.JSONRPC_VERSION,
			Notification: mcp.Notification{
				Method: mcp.MethodNotificationResourceUpdated,
				Params: mcp.NotificationParams{
					Meta:             map[string]any{mcp.MetaKeySubscriptionID: l.id},
					AdditionalFields: map[string]any{"uri": uri},
				},
			},
		}
	}
	n := len(reached)
	for _, sess := range sessions {
		select {
		case sess.NotificationChannel() <- mcp.JSONRPCNotification{
			JSONRPC: mcp.JSONRPC_VERSION,
			Notification: mcp.Notification{
				Method: mcp.MethodNotificationResourceUpdated,
				Params: mcp.NotificationParams{AdditionalFields: map[string]any{"uri": uri}},
			},
		}:
			n++
		case <-time.After(time.Second):
			// Nobody reads the session's notifications.
		}
	}
	return n
}

// Subscribed returns how many sessions hold a resources/subscribe
// subscription to uri.
func (b *Backend) Subscribed(uri string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, ss := range b.sessionSubs {
		if ss.uris[uri] {
			n++
		}
	}
	return n
}

// trackSubscribe records a session's resources/subscribe (on) or
// resources/unsubscribe of uri, for Touch.
func (b *Backend) trackSubscribe(ctx context.Context, uri string, on bool) {
	sess := server.ClientSessionFromContext(ctx)
	if sess == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ss := b.sessionSubs[sess.SessionID()]
	if ss == nil {
		if !on {
			return
		}
		if b.sessionSubs == nil {
			b.sessionSubs = map[string]*sessionSub{}
		}
		ss = &sessionSub{session: sess, uris: map[string]bool{}}
		b.sessionSubs[sess.SessionID()] = ss
	}
	if on {
		ss.uris[uri] = true
	} else {
		delete(ss.uris, uri)
	}
}
