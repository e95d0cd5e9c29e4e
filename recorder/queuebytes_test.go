package recorder_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

// TestQueueBytes: the in-memory queue is bounded by the memory its events
// hold, not only by their count: with room for 1024 events but 64 KiB,
// events carrying 16 KiB payloads stop being queued after a few; the
// overflow policy applies; the bytes come back as the spooler takes them;
// and an empty queue takes one event bigger than the whole budget.
func TestQueueBytes(t *testing.T) {
	for _, policy := range []string{recorder.OverflowDrop, recorder.OverflowFailClosed} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.QueueSize = 1024
			cfg.QueueBytes = 64 << 10
			cfg.Overflow = policy
			w := recordertest.NewMemoryWriter()
			p, err := recorder.NewPipeline(cfg, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			big := func(i, size int) *recorder.Event {
				ev := event(i)
				ev.Params = bytes.Repeat([]byte("x"), size)
				return ev
			}
			// Not started: nothing leaves the queue.
			accepted := 0
			for i := range 20 {
				err := p.Record(big(accepted, 16<<10))
				switch {
				case err == nil && p.Stats().Dropped == 0:
					accepted++
				case policy == recorder.OverflowDrop && err == nil, policy == recorder.OverflowFailClosed && errors.Is(err, recorder.ErrOverflow):
				default:
					t.Fatalf("Record(%d) = %v under %s", i, err, policy)
				}
			}
			s := p.Stats()
			if accepted < 2 || accepted > 4 || s.Enqueued != uint64(accepted) || s.Dropped != uint64(20-accepted) {
				t.Fatalf("accepted %d of 20 16-KiB events in a 64-KiB queue (stats %+v), want 2..4 and the rest dropped", accepted, s)
			}
			if s.QueueBytes <= 3*(16<<10) || s.QueueBytes > cfg.QueueBytes {
				t.Errorf("Stats.QueueBytes = %d, want the %d events' size, at most %d", s.QueueBytes, accepted, cfg.QueueBytes)
			}
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := p.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			})
			flush(t, p)
			if s := p.Stats(); s.QueueBytes != 0 || s.Written != uint64(accepted) {
				t.Fatalf("after flush: QueueBytes %d Written %d, want 0 and %d", s.QueueBytes, s.Written, accepted)
			}
			// An empty queue takes one event over the whole budget.
			if err := p.Record(big(accepted, 256<<10)); err != nil {
				t.Fatalf("Record of a 256-KiB event into an empty queue = %v", err)
			}
			flush(t, p)
			if s := p.Stats(); s.Written != uint64(accepted+1) || s.Dropped != uint64(20-accepted) {
				t.Errorf("stats %+v, want %d written", s, accepted+1)
			}
			requireExactlyOnce(t, w, accepted+1)
		})
	}
}
