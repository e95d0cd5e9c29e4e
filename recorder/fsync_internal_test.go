package recorder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type countingWriter struct{ n, calls atomic.Int64 }

func (w *countingWriter) WriteBatch(_ context.Context, _ string, evs []Event) error {
	w.calls.Add(1)
	w.n.Add(int64(len(evs)))
	return nil
}

// TestFsyncFailureIsNotAcknowledged: events whose fsync failed are not
// durable and must not be counted as acknowledged; under fail_closed new
// calls are refused until an fsync succeeds again.
func TestFsyncFailureIsNotAcknowledged(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval} {
		t.Run(policy, func(t *testing.T) {
			w := &countingWriter{}
			p, err := NewPipeline(Config{
				Dir: filepath.Join(t.TempDir(), "spool"), Fsync: policy, FsyncInterval: time.Millisecond,
				Overflow: OverflowFailClosed, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
			}, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			var failing atomic.Bool
			failing.Store(true)
			p.syncFile = func(f *os.File) error {
				if failing.Load() {
					return errors.New("injected: EIO")
				}
				return f.Sync()
			}
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			for i := range 10 {
				if err := p.Record(&Event{RequestID: "r", Hop: HopInbound, Seq: uint32(i)}); err != nil {
					t.Fatalf("Record %d = %v", i, err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			s := p.Stats()
			if s.Spooled != 0 || s.Unacknowledged != 10 {
				t.Fatalf("after failed fsyncs Stats = %+v, want 0 acknowledged, 10 unacknowledged", s)
			}
			if err := p.Record(&Event{RequestID: "next", Hop: HopInbound}); !errors.Is(err, ErrSpoolFailed) {
				t.Fatalf("Record after a failed fsync under fail_closed = %v, want ErrSpoolFailed", err)
			}
			failing.Store(false)
			deadline := time.Now().Add(20 * time.Second)
			for p.Record(&Event{RequestID: "later", Hop: HopInbound}) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the spool never recovered after fsync works again")
				}
				time.Sleep(time.Millisecond)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if s := p.Stats(); s.Spooled != 1 {
				t.Errorf("after recovery Spooled = %d, want 1", s.Spooled)
			}
		})
	}
}

// TestGrowthMeter: the spool's growth rate and so its time to full.
func TestGrowthMeter(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		samples []int64 // bytes, one per step of growthStep
		want    float64
	}{
		{"no samples", nil, 0},
		{"one sample", []int64{100}, 0},
		{"steady growth", []int64{0, 10_000, 20_000}, 1000},
		{"draining", []int64{20_000, 10_000}, -1000},
		{"window of the last minute", []int64{0, 0, 0, 0, 0, 0, 0, 0, 60_000, 120_000}, float64(120_000) / 60},
	}
	for _, tt := range tests {
		var g growthMeter
		for i, b := range tt.samples {
			g.sample(t0.Add(time.Duration(i)*growthStep), b)
			g.sample(t0.Add(time.Duration(i)*growthStep+time.Second), b+999) // within the step: ignored
		}
		if got := g.rate(); got != tt.want {
			t.Errorf("%s: rate = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestDirFsyncFailureIsNotAcknowledged: a segment whose directory entry
// could not be made durable loses everything on a power cut, fsynced
// records included: its events are not acknowledged until a directory
// fsync succeeds. (A file system that cannot fsync directories at all,
// EINVAL, records less durably rather than not at all.)
func TestDirFsyncFailureIsNotAcknowledged(t *testing.T) {
	for _, tt := range []struct {
		name    string
		err     error
		wantAck uint64
	}{{"EIO", syscall.EIO, 0}, {"unsupported EINVAL", syscall.EINVAL, 5}} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPipeline(Config{Dir: filepath.Join(t.TempDir(), "spool"), Fsync: FsyncAlways,
				RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond}, &countingWriter{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.syncDir = func(string) error { return tt.err }
			if err := p.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			for i := range 5 {
				if err := p.Record(&Event{RequestID: "r", Hop: HopInbound, Seq: uint32(i)}); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if s := p.Stats(); s.Spooled != tt.wantAck || s.Spooled+s.Unacknowledged != 5 {
				t.Errorf("Stats = %+v, want %d acknowledged of 5", s, tt.wantAck)
			}
		})
	}
}
