package proxy

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// clientTrace reads a request's W3C trace context (header, then
// params._meta) and returns the context and options its server span
// starts with. Under config.TraceContextParent the client's context is the
// parent (_meta's when both carry one; the header's is then a link).
// Otherwise (the default) the span is the root of a new trace, linked to
// what the client sent: a client cannot make the gateway's spans part of a
// trace it chose, nor pass baggage to the backends.
func (g *Gateway) clientTrace(ctx context.Context, header http.Header, meta *jsonrpc.Object) (context.Context, []trace.SpanStartOption) {
	base := ctx
	var headerSC trace.SpanContext
	if header != nil {
		ctx = g.prop.Extract(ctx, propagation.HeaderCarrier(header))
		headerSC = trace.SpanContextFromContext(ctx)
	}
	if meta != nil {
		ctx = g.prop.Extract(ctx, metaCarrier{meta})
	}
	sc := trace.SpanContextFromContext(ctx)
	headerLink := trace.Link{SpanContext: headerSC, Attributes: []attribute.KeyValue{attribute.String("mcptrail.link", "http-header-trace-context")}}
	if g.conf().ClientTraceContext == config.TraceContextParent {
		if headerSC.IsValid() && !sc.Equal(headerSC) {
			return ctx, []trace.SpanStartOption{trace.WithLinks(headerLink)}
		}
		return ctx, nil
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot()}
	if sc.IsValid() && !sc.Equal(headerSC) {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc,
			Attributes: []attribute.KeyValue{attribute.String("mcptrail.link", "client-trace-context")}}))
	}
	if headerSC.IsValid() {
		opts = append(opts, trace.WithLinks(headerLink))
	}
	return base, opts
}
