package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/proxy/telemetry"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// TestRedactingExporter: what leaves the process in a span (its name,
// attributes, events, links, status) is redacted; the rest is kept.
func TestRedactingExporter(t *testing.T) {
	r, err := redact.New(redact.Config{}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(telemetry.RedactingExporter(mem, r.String)))
	defer tp.Shutdown(context.Background())
	tool := "sk_live_" + strings.Repeat("T", 24)
	uri := "ru-" + strings.Repeat("u", 20)
	_, span := tp.Tracer("t").Start(context.Background(), "tools/call crm."+tool,
		trace.WithAttributes(
			attribute.String("gen_ai.tool.name", "crm."+tool),
			attribute.String("jsonrpc.request.id", `"password=pw-12345"`),
			attribute.String("upstream.api_key", "k-123456"),
			attribute.StringSlice("uris", []string{"file:///x?token=" + uri, "plain"}),
			attribute.Int("n", 3),
			attribute.String("mcp.method.name", "tools/call"),
		),
		trace.WithLinks(trace.Link{Attributes: []attribute.KeyValue{attribute.String("note", "AKIA"+strings.Repeat("Q", 16))}}))
	span.AddEvent("retry "+tool, trace.WithAttributes(attribute.String("err", "Authorization: Bearer abcdefgh12345678")))
	span.SetStatus(codes.Error, "backend said token=tk-987654")
	span.End()

	spans := mem.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported, want 1", len(spans))
	}
	s := spans[0]
	all := s.Name + s.Status.Description
	for _, kv := range s.Attributes {
		all += " " + string(kv.Key) + "=" + kv.Value.String()
	}
	for _, ev := range s.Events {
		all += " " + ev.Name
		for _, kv := range ev.Attributes {
			all += " " + kv.Value.String()
		}
	}
	for _, l := range s.Links {
		for _, kv := range l.Attributes {
			all += " " + kv.Value.String()
		}
	}
	for _, secret := range []string{tool, "pw-12345", "k-123456", uri, "AKIAQQQQ", "abcdefgh12345678", "tk-987654"} {
		if strings.Contains(all, secret) {
			t.Errorf("exported span carries %s: %s", secret, all)
		}
	}
	for _, keep := range []string{"tools/call crm.«redacted:stripe_key:", "mcp.method.name=tools/call", "n=3", "plain", "backend said token=«"} {
		if !strings.Contains(all, keep) {
			t.Errorf("exported span lost %q: %s", keep, all)
		}
	}
	if !s.SpanContext.IsValid() || s.Status.Code != codes.Error {
		t.Errorf("span context %v, status %v; want them kept", s.SpanContext, s.Status.Code)
	}
}
