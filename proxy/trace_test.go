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
// the client sends traceparent in params._meta or as an HTTP header.
func TestOneTraceAcrossHops(t *testing.T) {
	for _, via := range []string{"meta", "header"} {
		t.Run(via, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

			tb := testbackend.New(testbackend.Options{TracerProvider: tp})
			hs := httptest.NewServer(tb.HTTPHandler())
			t.Cleanup(hs.Close)
			cfg := &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 5 * time.Second}}}
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
