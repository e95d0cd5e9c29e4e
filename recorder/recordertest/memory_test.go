package recordertest

import (
	"context"
	"errors"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
)

func TestMemoryWriter(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryWriter()
	evs := []recorder.Event{{EventID: "a"}, {EventID: "b"}}
	m.FailNext(2, nil)
	for i := range 2 {
		if err := m.WriteBatch(ctx, "t1", evs); !errors.Is(err, ErrInjected) {
			t.Fatalf("call %d = %v, want ErrInjected", i+1, err)
		}
	}
	for i := range 2 {
		if err := m.WriteBatch(ctx, "t1", evs); err != nil {
			t.Fatalf("WriteBatch after failures #%d = %v", i+1, err)
		}
	}
	evs[0].EventID = "mutated" // the writer must have copied
	if err := m.WriteBatch(ctx, "t2", evs[:1]); err != nil {
		t.Fatal(err)
	}
	got := m.Events()
	if len(got) != 3 || got[0].EventID != "a" || got[2].EventID != "mutated" {
		t.Errorf("Events = %+v, want a, b, mutated", got)
	}
	if m.Calls() != 5 || m.Failures() != 2 || m.Duplicates() != 1 || len(m.Batches()) != 2 {
		t.Errorf("Calls %d Failures %d Duplicates %d Batches %d, want 5 2 1 2",
			m.Calls(), m.Failures(), m.Duplicates(), len(m.Batches()))
	}
	m.FailNext(-1, errors.New("down"))
	for range 3 {
		if err := m.WriteBatch(ctx, "t3", evs); err == nil || err.Error() != "down" {
			t.Fatalf("FailNext(-1) call = %v, want down", err)
		}
	}
	m.FailNext(0, nil)
	if err := m.WriteBatch(ctx, "t3", evs); err != nil {
		t.Errorf("after FailNext(0) = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.WriteBatch(cctx, "t4", evs); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteBatch(cancelled ctx) = %v, want context.Canceled", err)
	}
	if err := m.WaitCalls(ctx, 9); err != nil {
		t.Errorf("WaitCalls(9) = %v", err)
	}
}
