package clickhouse

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestConsoleQueries covers what the web console reads beyond the CLI:
// calls by outcome and decision, audit by rule with a row limit, audit
// counts per day, a session's trace capped in requests, replay runs and a
// run's results (regressions first).
func TestConsoleQueries(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	if err := s.WriteBatch(ctx, "t", fixture(base)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		q    CallsQuery
		want []string
	}{
		{"all, newest first", CallsQuery{}, []string{"r3", "r2", "r1"}},
		{"outcome tool_error", CallsQuery{Outcome: "tool_error"}, []string{"r1"}},
		{"outcome denied", CallsQuery{Outcome: "denied"}, []string{"r3"}},
		{"unknown outcome matches nothing", CallsQuery{Outcome: "nope"}, nil},
		{"decision denied", CallsQuery{Decision: "denied"}, []string{"r3"}},
		{"limit", CallsQuery{Limit: 1}, []string{"r3"}},
	} {
		if got := callIDs(t, s, tt.q); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Calls = %v, want %v", tt.name, got, tt.want)
		}
	}

	var rows []string
	if err := s.Audit(ctx, AuditQuery{Rule: "deny:git.*"}, func(r AuditRow) error { rows = append(rows, r.RequestID); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"r3"}; !reflect.DeepEqual(rows, want) {
		t.Errorf("Audit(rule deny:git.*) = %v, want %v", rows, want)
	}
	rows = nil
	if err := s.Audit(ctx, AuditQuery{Limit: 2}, func(r AuditRow) error { rows = append(rows, r.RequestID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Errorf("Audit(limit 2) = %v, want 2 rows", rows)
	}

	days, err := s.AuditDays(ctx, AuditQuery{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var total, denied uint64
	for _, d := range days {
		total, denied = total+d.Total, denied+d.Denied
		if d.Day.Hour() != 0 || d.Day.Location() != time.UTC {
			t.Errorf("AuditDays day %v is not a UTC midnight", d.Day)
		}
	}
	if total != 3 || denied != 1 {
		t.Errorf("AuditDays = %+v: total %d denied %d, want 3 and 1", days, total, denied)
	}

	evs, err := s.Trace(ctx, "S1", WithMaxRequests(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.RequestID != "r1" {
			t.Fatalf("Trace(S1, max 1 request) has hop of %s, want only r1 (the earliest)", e.RequestID)
		}
	}

	run := ReplayRun{ID: "run-c", Started: base, Finished: base.Add(time.Second), Mode: "mock", Target: "gw"}
	if err := s.WriteReplayRun(ctx, run, []ReplayResult{
		{RequestID: "a", Tool: "t", Status: ReplayIdentical},
		{RequestID: "b", Tool: "t", Status: ReplayChanged, Diff: `[{"path":"/x","kind":"value_changed","risk":"medium"}]`},
		{RequestID: "c", Tool: "t", Status: ReplayFailed, Error: "boom"},
	}); err != nil {
		t.Fatal(err)
	}
	runs, err := s.ReplayRuns(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != "run-c" || runs[0].Total != 3 || runs[0].Changed != 1 || runs[0].Failed != 1 || runs[0].Mode != "mock" {
		t.Fatalf("ReplayRuns = %+v", runs)
	}
	got, results, err := s.ReplayRunResults(ctx, "run-c", 0)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range results {
		order = append(order, r.RequestID+":"+string(r.Status))
	}
	if got.ID != "run-c" || !reflect.DeepEqual(order, []string{"b:changed", "c:failed", "a:identical"}) || results[0].Diff == "" {
		t.Errorf("ReplayRunResults = %+v, %v; want run-c with b:changed c:failed a:identical", got.ReplayRun, order)
	}
	if _, _, err := s.ReplayRunResults(ctx, "nope", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReplayRunResults(unknown) error = %v, want ErrNotFound", err)
	}
}
