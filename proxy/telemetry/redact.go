package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// StringRedactor removes secrets from a string and says how many it
// removed (recorder/redact's Redactor.String).
type StringRedactor func(string) (string, int)

// Option configures NewTracerProvider.
type Option func(*options)

type options struct {
	redact StringRedactor
}

// WithRedaction passes every span through redact before any exporter sees
// it: spans leave the process, and their names and attributes carry what
// clients chose (tool names, resource URIs, JSON-RPC ids, methods).
func WithRedaction(redact StringRedactor) Option {
	return func(o *options) { o.redact = redact }
}

// RedactingExporter wraps next so that span names, string attributes
// (checked as "key=value", so that key rules apply), event names and
// attributes, link attributes and status descriptions are redacted before
// export. It runs in the exporter's goroutine, off the request path.
func RedactingExporter(next sdktrace.SpanExporter, redact StringRedactor) sdktrace.SpanExporter {
	return &redactingExporter{next: next, redact: redact}
}

type redactingExporter struct {
	next   sdktrace.SpanExporter
	redact StringRedactor
}

var _ sdktrace.SpanExporter = (*redactingExporter)(nil)

func (e *redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Name = e.str(stub.Name)
		stub.Attributes = e.attrs(stub.Attributes)
		for j := range stub.Events {
			stub.Events[j].Name = e.str(stub.Events[j].Name)
			stub.Events[j].Attributes = e.attrs(stub.Events[j].Attributes)
		}
		for j := range stub.Links {
			stub.Links[j].Attributes = e.attrs(stub.Links[j].Attributes)
		}
		stub.Status.Description = e.str(stub.Status.Description)
		out[i] = stub.Snapshot()
	}
	return e.next.ExportSpans(ctx, out)
}

func (e *redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

func (e *redactingExporter) str(s string) string {
	if s == "" {
		return s
	}
	out, _ := e.redact(s)
	return out
}

// attrs redacts string and string-slice values; attributes are copied
// only when something changes.
func (e *redactingExporter) attrs(in []attribute.KeyValue) []attribute.KeyValue {
	var out []attribute.KeyValue
	for i, kv := range in {
		v, changed := kv.Value, false
		switch kv.Value.Type() {
		case attribute.STRING:
			if s, ok := e.value(string(kv.Key), kv.Value.AsString()); ok {
				v, changed = attribute.StringValue(s), true
			}
		case attribute.STRINGSLICE:
			ss := kv.Value.AsStringSlice()
			for j, s := range ss {
				if r, ok := e.value(string(kv.Key), s); ok {
					ss[j], changed = r, true
				}
			}
			if changed {
				v = attribute.StringSliceValue(ss)
			}
		}
		if changed && out == nil {
			out = append(make([]attribute.KeyValue, 0, len(in)), in[:i]...)
		}
		if out != nil {
			out = append(out, attribute.KeyValue{Key: kv.Key, Value: v})
		}
	}
	if out == nil {
		return in
	}
	return out
}

// value redacts an attribute value, seen as "key=value" so that a key
// rule (an attribute named after a secret) applies to it.
func (e *redactingExporter) value(key, val string) (string, bool) {
	prefix := key + "="
	red, n := e.redact(prefix + val)
	if n == 0 {
		return val, false
	}
	if s, ok := strings.CutPrefix(red, prefix); ok {
		return s, true
	}
	r, _ := e.redact(val) // the key matched a pattern: the value alone
	return r, true
}
