package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReplayStatus is the verdict on one replayed request.
type ReplayStatus string

// Replay verdicts.
const (
	ReplayIdentical ReplayStatus = "identical"
	ReplayChanged   ReplayStatus = "changed"
	ReplayFailed    ReplayStatus = "failed"
	ReplaySkipped   ReplayStatus = "skipped"
)

// ReplayRun describes one replay run. The counts are computed from the
// results by WriteReplayRun.
type ReplayRun struct {
	ID        string // ULID of the run
	Started   time.Time
	Finished  time.Time
	Mode      string // e.g. dry-run, live
	Target    string // what was replayed against
	Selection string // the selection, as JSON
}

// ReplayResult is the outcome of replaying one request.
type ReplayResult struct {
	RequestID       string
	Tool            string
	Status          ReplayStatus
	Diff            string // JSON diff of original and replayed result; empty when identical
	Error           string
	OriginalLatency time.Duration
	ReplayLatency   time.Duration
}

// WriteReplayRun stores a run and its results. Writing the same run again
// replaces it (ReplacingMergeTree on the run id and request id).
func (s *Store) WriteReplayRun(ctx context.Context, run ReplayRun, results []ReplayResult) error {
	if run.ID == "" {
		return errors.New("writing replay run: empty ID")
	}
	var counts [5]uint32 // total, identical, changed, failed, skipped
	for _, r := range results {
		counts[0]++
		switch r.Status {
		case ReplayIdentical:
			counts[1]++
		case ReplayChanged:
			counts[2]++
		case ReplayFailed:
			counts[3]++
		case ReplaySkipped:
			counts[4]++
		default:
			return fmt.Errorf("writing replay run %s: request %s: unknown status %q", run.ID, r.RequestID, r.Status)
		}
	}
	if len(results) > 0 {
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("replay_results")+
			" (replay_run_id, started, request_id, tool, status, diff, error, original_us, replay_us)")
		if err != nil {
			return fmt.Errorf("writing replay results of %s: %w", run.ID, err)
		}
		defer b.Abort()
		for _, r := range results {
			if err := b.Append(run.ID, run.Started, r.RequestID, r.Tool, string(r.Status), r.Diff, r.Error,
				r.OriginalLatency.Microseconds(), r.ReplayLatency.Microseconds()); err != nil {
				return fmt.Errorf("writing replay results of %s: %w", run.ID, err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("writing replay results of %s: %w", run.ID, err)
		}
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("replay_runs")+
		" (replay_run_id, started, finished, mode, target, selection, total, identical, changed, failed, skipped)")
	if err != nil {
		return fmt.Errorf("writing replay run %s: %w", run.ID, err)
	}
	defer b.Abort()
	if err := b.Append(run.ID, run.Started, run.Finished, run.Mode, run.Target, run.Selection,
		counts[0], counts[1], counts[2], counts[3], counts[4]); err != nil {
		return fmt.Errorf("writing replay run %s: %w", run.ID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("writing replay run %s: %w", run.ID, err)
	}
	return nil
}
