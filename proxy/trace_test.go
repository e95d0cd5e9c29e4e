package proxy_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// TestOneTraceAcrossHops: the client's span, the gateway's server and client
// spans and the backend's span share one trace with correct parents, whether
// the client sends traceparent in params._meta or as an HTTP header, when
// client_trace_context is "parent".
func TestOneTraceAcrossHops(t *testing.T) {
	for _, via := range []string{"meta", "header"} {
		t.Run(via, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

			tb := testbackend.New(testbackend.Options{TracerProvider: tp})
			hs := httptest.NewServer(tb.HTTPHandler())
			t.Cleanup(hs.Close)
			cfg := &config.Config{ClientTraceContext: config.TraceContextParent,
				Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}}
			e := startGateway(t, cfg, func(o *proxy.Options) { o.TracerProvider = tp })
			sid := initSession(t, e.url, nil)

			ctx, clientSpan := tp.Tracer("test-client").Start(context.Background(), "client call", trace.WithSpanKind(trace.SpanKindClient))
			sc := clientSpan.SpanContext()
			tp0 := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
			hdr := map[string]string{"Mcp-Session-Id": sid}
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}}}`
			if via == "meta" {
				body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"},"_meta":{"traceparent":"` + tp0 + `"}}}`
			} else {
				hdr["traceparent"] = tp0
			}
			resp, b := post(t, e.url, body, hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("call: %d %s", resp.StatusCode, b)
			}
			clientSpan.End()
			_ = ctx

			spans := exp.GetSpans()
			find := func(pred func(tracetest.SpanStub) bool) *tracetest.SpanStub {
				for i := range spans {
					if pred(spans[i]) {
						return &spans[i]
					}
				}
				return nil
			}
			server := find(func(s tracetest.SpanStub) bool {
				return s.SpanKind == trace.SpanKindServer && s.Name == "tools/call alpha.echo"
			})
			upstream := find(func(s tracetest.SpanStub) bool {
				return s.SpanKind == trace.SpanKindClient && strings.HasPrefix(s.Name, "tools/call")
			})
			backend := find(func(s tracetest.SpanStub) bool {
				return s.Name == "tools/call echo" && s.SpanKind != trace.SpanKindClient
			})
			if server == nil || upstream == nil || backend == nil {
				var names []string
				for _, s := range spans {
					names = append(names, s.Name+"/"+s.SpanKind.String())
				}
				t.Fatalf("spans = %v; want gateway server, gateway client and backend spans", names)
			}
			for _, s := range []*tracetest.SpanStub{server, upstream, backend} {
				if s.SpanContext.TraceID() != sc.TraceID() {
					t.Errorf("span %q is in trace %s, want the client's %s", s.Name, s.SpanContext.TraceID(), sc.TraceID())
				}
			}
			if server.Parent.SpanID() != sc.SpanID() {
				t.Errorf("gateway server span parent = %s, want client span %s", server.Parent.SpanID(), sc.SpanID())
			}
			if upstream.Parent.SpanID() != server.SpanContext.SpanID() {
				t.Errorf("gateway client span parent = %s, want server span %s", upstream.Parent.SpanID(), server.SpanContext.SpanID())
			}
			if backend.Parent.SpanID() != upstream.SpanContext.SpanID() {
				t.Errorf("backend span parent = %s, want gateway client span %s", backend.Parent.SpanID(), upstream.SpanContext.SpanID())
			}
			attrs := map[string]string{}
			for _, kv := range server.Attributes {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			if attrs["mcp.method.name"] != "tools/call" || attrs["mcp.session.id"] != sid || attrs["jsonrpc.request.id"] != "1" {
				t.Errorf("server span attributes = %v", attrs)
			}
			// The recorded hops carry the same trace.
			hops := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
			if len(hops) == 0 || hops[0].TraceID != sc.TraceID().String() {
				t.Errorf("recorded hops %d, trace %v; want trace %s", len(hops), hops, sc.TraceID())
			}
		})
	}
}

// TestSpanConventions: span names never carry a name or URI only the client
// chose (OTel MCP conventions: unknown targets and URIs stay out of the
// name), the convention attributes are set, the upstream span carries the
// request ID, and a header trace context overridden by _meta is a link.
func TestSpanConventions(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{ClientTraceContext: config.TraceContextParent,
		Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}}
	e := startGateway(t, cfg, func(o *proxy.Options) { o.TracerProvider = tp })
	sid := initSession(t, e.url, nil)
	const hdrTP = "00-11111111111111111111111111111111-2222222222222222-01"
	const metaTP = "00-33333333333333333333333333333333-4444444444444444-01"
	calls := []struct{ body, wantName string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"},"_meta":{"traceparent":"` + metaTP + `"}}}`, "tools/call alpha.echo"},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.no-such-tool-a8f3","arguments":{}}}`, "tools/call"},
		{`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"test://anything/x9z"}}`, "resources/read"},
		{`{"jsonrpc":"2.0","id":4,"method":"custom/method-q7","params":{}}`, "mcp.request"},
	}
	ids := map[string]string{}
	for _, c := range calls {
		resp, _ := post(t, e.url, c.body, map[string]string{"Mcp-Session-Id": sid, "traceparent": hdrTP})
		ids[c.wantName] = resp.Header.Get("X-Request-Id")
	}
	byReq := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		for _, bad := range []string{"no-such-tool-a8f3", "x9z", "q7"} {
			if strings.Contains(s.Name, bad) {
				t.Errorf("span name %q carries client input %q", s.Name, bad)
			}
		}
		if id := attrs(s)["mcptrail.request_id"]; id != "" {
			byReq[id] = append(byReq[id], s)
		}
	}
	for _, c := range calls {
		var server, upstream *tracetest.SpanStub
		for i, s := range byReq[ids[c.wantName]] {
			switch s.SpanKind {
			case trace.SpanKindServer:
				server = &byReq[ids[c.wantName]][i]
			case trace.SpanKindClient:
				upstream = &byReq[ids[c.wantName]][i]
			}
		}
		if server == nil || server.Name != c.wantName {
			t.Errorf("%s: server span %+v, want name %q", c.body, server, c.wantName)
			continue
		}
		a := attrs(*server)
		if a["network.transport"] != "tcp" || a["mcp.protocol.version"] != "2025-06-18" {
			t.Errorf("%s: server span attributes %v", c.wantName, a)
		}
		switch c.wantName {
		case "tools/call alpha.echo":
			if a["gen_ai.tool.name"] != "alpha.echo" || a["gen_ai.operation.name"] != "execute_tool" {
				t.Errorf("tools/call attributes %v", a)
			}
			if len(server.Links) != 1 || server.Links[0].SpanContext.TraceID().String() != "11111111111111111111111111111111" ||
				server.Parent.TraceID().String() != "33333333333333333333333333333333" {
				t.Errorf("header trace context: links %v, parent %v; want _meta's as parent and the header's as a link", server.Links, server.Parent)
			}
			if upstream == nil || attrs(*upstream)["jsonrpc.request.id"] == "" || attrs(*upstream)["gen_ai.tool.name"] != "alpha.echo" {
				t.Errorf("upstream span %+v lacks request ID or attributes", upstream)
			}
		case "resources/read":
			if a["mcp.resource.uri"] != "test://anything/x9z" {
				t.Errorf("resources/read attributes %v", a)
			}
		case "tools/call":
			if a["error.type"] == "" {
				t.Errorf("unknown tool: attributes %v, want error.type", a)
			}
		}
	}
}

// TestNotificationSpans: a client notification and each progress
// notification relayed for a call get a span.
func TestNotificationSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}}
	e := startGateway(t, cfg, func(o *proxy.Options) { o.TracerProvider = tp })
	sid := initSession(t, e.url, nil)
	post(t, e.url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": sid})
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":3,"delay_ms":1},"_meta":{"progressToken":"t"}}}`, map[string]string{"Mcp-Session-Id": sid})
	id := resp.Header.Get("X-Request-Id")
	var initialized, progress int
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "notifications/initialized":
			initialized++
		case "notifications/progress":
			for _, kv := range s.Attributes {
				if kv.Key == "mcptrail.request_id" && kv.Value.AsString() == id {
					progress++
				}
			}
		}
	}
	if initialized != 1 || progress != 3 {
		t.Errorf("spans: %d notifications/initialized (want 1), %d notifications/progress of %s (want 3)", initialized, progress, id)
	}
}

// TestClientTraceIsLinkedNotParent: by default (client_trace_context
// "link") a client's trace context, in the header or params._meta, does
// not become the parent of the gateway's spans: each request starts a new
// trace, links the client's span contexts, and the backend and the records
// get the gateway's trace, so a client cannot attach the gateway's spans
// and audit rows to a trace it chose (fails before the fix: the client's
// context was the parent).
func TestClientTraceIsLinkedNotParent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	t.Cleanup(hs.Close)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}},
		func(o *proxy.Options) { o.TracerProvider = tp })
	sid := initSession(t, e.url, nil)
	const hdrTP = "00-11111111111111111111111111111111-2222222222222222-01"
	const metaTP = "00-33333333333333333333333333333333-4444444444444444-01"
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"},"_meta":{"traceparent":"`+metaTP+`"}}}`,
		map[string]string{"Mcp-Session-Id": sid, "traceparent": hdrTP})
	reqID := resp.Header.Get("X-Request-Id")
	var server *tracetest.SpanStub
	spans := exp.GetSpans()
	for i, s := range spans {
		for _, kv := range s.Attributes {
			if kv.Key == "mcptrail.request_id" && kv.Value.AsString() == reqID && s.SpanKind == trace.SpanKindServer {
				server = &spans[i]
			}
		}
	}
	if server == nil {
		t.Fatalf("no server span for %s", reqID)
	}
	tid := server.SpanContext.TraceID().String()
	if server.Parent.IsValid() || tid == "11111111111111111111111111111111" || tid == "33333333333333333333333333333333" {
		t.Errorf("server span: parent %v, trace %s; want a new root trace", server.Parent, tid)
	}
	linked := map[string]bool{}
	for _, l := range server.Links {
		linked[l.SpanContext.TraceID().String()] = true
	}
	if !linked["11111111111111111111111111111111"] || !linked["33333333333333333333333333333333"] || len(server.Links) != 2 {
		t.Errorf("server span links %v, want the header's and _meta's client contexts", server.Links)
	}
	for _, ev := range e.rec.byRequest(reqID) {
		if ev.TraceID != tid {
			t.Errorf("%s hop recorded in trace %s, want the gateway's %s", ev.Hop, ev.TraceID, tid)
		}
	}
}

// TestAuthSpanAttributes: the policy check's span names what was checked,
// and a span that is not recorded (a trace sampled out) carries nothing.
func TestAuthSpanAttributes(t *testing.T) {
	for _, sampled := range []bool{true, false} {
		exp := tracetest.NewInMemoryExporter()
		sampler := sdktrace.AlwaysSample()
		if !sampled {
			sampler = sdktrace.NeverSample()
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		tb := testbackend.New(testbackend.Options{})
		hs := httptest.NewServer(tb.HTTPHandler())
		t.Cleanup(hs.Close)
		cfg := &config.Config{
			Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}},
			Auth:    config.Auth{Tokens: []config.Token{{Name: "t", SHA256: sha("t-token"), Tools: []string{"alpha.echo"}}}},
		}
		e := startGateway(t, cfg, func(o *proxy.Options) { o.TracerProvider = tp })
		hdr := map[string]string{"Authorization": "Bearer t-token"}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}}}`, hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("call: %d %s", resp.StatusCode, b)
		}
		var auth []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == "auth" {
				auth = append(auth, s)
			}
		}
		if !sampled {
			if len(exp.GetSpans()) != 0 {
				t.Errorf("sampled out: %d spans exported", len(exp.GetSpans()))
			}
			continue
		}
		found := false
		for _, s := range auth {
			a := attrs(s)
			if a["mcptrail.policy.kind"] == "tools" && a["mcptrail.policy.target"] == "alpha.echo" {
				found = true
			}
		}
		if !found {
			t.Errorf("auth spans %+v: none with kind tools and target alpha.echo", auth)
		}
	}
}

// attrs is a span's attributes as strings.
func attrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
