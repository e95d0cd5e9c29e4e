package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

// TestOversizedRecordKeepsItsHop: an event whose encoding would exceed the
// spool's record limit (256 MiB) must not be acknowledged and then lost as
// a "torn" record: its hop is kept, without the payloads, marked truncated.
func TestOversizedRecordKeepsItsHop(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 1 << 20
	w := recordertest.NewMemoryWriter()
	p := start(t, cfg, w)
	big := event(0)
	big.Params = make([]byte, 257<<20)
	if err := p.Record(big); err != nil {
		t.Fatalf("Record = %v", err)
	}
	// The big event holds the queue's byte budget (Config.QueueBytes)
	// until the spooler takes it.
	waitFor(t, "the spooler to take the big event", func() bool { return p.Stats().QueueBytes == 0 })
	record(t, p, 1, 3)
	flush(t, p)
	evs := w.Events()
	if len(evs) != 3 {
		t.Fatalf("writer holds %d events, want 3 (stats %+v)", len(evs), p.Stats())
	}
	if evs[0].RequestID != "req-00000" || evs[0].Params != nil || !evs[0].PayloadTruncated {
		t.Errorf("oversized event = %s params %d bytes truncated=%v; want req-00000 kept, params dropped, truncated",
			evs[0].RequestID, len(evs[0].Params), evs[0].PayloadTruncated)
	}
	if s := p.Stats(); s.Dropped != 0 || s.Written != 3 {
		t.Errorf("Stats = %+v, want 3 written and none dropped", s)
	}
}

// hop returns a hop of request i.
func hop(i int, h recorder.Hop) *recorder.Event {
	ev := event(i)
	ev.Hop = h
	return ev
}

// TestFailClosedAdmittedCallKeepsLaterHops: under fail_closed only the
// event that admits a call (its inbound hop) may be refused; the later hops
// of an admitted call are kept even when the queue is full.
func TestFailClosedAdmittedCallKeepsLaterHops(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueSize = 2
	cfg.Overflow = recorder.OverflowFailClosed
	w := recordertest.NewMemoryWriter()
	p, err := recorder.NewPipeline(cfg, w, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the queue fills and stays full.
	for i := range 2 {
		if err := p.Record(hop(i, recorder.HopInbound)); err != nil {
			t.Fatalf("admitting call %d: %v", i, err)
		}
	}
	if err := p.Record(hop(2, recorder.HopInbound)); !errors.Is(err, recorder.ErrOverflow) {
		t.Fatalf("admitting a call on a full queue = %v, want ErrOverflow", err)
	}
	for _, h := range []recorder.Hop{recorder.HopAuth, recorder.HopRoute, recorder.HopUpstream, recorder.HopNotification, recorder.HopResponse} {
		for i := range 2 {
			if err := p.Record(hop(i, h)); err != nil {
				t.Fatalf("%s hop of admitted call %d = %v, want it kept", h, i, err)
			}
		}
	}
	// A refusal of a request before it became a call is an admission too.
	refusal := &recorder.Event{RequestID: "req-refused", Hop: recorder.HopAuth, AuthDecision: "denied"}
	if err := p.Record(refusal); !errors.Is(err, recorder.ErrOverflow) {
		t.Errorf("standalone auth refusal on a full queue = %v, want ErrOverflow", err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	flush(t, p)
	got := map[string]int{}
	for _, ev := range w.Events() {
		got[ev.RequestID]++
	}
	if got["req-00000"] != 6 || got["req-00001"] != 6 || got["req-00002"] != 0 {
		t.Errorf("hops written per request = %v, want 6 for each admitted call and none for the refused one", got)
	}
	if s := p.Stats(); s.Written != 12 || s.Dropped != 2 {
		t.Errorf("Stats = %+v, want 12 written, 2 dropped (refused)", s)
	}
}

// TestFailClosedDiskFullKeepsLaterHops: with the spool over its disk
// budget, new calls are refused but the admitted ones keep their hops.
func TestFailClosedDiskFullKeepsLaterHops(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxDiskBytes = 4 << 10
	cfg.SegmentBytes = 1 << 10
	cfg.QueueSize = 8
	cfg.Overflow = recorder.OverflowFailClosed
	w := recordertest.NewMemoryWriter()
	w.FailNext(-1, nil) // storage is down: the spool fills up
	p := start(t, cfg, w)
	var admitted []int
	for i := 0; i < 10000; i++ {
		err := p.Record(hop(i, recorder.HopInbound))
		if errors.Is(err, recorder.ErrOverflow) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		admitted = append(admitted, i)
	}
	if len(admitted) == 10000 {
		t.Fatal("no call refused with the spool full")
	}
	for _, i := range admitted {
		if err := p.Record(hop(i, recorder.HopResponse)); err != nil {
			t.Fatalf("response hop of admitted call %d = %v, want it kept", i, err)
		}
	}
	w.FailNext(0, nil)
	flush(t, p)
	got := map[string]int{}
	for _, ev := range w.Events() {
		got[ev.RequestID]++
	}
	for _, i := range admitted {
		if id := fmt.Sprintf("req-%05d", i); got[id] != 2 {
			t.Fatalf("admitted call %s has %d hops written, want 2 (stats %+v)", id, got[id], p.Stats())
		}
	}
}

// permanentWriter rejects for good every batch holding a poisoned event.
type permanentWriter struct {
	*recordertest.MemoryWriter
	mu       sync.Mutex
	poison   string
	rejected int
}

func (w *permanentWriter) WriteBatch(ctx context.Context, token string, evs []recorder.Event) error {
	w.mu.Lock()
	poison := w.poison
	w.mu.Unlock()
	for _, ev := range evs {
		if poison != "" && ev.RequestID == poison {
			w.mu.Lock()
			w.rejected++
			w.mu.Unlock()
			return recorder.Permanent(errors.New("server rejects this batch"))
		}
	}
	return w.MemoryWriter.WriteBatch(ctx, token, evs)
}

// TestPermanentErrorQuarantinesBatch: a batch the storage always rejects is
// set aside in the quarantine directory, counted, and later batches are
// written; requeued, it is written once the storage accepts it.
func TestPermanentErrorQuarantinesBatch(t *testing.T) {
	cfg := testConfig(t)
	cfg.BatchSize = 10
	w := &permanentWriter{MemoryWriter: recordertest.NewMemoryWriter(), poison: "req-00015"}
	p := start(t, cfg, w)
	record(t, p, 0, 40)
	flush(t, p)
	s := p.Stats()
	if s.Written != 30 || s.Quarantined != 10 || s.Dropped != 0 || s.QuarantineFiles != 1 {
		t.Fatalf("Stats = %+v, want 30 written, 10 quarantined in 1 file, none dropped", s)
	}
	if w.rejected != 1 {
		t.Errorf("the rejected batch was tried %d times, want once (permanent errors are not retried)", w.rejected)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.Dir, recorder.QuarantineDir, "*"))
	if len(files) != 1 {
		t.Fatalf("quarantine holds %v, want one file", files)
	}
	if !strings.Contains(s.LastError, "server rejects this batch") {
		t.Errorf("LastError = %q, want the rejection", s.LastError)
	}
	// Storage fixed: requeue while the pipeline runs.
	w.mu.Lock()
	w.poison = ""
	w.mu.Unlock()
	n, err := recorder.Requeue(cfg.Dir)
	if err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v; want 1 file", n, err)
	}
	waitFor(t, "the requeued batch to be written", func() bool { return len(w.Events()) == 40 })
	ids := map[string]int{}
	for _, ev := range w.Events() {
		ids[ev.RequestID]++
	}
	for i := range 40 {
		if id := fmt.Sprintf("req-%05d", i); ids[id] != 1 {
			t.Errorf("%s written %d times, want once", id, ids[id])
		}
	}
	waitFor(t, "the quarantine count to drop", func() bool { return p.Stats().QuarantineFiles == 0 })
	if entries, _ := os.ReadDir(filepath.Join(cfg.Dir, recorder.QuarantineDir)); len(entries) != 0 {
		t.Errorf("quarantine still holds %d files", len(entries))
	}
}

// TestSpoolNearlyFullWarns: with storage down the spool fills; from 80% of
// its budget the pipeline warns (naming what happens when it is full under
// the policy) and reports the problem in its Stats.
func TestSpoolNearlyFullWarns(t *testing.T) {
	for _, policy := range []string{recorder.OverflowDrop, recorder.OverflowFailClosed} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxDiskBytes = 8 << 10
			cfg.SegmentBytes = 1 << 10
			cfg.Overflow = policy
			w := recordertest.NewMemoryWriter()
			w.FailNext(-1, nil)
			var logs syncBuffer
			p, err := recorder.NewPipeline(cfg, w, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_ = p.Shutdown(ctx)
			})
			if probs := p.Stats().Problems(time.Now()); len(probs) != 0 {
				t.Fatalf("Problems of an empty spool = %q", probs)
			}
			for i := 0; p.Stats().SpoolBytes < cfg.MaxDiskBytes*8/10; i++ {
				_ = p.Record(event(i))
				if i > 100000 {
					t.Fatalf("the spool never reached 80%%: %+v", p.Stats())
				}
				if i%16 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			want := "events will be DROPPED"
			if policy == recorder.OverflowFailClosed {
				want = "new calls will be REFUSED"
			}
			waitFor(t, "the nearly-full warning", func() bool { return strings.Contains(logs.String(), want) })
			if n := strings.Count(logs.String(), "spool is nearly full"); n != 1 {
				t.Errorf("%d nearly-full warnings, want 1 (once a minute)", n)
			}
			probs := strings.Join(p.Stats().Problems(time.Now()), "; ")
			if !strings.Contains(probs, "spool nearly full") {
				t.Errorf("Problems = %q, want the spool nearly full", probs)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestFailClosedShutdownKeepsAdmittedEvents: under fail_closed every event
// in the queue belongs to an admitted call. Shutting down with the spool
// full and storage down used to drop them; they now go over the disk
// budget (by at most the queue) and are written by the next start.
func TestFailClosedShutdownKeepsAdmittedEvents(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxDiskBytes = 4 << 10
	cfg.SegmentBytes = 1 << 10
	cfg.QueueSize = 8
	cfg.Overflow = recorder.OverflowFailClosed
	w := recordertest.NewMemoryWriter()
	w.FailNext(-1, nil)
	p, err := recorder.NewPipeline(cfg, w, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var admitted []int
	for i := 0; ; i++ {
		err := p.Record(hop(i, recorder.HopInbound))
		if errors.Is(err, recorder.ErrOverflow) {
			if p.Stats().SpoolBytes > cfg.MaxDiskBytes/2 {
				break // the spool is full
			}
			time.Sleep(time.Millisecond) // the queue is: let the spooler catch up
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		admitted = append(admitted, i)
	}
	// The admitted calls end: their response hops wait behind the full spool.
	for _, i := range admitted {
		if err := p.Record(hop(i, recorder.HopResponse)); err != nil {
			t.Fatalf("response of admitted call %d: %v", i, err)
		}
	}
	accepted := 2 * len(admitted)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // storage is down: leave everything on disk
	_ = p.Shutdown(ctx)
	s := p.Stats()
	if lost := s.Enqueued - s.Spooled - s.Unacknowledged; s.Enqueued != uint64(accepted) || lost != 0 {
		t.Fatalf("%d of %d accepted events not spooled at shutdown (stats %+v)", lost, accepted, p.Stats())
	}
	w2 := recordertest.NewMemoryWriter()
	p2 := start(t, cfg, w2)
	flush(t, p2)
	if got := len(w2.Events()); got != accepted {
		t.Errorf("the next start wrote %d events, want the %d accepted", got, accepted)
	}
}
