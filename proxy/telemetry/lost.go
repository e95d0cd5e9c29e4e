package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// LogErrors routes OpenTelemetry's internal errors (a collector that cannot
// be reached, a rejected batch) to logger instead of Go's standard logger,
// which would write plain text into a JSON log stream. OpenTelemetry keeps
// one error handler per process: call it once, from main.
func LogErrors(logger *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("OpenTelemetry", "component", "telemetry", "err", err)
	}))
}

// countingExporter counts the spans its exporter failed to deliver, so
// that shutdown can say how many were lost.
type countingExporter struct {
	next    sdktrace.SpanExporter
	lost    atomic.Int64
	mu      sync.Mutex
	lastErr error
}

var _ sdktrace.SpanExporter = (*countingExporter)(nil)

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.next.ExportSpans(ctx, spans)
	if err != nil {
		e.lost.Add(int64(len(spans)))
		e.mu.Lock()
		e.lastErr = err
		e.mu.Unlock()
	}
	return err
}

func (e *countingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// lostError reports the spans lost so far, nil when none.
func (e *countingExporter) lostError() error {
	n := e.lost.Load()
	if n == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Errorf("%d spans could not be exported (last error: %v)", n, e.lastErr)
}

// shutdownReporting shuts tp down and reports, with its error, the spans the
// exporters lost over the process's life.
func shutdownReporting(tp *sdktrace.TracerProvider, counters []*countingExporter) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := []error{tp.Shutdown(ctx)}
		for _, c := range counters {
			errs = append(errs, c.lostError())
		}
		return errors.Join(errs...)
	}
}
