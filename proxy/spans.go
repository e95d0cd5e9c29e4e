package proxy

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/recorder"
)

// Spans follow the OpenTelemetry MCP semantic conventions: named
// "{mcp.method.name} {target}" where the target is a tool or prompt the
// gateway lists (never a name or URI only a client chose: span names must
// stay low-cardinality), with what the request is about as attributes.

// spanName is the span name of this call's request.
func (c *call) spanName() string {
	if t := c.listedTarget(); t != "" {
		return c.msg.Method + " " + t
	}
	return spanMethod(c.msg.Method)
}

// listedTarget is the call's tool or prompt name when the catalog lists
// it, else "".
func (c *call) listedTarget() string {
	var kind listKind
	switch c.msg.Method {
	case "tools/call":
		kind = listTools
	case "prompts/get":
		kind = listPrompts
	default:
		return ""
	}
	if _, ok := c.g.catalog.Load().names[kind][c.target]; ok {
		return c.target
	}
	return ""
}

// semconvAttrs are the convention attributes of the call's request.
func (c *call) semconvAttrs(version string) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 6)
	if knownMethods[c.msg.Method] {
		a = append(a, attribute.String("mcp.method.name", c.msg.Method))
	}
	a = append(a, attribute.String("network.transport", "tcp"))
	if version != "" {
		a = append(a, attribute.String("mcp.protocol.version", version))
	}
	switch c.msg.Method {
	case "tools/call":
		a = append(a, attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", c.target))
	case "prompts/get":
		a = append(a, attribute.String("gen_ai.prompt.name", c.target))
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		a = append(a, attribute.String("mcp.resource.uri", c.target))
	}
	return a
}

// protocolVersion is the MCP version the client speaks on this call.
func (c *call) protocolVersion() string {
	if c.meta != nil {
		if v, ok := c.meta.GetString("io.modelcontextprotocol/protocolVersion"); ok {
			return v
		}
	}
	if c.sess != nil {
		v, _, _ := c.sess.client()
		return v
	}
	return ""
}

// setOutcomeAttrs puts error.type and rpc.response.status_code on span for
// a failed outcome: "tool_error" for an isError result, else the JSON-RPC
// error code.
func setOutcomeAttrs(span trace.Span, outcome recorder.Outcome, code int32) {
	switch {
	case outcome == recorder.OutcomeToolError:
		span.SetAttributes(attribute.String("error.type", "tool_error"))
	case outcome.Failed() && code != 0:
		s := strconv.Itoa(int(code))
		span.SetAttributes(attribute.String("error.type", s), attribute.String("rpc.response.status_code", s))
	case outcome.Failed():
		span.SetAttributes(attribute.String("error.type", outcome.String()))
	}
}

// relayedSpan gives a notification relayed to the client on behalf of call
// c (progress) a span, a child of c's server span.
func (g *Gateway) relayedSpan(c *call, server, method string) {
	tid, err1 := trace.TraceIDFromHex(c.traceID)
	sid, err2 := trace.SpanIDFromHex(c.spanID)
	if err1 != nil || err2 != nil {
		return // tracing off
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	_, span := g.tracer.Start(ctx, spanMethod(method), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("mcp.method.name", method),
			attribute.String("mcptrail.request_id", c.reqID),
			attribute.String("mcptrail.server", server),
		))
	span.End()
}
