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

// ReplayRunSummary is a stored run with its totals.
type ReplayRunSummary struct {
	ReplayRun
	Total, Identical, Changed, Failed, Skipped uint32
}

// ReplayRuns lists stored runs, newest first, at most limit (default 100).
func (s *Store) ReplayRuns(ctx context.Context, limit int) ([]ReplayRunSummary, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.conn.Query(ctx, "SELECT replay_run_id, started, finished, mode, target, selection, total, identical, changed, failed, skipped FROM "+
		s.table("replay_runs")+fmt.Sprintf(" FINAL ORDER BY started DESC, replay_run_id LIMIT %d", limit))
	if err != nil {
		return nil, fmt.Errorf("listing replay runs: %w", err)
	}
	defer rows.Close()
	var out []ReplayRunSummary
	for rows.Next() {
		var r ReplayRunSummary
		if err := rows.Scan(&r.ID, &r.Started, &r.Finished, &r.Mode, &r.Target, &r.Selection, &r.Total, &r.Identical, &r.Changed, &r.Failed, &r.Skipped); err != nil {
			return nil, fmt.Errorf("scanning replay runs: %w", err)
		}
		r.Started, r.Finished = r.Started.UTC(), r.Finished.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing replay runs: %w", err)
	}
	return out, nil
}

// ReplayRunResults reads one run and at most limit of its results
// (default 10000), regressions (changed, failed) first. ErrNotFound when
// the run is not stored.
func (s *Store) ReplayRunResults(ctx context.Context, id string, limit int) (ReplayRunSummary, []ReplayResult, error) {
	if limit <= 0 {
		limit = 10000
	}
	var run ReplayRunSummary
	rows, err := s.conn.Query(ctx, "SELECT replay_run_id, started, finished, mode, target, selection, total, identical, changed, failed, skipped FROM "+
		s.table("replay_runs")+" FINAL WHERE replay_run_id = ? LIMIT 1", id)
	if err != nil {
		return run, nil, fmt.Errorf("reading replay run %s: %w", id, err)
	}
	found := false
	for rows.Next() {
		if err := rows.Scan(&run.ID, &run.Started, &run.Finished, &run.Mode, &run.Target, &run.Selection, &run.Total, &run.Identical, &run.Changed, &run.Failed, &run.Skipped); err != nil {
			rows.Close()
			return run, nil, fmt.Errorf("scanning replay run %s: %w", id, err)
		}
		found = true
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return run, nil, fmt.Errorf("reading replay run %s: %w", id, err)
	}
	if !found {
		return run, nil, fmt.Errorf("reading replay run %s: %w", id, ErrNotFound)
	}
	run.Started, run.Finished = run.Started.UTC(), run.Finished.UTC()
	rows, err = s.conn.Query(ctx, "SELECT request_id, tool, toString(status), diff, error, original_us, replay_us FROM "+
		s.table("replay_results")+" FINAL WHERE replay_run_id = ?"+
		fmt.Sprintf(" ORDER BY status IN ('changed', 'failed') DESC, request_id LIMIT %d", limit), id)
	if err != nil {
		return run, nil, fmt.Errorf("reading results of replay run %s: %w", id, err)
	}
	defer rows.Close()
	var out []ReplayResult
	for rows.Next() {
		var (
			r            ReplayResult
			status       string
			orig, replay int64
		)
		if err := rows.Scan(&r.RequestID, &r.Tool, &status, &r.Diff, &r.Error, &orig, &replay); err != nil {
			return run, nil, fmt.Errorf("scanning results of replay run %s: %w", id, err)
		}
		r.Status, r.OriginalLatency, r.ReplayLatency = ReplayStatus(status), time.Duration(orig)*time.Microsecond, time.Duration(replay)*time.Microsecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return run, nil, fmt.Errorf("reading results of replay run %s: %w", id, err)
	}
	return run, out, nil
}
