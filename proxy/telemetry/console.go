package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ConsoleExporter writes each finished span as one JSON line, for
// OTEL_TRACES_EXPORTER=console (debugging without a collector).
type ConsoleExporter struct {
	mu      sync.Mutex
	w       io.Writer
	stopped bool
}

var _ sdktrace.SpanExporter = (*ConsoleExporter)(nil)

// NewConsoleExporter returns an exporter writing JSON lines to w.
func NewConsoleExporter(w io.Writer) *ConsoleExporter { return &ConsoleExporter{w: w} }

type consoleSpan struct {
	Name       string         `json:"name"`
	Kind       string         `json:"kind"`
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	ParentID   string         `json:"parent_span_id,omitempty"`
	Start      time.Time      `json:"start"`
	DurationMS float64        `json:"duration_ms"`
	Status     string         `json:"status"`
	StatusMsg  string         `json:"status_message,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Events     []string       `json:"events,omitempty"`
	Service    string         `json:"service,omitempty"`
	Scope      string         `json:"scope,omitempty"`
}

// ExportSpans writes spans; after Shutdown it writes nothing.
func (e *ConsoleExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	enc := json.NewEncoder(e.w)
	for _, s := range spans {
		if err := ctx.Err(); err != nil {
			return err
		}
		cs := consoleSpan{
			Name:       s.Name(),
			Kind:       s.SpanKind().String(),
			TraceID:    s.SpanContext().TraceID().String(),
			SpanID:     s.SpanContext().SpanID().String(),
			Start:      s.StartTime().UTC(),
			DurationMS: float64(s.EndTime().Sub(s.StartTime())) / float64(time.Millisecond),
			Status:     s.Status().Code.String(),
			StatusMsg:  s.Status().Description,
			Scope:      s.InstrumentationScope().Name,
		}
		if p := s.Parent(); p.IsValid() {
			cs.ParentID = p.SpanID().String()
		}
		if attrs := s.Attributes(); len(attrs) > 0 {
			cs.Attributes = make(map[string]any, len(attrs))
			for _, kv := range attrs {
				cs.Attributes[string(kv.Key)] = kv.Value.AsInterface()
			}
		}
		for _, ev := range s.Events() {
			cs.Events = append(cs.Events, ev.Name)
		}
		if res := s.Resource(); res != nil {
			if v, ok := res.Set().Value("service.name"); ok {
				cs.Service = v.AsString()
			}
		}
		if err := enc.Encode(cs); err != nil {
			return fmt.Errorf("writing span %s: %w", cs.SpanID, err)
		}
	}
	return nil
}

// Shutdown stops the exporter; it is safe to call more than once.
func (e *ConsoleExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	return nil
}
