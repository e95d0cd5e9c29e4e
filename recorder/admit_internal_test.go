package recorder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

type discardWriter struct{}

func (discardWriter) WriteBatch(_ context.Context, _ string, _ []Event) error { return nil }

// TestFailClosedDroppedResponseEndsTheCall: under fail_closed, when even
// the reserve for admitted calls is full, a call's response hop is dropped;
// the call has ended all the same and must not stay counted in flight
// (fails before the fix: its entry stayed in p.calls for ever, inflating
// the reserve and the memory held).
func TestFailClosedDroppedResponseEndsTheCall(t *testing.T) {
	p, err := NewPipeline(Config{Dir: filepath.Join(t.TempDir(), "spool"), QueueSize: 1, Overflow: OverflowFailClosed},
		discardWriter{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the queue fills and stays full.
	if err := p.Record(&Event{RequestID: "req-a", Hop: HopInbound}); err != nil {
		t.Fatalf("admitting the call: %v", err)
	}
	for i := range perCallReserve {
		if err := p.Record(&Event{RequestID: "req-a", Hop: HopUpstream}); err != nil {
			t.Fatalf("hop %d of the admitted call: %v", i, err)
		}
	}
	if err := p.Record(&Event{RequestID: "req-a", Hop: HopResponse}); !errors.Is(err, ErrOverflow) {
		t.Fatalf("response beyond the reserve = %v, want ErrOverflow", err)
	}
	if n := p.inflightCalls(); n != 0 {
		t.Errorf("calls in flight after the call's response = %d, want 0", n)
	}
}
