package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/recordertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig returns a config with fast retries and a private spool dir.
func testConfig(t testing.TB) recorder.Config {
	return recorder.Config{
		Dir:       filepath.Join(t.TempDir(), "spool"),
		QueueSize: 1024,
		BatchSize: 100,
		RetryMin:  time.Millisecond,
		RetryMax:  4 * time.Millisecond,
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func start(t *testing.T, cfg recorder.Config, w recorder.Writer) *recorder.Pipeline {
	t.Helper()
	p, err := recorder.NewPipeline(cfg, w, testLogger(t))
	if err != nil {
		t.Fatalf("NewPipeline: %v", err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // leave whatever is unwritten on disk
		_ = p.Shutdown(ctx)
	})
	return p
}

func event(i int) *recorder.Event {
	return &recorder.Event{
		RequestID: fmt.Sprintf("req-%05d", i),
		Hop:       recorder.HopInbound,
		Method:    "tools/call",
		Target:    "crm.search",
		TimeNs:    time.Now().UnixNano(),
		Params:    []byte(`{"name":"crm.search","arguments":{"q":"acme"}}`),
	}
}

func record(t *testing.T, p *recorder.Pipeline, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := p.Record(event(i)); err != nil {
			t.Fatalf("Record(%d) = %v", i, err)
		}
	}
}

func flush(t *testing.T, p *recorder.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (stats %+v)", err, p.Stats())
	}
}

// waitFor polls cond; the deadline only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// requireExactlyOnce checks that the writer holds requests [0,n) once each, in order.
func requireExactlyOnce(t *testing.T, w *recordertest.MemoryWriter, n int) {
	t.Helper()
	evs := w.Events()
	if len(evs) != n {
		t.Fatalf("writer holds %d events, want %d", len(evs), n)
	}
	ids := map[string]bool{}
	for i, ev := range evs {
		if want := fmt.Sprintf("req-%05d", i); ev.RequestID != want {
			t.Fatalf("event %d has RequestID %q, want %q", i, ev.RequestID, want)
		}
		if len(ev.EventID) != 26 || ids[ev.EventID] {
			t.Fatalf("event %d has EventID %q: not a fresh ULID", i, ev.EventID)
		}
		ids[ev.EventID] = true
	}
	tokens := map[string]bool{}
	for _, b := range w.Batches() {
		if tokens[b.Token] {
			t.Fatalf("token %s stored twice", b.Token)
		}
		tokens[b.Token] = true
	}
}

func spoolFiles(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRecordFlushWritesEverything(t *testing.T) {
	w := recordertest.NewMemoryWriter()
	cfg := testConfig(t)
	cfg.SegmentBytes = 4 << 10 // several segments
	cfg.BatchSize = 7
	p := start(t, cfg, w)
	record(t, p, 0, 500)
	flush(t, p)
	requireExactlyOnce(t, w, 500)
	s := p.Stats()
	if s.Enqueued != 500 || s.Spooled != 500 || s.Written != 500 || s.Dropped != 0 || s.Retried != 0 {
		t.Errorf("Stats = %+v, want 500 enqueued, spooled and written, none dropped or retried", s)
	}
	if s.SpoolSegments != 0 || s.SpoolBytes != 0 {
		t.Errorf("after Flush spool holds %d segments, %d bytes; want none", s.SpoolSegments, s.SpoolBytes)
	}
	if got := len(spoolFiles(t, cfg.Dir, "*")); got != 0 {
		t.Errorf("spool dir has %d files after Flush, want 0", got)
	}
	for _, b := range w.Batches() {
		if len(b.Events) > 7 {
			t.Errorf("batch %s has %d events, want <= BatchSize 7", b.Token, len(b.Events))
		}
	}
	if len(w.Batches()) < 500/7 {
		t.Errorf("got %d batches, want at least %d", len(w.Batches()), 500/7)
	}
}

func TestRestartReplaysLeftoverSegments(t *testing.T) {
	tests := []struct {
		name string
		// crash turns the first run's sealed segments into what a crash leaves.
		crash func(t *testing.T, dir string)
	}{
		{"clean shutdown", func(*testing.T, string) {}},
		{"crash with active segment", func(t *testing.T, dir string) {
			for _, f := range spoolFiles(t, dir, "*.seg") {
				if err := os.Rename(f, strings.TrimSuffix(f, ".seg")+".open"); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			down := recordertest.NewMemoryWriter()
			down.FailNext(-1, nil)
			p1, err := recorder.NewPipeline(cfg, down, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := p1.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			record(t, p1, 0, 250)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err = p1.Shutdown(ctx)
			if err == nil || !strings.Contains(err.Error(), "left in") {
				t.Fatalf("Shutdown with failing writer = %v, want error about segments left", err)
			}
			if s := p1.Stats(); s.Spooled != 250 || s.Written != 0 || s.Dropped != 0 {
				t.Fatalf("first run Stats = %+v, want 250 spooled, 0 written, 0 dropped", s)
			}
			tt.crash(t, cfg.Dir)

			up := recordertest.NewMemoryWriter()
			p2 := start(t, cfg, up)
			flush(t, p2)
			requireExactlyOnce(t, up, 250)
			if s := p2.Stats(); s.Written != 250 || s.SpoolSegments != 0 {
				t.Errorf("second run Stats = %+v, want 250 written and empty spool", s)
			}
		})
	}
}

// flakyWriter stores the batch and then reports failure, like a write that
// succeeded in ClickHouse but whose answer was lost; the retry must not
// duplicate it.
type flakyWriter struct {
	*recordertest.MemoryWriter
	mu        sync.Mutex
	lostAcks  int
	failAfter int // fail every call after this many calls (restart tests); <0 never
	calls     int
}

func (f *flakyWriter) WriteBatch(ctx context.Context, token string, evs []recorder.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failAfter >= 0 && f.calls > f.failAfter {
		return recordertest.ErrInjected
	}
	if err := f.MemoryWriter.WriteBatch(ctx, token, evs); err != nil {
		return err
	}
	if f.lostAcks > 0 {
		f.lostAcks--
		return errors.New("timeout reading response")
	}
	return nil
}

func TestWriterFailsThenRecovers(t *testing.T) {
	tests := []struct {
		name      string
		failNext  int
		lostAcks  int
		wantRetry uint64
		wantDups  int
	}{
		{"plain failures", 3, 0, 3, 0},
		{"acks lost after storing", 0, 2, 2, 2},
		{"both", 2, 1, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := recordertest.NewMemoryWriter()
			mem.FailNext(tt.failNext, nil)
			w := &flakyWriter{MemoryWriter: mem, lostAcks: tt.lostAcks, failAfter: -1}
			p := start(t, testConfig(t), w)
			record(t, p, 0, 300)
			flush(t, p)
			requireExactlyOnce(t, mem, 300)
			s := p.Stats()
			if s.Retried != tt.wantRetry || s.Written != 300 || mem.Duplicates() != tt.wantDups {
				t.Errorf("Retried=%d Written=%d Duplicates=%d, want %d, 300, %d",
					s.Retried, s.Written, mem.Duplicates(), tt.wantRetry, tt.wantDups)
			}
			if tt.wantRetry > 0 && s.LastError == "" {
				t.Errorf("Stats.LastError is empty after failures")
			}
		})
	}
}

func TestRestartAfterPartialSegmentResumesAtCheckpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.BatchSize = 10
	mem := recordertest.NewMemoryWriter()
	// The first run confirms 3 chunks, then storage goes down.
	w1 := &flakyWriter{MemoryWriter: mem, failAfter: 3}
	p1, err := recorder.NewPipeline(cfg, w1, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	record(t, p1, 0, 95)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := mem.WaitCalls(ctx, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three chunks confirmed", func() bool { return p1.Stats().Written == 30 })
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	_ = p1.Shutdown(done)
	if got := len(mem.Events()); got != 30 {
		t.Fatalf("first run stored %d events, want 30", got)
	}

	p2 := start(t, cfg, mem) // same store: a resend would show up as a duplicate
	flush(t, p2)
	requireExactlyOnce(t, mem, 95)
	if mem.Duplicates() != 0 {
		t.Errorf("Duplicates = %d, want 0: confirmed chunks were resent", mem.Duplicates())
	}
}

func TestTornTailIsSkipped(t *testing.T) {
	cfg := testConfig(t)
	down := recordertest.NewMemoryWriter()
	down.FailNext(-1, nil)
	p1, err := recorder.NewPipeline(cfg, down, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	record(t, p1, 0, 20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p1.Shutdown(ctx)

	segs := spoolFiles(t, cfg.Dir, "*.seg")
	if len(segs) != 1 {
		t.Fatalf("got %d segments, want 1", len(segs))
	}
	info, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Cut the last record in half and rename as if the process crashed mid-write.
	if err := os.Truncate(segs[0], info.Size()-10); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(segs[0], strings.TrimSuffix(segs[0], ".seg")+".open"); err != nil {
		t.Fatal(err)
	}

	up := recordertest.NewMemoryWriter()
	p2 := start(t, cfg, up)
	flush(t, p2)
	requireExactlyOnce(t, up, 19)
}

func TestCorruptHeaderIsQuarantined(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(cfg.Dir, "01JAAAAAAAAAAAAAAAAAAAAAAA.seg")
	if err := os.WriteFile(bad, []byte("not a segment at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := recordertest.NewMemoryWriter()
	p := start(t, cfg, w)
	record(t, p, 0, 5)
	flush(t, p)
	requireExactlyOnce(t, w, 5)
	if got := spoolFiles(t, cfg.Dir, "*.corrupt"); len(got) != 1 {
		t.Errorf("corrupt files = %v, want the bad segment moved aside", got)
	}
	if s := p.Stats(); s.SpoolBytes != 0 || s.SpoolSegments != 0 || s.LastError == "" {
		t.Errorf("Stats = %+v, want empty spool and LastError set", s)
	}
}

func TestDiskBudget(t *testing.T) {
	const n = 400
	tests := []struct {
		policy string
	}{{recorder.OverflowDrop}, {recorder.OverflowFailClosed}}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxDiskBytes = 4 << 10
			cfg.SegmentBytes = 1 << 10
			cfg.QueueSize = 8
			cfg.Overflow = tt.policy
			w := recordertest.NewMemoryWriter()
			w.FailNext(-1, nil) // storage is down: the spool fills up
			p := start(t, cfg, w)

			accepted, refused := 0, 0
			for i := 0; i < n; i++ {
				err := p.Record(event(accepted))
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, recorder.ErrOverflow) && tt.policy == recorder.OverflowFailClosed:
					refused++
					runtime.Gosched()
				default:
					t.Fatalf("Record = %v under %s", err, tt.policy)
				}
				if sb := p.Stats().SpoolBytes; sb > cfg.MaxDiskBytes {
					t.Fatalf("SpoolBytes = %d, over budget %d", sb, cfg.MaxDiskBytes)
				}
			}
			if tt.policy == recorder.OverflowDrop {
				waitFor(t, "the spooler to drain the queue", func() bool {
					s := p.Stats()
					return s.QueueLen == 0 && s.Spooled+s.Dropped == n
				})
				if s := p.Stats(); s.Dropped == 0 || accepted != n {
					t.Fatalf("drop policy: accepted %d, Stats %+v; want all accepted and some dropped", accepted, s)
				}
			} else if refused == 0 {
				t.Fatalf("fail_closed: no Record refused with the disk full")
			}

			w.FailNext(0, nil) // storage is back
			flush(t, p)
			s := p.Stats()
			if s.Written+s.Dropped != uint64(n) {
				t.Errorf("Written %d + Dropped %d != %d recorded", s.Written, s.Dropped, n)
			}
			if tt.policy == recorder.OverflowFailClosed {
				// Nothing that Record accepted may be lost.
				if s.Written != uint64(accepted) || s.Dropped != uint64(refused) {
					t.Errorf("fail_closed: Written %d Dropped %d, want %d and %d", s.Written, s.Dropped, accepted, refused)
				}
				requireExactlyOnce(t, w, accepted)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	tests := []struct {
		policy  string
		wantErr error
	}{
		{recorder.OverflowDrop, nil},
		{recorder.OverflowFailClosed, recorder.ErrOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.QueueSize = 2
			cfg.Overflow = tt.policy
			w := recordertest.NewMemoryWriter()
			var logs strings.Builder
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			p, err := recorder.NewPipeline(cfg, w, logger)
			if err != nil {
				t.Fatal(err)
			}
			// Not started: the queue fills and stays full.
			record(t, p, 0, 2)
			if err := p.Record(event(2)); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Record on a full queue = %v, want %v", err, tt.wantErr)
			}
			for range 5 {
				_ = p.Record(event(3))
			}
			if s := p.Stats(); s.Enqueued != 2 || s.Dropped != 6 {
				t.Errorf("Stats = %+v, want 2 enqueued, 6 dropped", s)
			}
			// Loud but rate-limited: one warning for the burst, with the total.
			if got := strings.Count(logs.String(), "DROPPING"); got != 1 || !strings.Contains(logs.String(), "dropped_total=1") {
				t.Errorf("drop log = %q, want exactly one warning carrying dropped_total", logs.String())
			}
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			flush(t, p)
			requireExactlyOnce(t, w, 2)
			if err := p.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown = %v", err)
			}
		})
	}
}

func TestFsyncPolicies(t *testing.T) {
	t.Run("always", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Fsync = recorder.FsyncAlways
		p := start(t, cfg, recordertest.NewMemoryWriter())
		for i := range 5 {
			record(t, p, i, i+1)
			waitFor(t, "acknowledgement", func() bool { return p.Acknowledged() == uint64(i+1) })
			if got := p.Stats().Fsyncs; got < uint64(i+1) {
				t.Fatalf("after %d acknowledged events Fsyncs = %d, want >= %d", i+1, got, i+1)
			}
		}
	})
	t.Run("interval", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Fsync = recorder.FsyncInterval
		cfg.FsyncInterval = time.Hour
		cfg.SegmentAge = time.Hour
		p := start(t, cfg, recordertest.NewMemoryWriter())
		record(t, p, 0, 10)
		waitFor(t, "events written to the segment", func() bool {
			s := p.Stats()
			return s.QueueLen == 0 && s.SpoolBytes > 16*10
		})
		if got := p.Acknowledged(); got != 0 {
			t.Fatalf("Acknowledged = %d before any fsync, want 0", got)
		}
		flush(t, p) // seals, which fsyncs
		if s := p.Stats(); s.Spooled != 10 || s.Fsyncs != 1 {
			t.Errorf("after Flush Spooled=%d Fsyncs=%d, want 10 and 1", s.Spooled, s.Fsyncs)
		}
	})
	t.Run("never", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Fsync = recorder.FsyncNever
		w := recordertest.NewMemoryWriter()
		p := start(t, cfg, w)
		record(t, p, 0, 50)
		flush(t, p)
		requireExactlyOnce(t, w, 50)
		if s := p.Stats(); s.Spooled != 50 || s.Fsyncs != 0 {
			t.Errorf("Spooled=%d Fsyncs=%d, want 50 and 0", s.Spooled, s.Fsyncs)
		}
	})
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig(t)
	p, err := recorder.NewPipeline(cfg, recorder.Discard{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(t.Context()); err == nil {
		t.Errorf("Flush before Start = nil, want error")
	}
	for i := range 2 {
		if err := p.Shutdown(t.Context()); err != nil {
			t.Errorf("Shutdown #%d before Start = %v", i+1, err)
		}
	}
	if err := p.Start(t.Context()); !errors.Is(err, recorder.ErrClosed) {
		t.Errorf("Start after Shutdown = %v, want ErrClosed", err)
	}
	if err := p.Record(event(0)); !errors.Is(err, recorder.ErrClosed) {
		t.Errorf("Record after Shutdown = %v, want ErrClosed", err)
	}

	p2 := start(t, testConfig(t), recorder.Discard{})
	if err := p2.Start(t.Context()); err == nil {
		t.Errorf("second Start = nil, want error")
	}
	record(t, p2, 0, 10)
	for i := range 2 {
		if err := p2.Shutdown(t.Context()); err != nil {
			t.Errorf("Shutdown #%d = %v", i+1, err)
		}
	}
	if s := p2.Stats(); s.Written != 10 || s.SpoolSegments != 0 {
		t.Errorf("after Shutdown Stats = %+v, want 10 written and an empty spool", s)
	}
}

func TestConcurrentRecordAndShutdown(t *testing.T) {
	w := recordertest.NewMemoryWriter()
	p := start(t, testConfig(t), w)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if err := p.Record(event(g*1000 + i)); err == nil {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		})
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	wg.Wait()
	s := p.Stats()
	if int(s.Written) != accepted || s.Written+s.Dropped != 800 {
		t.Errorf("accepted %d, Stats %+v: want every accepted event written, the rest dropped", accepted, s)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*recorder.Config)
		wantKey string
	}{
		{"ok", func(*recorder.Config) {}, ""},
		{"no dir", func(c *recorder.Config) { c.Dir = "" }, "recorder.dir"},
		{"bad fsync", func(c *recorder.Config) { c.Fsync = "sometimes" }, "recorder.fsync"},
		{"bad overflow", func(c *recorder.Config) { c.Overflow = "block" }, "recorder.overflow"},
		{"negative queue", func(c *recorder.Config) { c.QueueSize = -1 }, "recorder.queue_size"},
		{"retry order", func(c *recorder.Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond }, "recorder.retry_min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := recorder.Config{Dir: "x"}
			tt.mod(&c)
			err := c.Validate()
			if tt.wantKey == "" && err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			if tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey)) {
				t.Errorf("Validate() = %v, want error naming %s", err, tt.wantKey)
			}
		})
	}
}

func BenchmarkRecord(b *testing.B) {
	cfg := testConfig(b)
	cfg.QueueSize = 1 << 16
	p, err := recorder.NewPipeline(cfg, recorder.Discard{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	// One read-only event with its ID set: Record does not write to it.
	ev := event(0)
	ev.EventID = "01JBENCH000000000000000000"
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Record(ev)
	}
	b.StopTimer()
	_ = p.Shutdown(b.Context())
	s := p.Stats()
	if s.Enqueued+s.Dropped == 0 {
		b.Fatal("nothing recorded")
	}
	b.ReportMetric(float64(s.Dropped)/float64(s.Enqueued+s.Dropped), "dropped/op")
}

func BenchmarkSpoolThroughput(b *testing.B) {
	cfg := testConfig(b)
	cfg.QueueSize = 1 << 16
	cfg.Overflow = recorder.OverflowFailClosed
	cfg.BatchSize = 10000
	p, err := recorder.NewPipeline(cfg, recorder.Discard{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	ev := event(0)
	ev.EventID = "01JBENCH000000000000000000"
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for p.Record(ev) != nil {
			runtime.Gosched()
		}
	}
	if err := p.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	_ = p.Shutdown(b.Context())
	s := p.Stats()
	b.ReportMetric(float64(s.Written)/elapsed.Seconds(), "events/s")
	if s.Written != s.Enqueued {
		b.Fatalf("Written %d != Enqueued %d", s.Written, s.Enqueued)
	}
}

func TestTimersSealAndSync(t *testing.T) {
	t.Run("segment age seals without Flush", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.SegmentAge = 10 * time.Millisecond
		w := recordertest.NewMemoryWriter()
		p := start(t, cfg, w)
		record(t, p, 0, 30)
		waitFor(t, "age-based seal and write", func() bool { return p.Stats().Written == 30 })
		requireExactlyOnce(t, w, 30)
	})
	t.Run("fsync interval acknowledges without sealing", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.FsyncInterval = 5 * time.Millisecond
		cfg.SegmentAge = time.Hour
		w := recordertest.NewMemoryWriter()
		p := start(t, cfg, w)
		record(t, p, 0, 30)
		waitFor(t, "interval fsync", func() bool { return p.Acknowledged() == 30 })
		if s := p.Stats(); s.Written != 0 || s.Fsyncs == 0 || s.SpoolSegments != 1 {
			t.Errorf("Stats = %+v, want 0 written (segment still open), fsyncs > 0, 1 segment", s)
		}
	})
}

// TestUnredactedEventsArePreparedOrStripped: raw payloads handed over by a
// producer reach the spool only through Prepare.
func TestUnredactedEventsArePreparedOrStripped(t *testing.T) {
	for _, withPrepare := range []bool{true, false} {
		t.Run(fmt.Sprint("prepare=", withPrepare), func(t *testing.T) {
			w := recordertest.NewMemoryWriter()
			cfg := testConfig(t)
			if withPrepare {
				cfg.Prepare = func(e *recorder.Event) {
					e.Params = []byte(`"prepared"`)
					e.ErrorMessage = "prepared"
				}
			}
			p := start(t, cfg, w)
			ev := event(1)
			ev.ErrorMessage = "secret-canary"
			ev.Unredacted = true
			if err := p.Record(ev); err != nil {
				t.Fatal(err)
			}
			flush(t, p)
			got := w.Events()
			if len(got) != 1 {
				t.Fatalf("wrote %d events, want 1", len(got))
			}
			e := got[0]
			if e.Unredacted {
				t.Error("stored event is still marked Unredacted")
			}
			wantParams, wantErr := "", ""
			if withPrepare {
				wantParams, wantErr = `"prepared"`, "prepared"
			}
			if string(e.Params) != wantParams || e.ErrorMessage != wantErr {
				t.Errorf("stored Params %q, ErrorMessage %q; want %q, %q", e.Params, e.ErrorMessage, wantParams, wantErr)
			}
		})
	}
}

// leaveSegments runs a pipeline whose storage is down, records [0,n) and
// shuts it down, leaving the spool on disk as a crash or outage would.
func leaveSegments(t *testing.T, cfg recorder.Config, n int) {
	t.Helper()
	down := recordertest.NewMemoryWriter()
	down.FailNext(-1, nil)
	p, err := recorder.NewPipeline(cfg, down, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	record(t, p, 0, n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Shutdown(ctx)
}

func TestStartRetriedAfterFailureReplaysLeftoversOnce(t *testing.T) {
	cfg := testConfig(t)
	leaveSegments(t, cfg, 50)
	// A leftover active segment that cannot be sealed: its .seg name is
	// taken by a directory, so the first Start fails half-way.
	blocked := filepath.Join(cfg.Dir, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
	if err := os.WriteFile(blocked+".open", []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(blocked+".seg", 0o755); err != nil {
		t.Fatal(err)
	}
	w := recordertest.NewMemoryWriter()
	p, err := recorder.NewPipeline(cfg, w, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err == nil {
		t.Fatal("Start with an unsealable leftover segment = nil, want an error")
	}
	if err := os.Remove(blocked + ".seg"); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatalf("Start retried = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = p.Shutdown(ctx)
	})
	flush(t, p)
	requireExactlyOnce(t, w, 50)
	if s := p.Stats(); s.SpoolSegments != 0 || s.SpoolBytes != 0 {
		t.Errorf("Stats = %+v, want an empty spool", s)
	}
}

// gatedWriter holds the first WriteBatch until release is closed.
type gatedWriter struct {
	*recordertest.MemoryWriter
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedWriter) WriteBatch(ctx context.Context, token string, evs []recorder.Event) error {
	g.once.Do(func() {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
		}
	})
	return g.MemoryWriter.WriteBatch(ctx, token, evs)
}

func TestSegmentRemovedBehindTheWriterIsSkipped(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentBytes = 2 << 10
	leaveSegments(t, cfg, 100)
	segs := spoolFiles(t, cfg.Dir, "*.seg")
	if len(segs) < 3 {
		t.Fatalf("got %d leftover segments, want at least 3", len(segs))
	}
	w := &gatedWriter{MemoryWriter: recordertest.NewMemoryWriter(), entered: make(chan struct{}), release: make(chan struct{})}
	p := start(t, cfg, w)
	<-w.entered
	// Another process (or an operator) removes a segment this one listed
	// at Start; the writer must go on with the others.
	gone := segs[1]
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	close(w.release)
	flush(t, p)
	s := p.Stats()
	if s.SpoolSegments != 0 || s.SpoolBytes != 0 {
		t.Errorf("Stats = %+v, want an empty spool", s)
	}
	if got := len(w.Events()); got == 0 || got >= 100 || uint64(got) != s.Written {
		t.Errorf("writer holds %d events, Written %d; want the events of every segment but the removed one", got, s.Written)
	}
	if !strings.Contains(s.LastError, filepath.Base(gone)) {
		t.Errorf("LastError = %q, want it to name the missing segment", s.LastError)
	}
}

func TestLiveSegmentLostBehindTheWriterCountsAsDropped(t *testing.T) {
	tests := []struct {
		name string
		lose func(path string) error
	}{
		{"removed", os.Remove},
		{"header overwritten", func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("garbage!"), 0)
			return err
		}},
		{"record corrupted", func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("garbage!"), 16+8+4) // inside the first record's payload
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SegmentBytes = 2 << 10
			cfg.SegmentAge = 10 * time.Millisecond
			w := &gatedWriter{MemoryWriter: recordertest.NewMemoryWriter(), entered: make(chan struct{}), release: make(chan struct{})}
			p := start(t, cfg, w)
			record(t, p, 0, 100)
			<-w.entered
			waitFor(t, "every segment sealed", func() bool {
				return p.Stats().Spooled == 100 && len(spoolFiles(t, cfg.Dir, "*.open")) == 0
			})
			segs := spoolFiles(t, cfg.Dir, "*.seg")
			if len(segs) < 3 {
				t.Fatalf("got %d segments, want at least 3", len(segs))
			}
			if err := tt.lose(segs[1]); err != nil {
				t.Fatal(err)
			}
			close(w.release)
			flush(t, p)
			s := p.Stats()
			if s.Dropped == 0 || s.Written+s.Dropped != 100 || uint64(len(w.Events())) != s.Written {
				t.Errorf("Stats = %+v with %d events stored; want Written+Dropped = 100, some dropped", s, len(w.Events()))
			}
		})
	}
}

// Two pipelines on one spool directory would seal each other's active
// segment and write and delete each other's files: the second Start is
// refused until the first has shut down.
func TestSpoolDirectoryIsExclusive(t *testing.T) {
	cfg := testConfig(t)
	w1 := recordertest.NewMemoryWriter()
	p1 := start(t, cfg, w1)
	record(t, p1, 0, 10)

	w2 := recordertest.NewMemoryWriter()
	p2, err := recorder.NewPipeline(cfg, w2, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Start(t.Context()); !errors.Is(err, recorder.ErrSpoolInUse) {
		t.Fatalf("second Start on a spool in use = %v, want ErrSpoolInUse", err)
	}
	flush(t, p1)
	if err := p1.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := p2.Start(t.Context()); err != nil {
		t.Fatalf("Start after the first pipeline shut down = %v", err)
	}
	t.Cleanup(func() { _ = p2.Shutdown(context.Background()) })
	record(t, p2, 10, 20)
	flush(t, p2)
	if got := len(w1.Events()) + len(w2.Events()); got != 20 || w1.Duplicates()+w2.Duplicates() != 0 {
		t.Errorf("stored %d events (%d, %d duplicates), want 20 once", got, w1.Duplicates(), w2.Duplicates())
	}
}
