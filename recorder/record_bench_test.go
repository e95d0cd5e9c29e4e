package recorder

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/oklog/ulid/v2"
)

// BenchmarkRecordEnqueue measures the hot path alone: the queue is drained
// outside the timer, so every Record enqueues and none is dropped.
func BenchmarkRecordEnqueue(b *testing.B) {
	for _, tt := range []struct {
		name     string
		genID    bool
		overflow string
	}{{"preset_id", false, OverflowDrop}, {"generate_id", true, OverflowDrop}, {"fail_closed_calls", false, OverflowFailClosed}} {
		b.Run(tt.name, func(b *testing.B) {
			p, err := NewPipeline(Config{Dir: filepath.Join(b.TempDir(), "s"), QueueSize: 1 << 12, Overflow: tt.overflow}, Discard{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			evs := make([]Event, 1<<12)
			// Under fail_closed, calls: an inbound hop admits, the
			// response ends it (the admission bookkeeping is measured).
			for i := range evs {
				evs[i].RequestID = "req-" + strconv.Itoa(i/2)
				evs[i].Hop = HopInbound
				if i%2 == 1 {
					evs[i].Hop = HopResponse
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ev := &evs[i]
				if tt.genID {
					ev.EventID = ""
				} else {
					ev.EventID = "01JBENCH000000000000000000"
				}
				if err := p.Record(ev); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(evs) {
					b.StopTimer()
					for range i {
						p.took(<-p.queue) // as the spooler does: gives the queue bytes back
					}
					i = 0
					b.StartTimer()
				}
			}
			if s := p.Stats(); s.Dropped != 0 || s.Enqueued == 0 {
				b.Fatalf("Stats = %+v, want no drops", s)
			}
			if tt.genID && len(evs[0].EventID) != 26 {
				b.Fatalf("EventID = %q, want a ULID", evs[0].EventID)
			}
		})
	}
}

func TestIDGenMonotonicULIDs(t *testing.T) {
	var g idGen
	g.init()
	const t0 = int64(1764000000000) * 1e6 // ns
	times := []int64{t0, t0, t0 + 1, t0 + 5e6, t0 + 5e6, t0 - 1e9, 0}
	prev := ""
	for i, ts := range times {
		id := g.next(ts)
		u, err := ulid.ParseStrict(id)
		if err != nil {
			t.Fatalf("next(%d) = %q: not a ULID: %v", ts, id, err)
		}
		if id <= prev {
			t.Fatalf("id %d = %s, not after %s", i, id, prev)
		}
		if i < 5 && int64(u.Time()) != ts/1e6 {
			t.Errorf("next(%d) time part = %d ms, want %d", ts, u.Time(), ts/1e6)
		}
		prev = id
	}
}
