package clickhouse

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
)

func TestPlanExport(t *testing.T) {
	counts := []principalCount{{"a", 3}, {"b", 2}, {"c", 5}, {"d", 12}, {"e", 1}, {"f", 10}, {"g", 4}}
	got := planExport(counts, 10)
	// a, b and c make 10; d alone is over; e and f would make 11.
	want := []exportChunk{{hi: "c"}, {hi: "d", heavy: true}, {hi: "e"}, {hi: "f"}, {hi: "g"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("planExport = %+v, want %+v", got, want)
	}
	if got := planExport(nil, 10); len(got) != 0 {
		t.Errorf("planExport(nil) = %+v", got)
	}
}

func TestCutHours(t *testing.T) {
	hours := []hourCount{{100, 4}, {200, 4}, {300, 3}, {400, 20}, {500, 1}, {600, 9}}
	if got, want := cutHours(hours, 10), []uint32{300, 400, 500}; !reflect.DeepEqual(got, want) {
		t.Errorf("cutHours = %v, want %v", got, want)
	}
}

// TestAuditExportChunks: an export (all rows, no limit) read a chunk at a
// time gives exactly the rows, in the order, of one FINAL read: chunks of
// whole principals and a principal split by hours, events stored twice,
// several events in one second, and plans that do not match the data
// (stale counts: principals written since, or gone).
func TestAuditExportChunks(t *testing.T) {
	defer func(n uint64) { exportChunkRows = n }(exportChunkRows)
	exportChunkRows = 6
	ctx := context.Background()
	s := migratedStore(t)
	now := time.Now().UTC().Truncate(time.Hour)
	group := func(p string, n int, step time.Duration) []recorder.Event {
		ats := make([]time.Time, n)
		for i := range ats {
			ats[i] = now.Add(-time.Duration(i) * step)
		}
		return principalEvents(p, ats)
	}
	for _, g := range []struct {
		p     string
		n     int
		step  time.Duration
		twice bool
	}{
		{"", 2, time.Hour, false}, // an empty principal sorts first
		{"pa", 4, 7 * time.Hour, false},
		{"pb", 3, time.Hour, true},
		{"ph", 60, 11 * time.Minute, true}, // heavy: split by hours
		{"pi", 5, 0, false},                // five calls in one second
		{"pz\xff", 9, 3 * time.Hour, false},
	} {
		evs := group(g.p, g.n, g.step)
		if g.twice {
			writeTwice(t, s, evs)
		} else if err := s.WriteBatch(ctx, "export-"+g.p, evs); err != nil {
			t.Fatal(err)
		}
	}
	day := 24 * time.Hour
	queries := []AuditQuery{
		{},
		{Since: now.Add(-3 * day)},
		{Since: now.Add(-9 * time.Hour), Until: now.Add(-2 * time.Hour)},
		{Decision: "denied"},
		{Principal: "ph"},
		{Principal: "nobody"},
		{Tool: "s1.*"},
	}
	log := &queryLog{Conn: s.conn}
	s.conn = log
	defer func() { s.conn = log.Conn }()
	for _, q := range queries {
		log.queries = nil
		got, want := auditIDs(t, s, q), auditIDs(t, legacyReader{s}, q)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Audit(%+v) = %d rows, want %d (from FINAL); first difference at %d", q, len(got), len(want), firstMismatch(got, want))
		}
		if q.Principal == "" && len(want) > 2*int(exportChunkRows) && len(log.queries) < 4 {
			t.Errorf("Audit(%+v) of %d rows took %d queries: not read in chunks", q, len(want), len(log.queries))
		}
	}
	// Plans made from counts that no longer hold still read every row.
	for _, plan := range [][]exportChunk{
		nil,
		{{hi: "pa"}},              // every principal after pa unseen
		{{hi: "pb", heavy: true}}, // pb split by hours, the rest unseen
		{{hi: "a"}, {hi: "pc"}, {hi: "ph", heavy: true}, {hi: "pj"}},
		{{hi: "ph", heavy: true}, {hi: "pi", heavy: true}},
		{{hi: "zzz"}, {hi: "zzzz", heavy: true}}, // gone principals
	} {
		var got []string
		err := s.exportChunks(ctx, "", nil, plan, func(r AuditRow) error { got = append(got, r.RequestID); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if want := auditIDs(t, legacyReader{s}, AuditQuery{}); !reflect.DeepEqual(got, want) {
			t.Errorf("plan %+v: %d rows, want %d; first difference at %d", plan, len(got), len(want), firstMismatch(got, want))
		}
	}
}

// failQueries fails the queries that contain match, as a server limit
// would.
type failQueries struct {
	driver.Conn
	match string
}

func (f failQueries) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	if strings.Contains(query, f.match) {
		return nil, errors.New("code: 241, message: Memory limit (for query) exceeded")
	}
	return f.Conn.Query(ctx, query, args...)
}

// TestAuditExportCountsFail: when a count the chunks are planned by
// fails (a server limit), the rows it was for are read in one query: the
// export is what one FINAL read gives, not an error.
func TestAuditExportCountsFail(t *testing.T) {
	defer func(n uint64) { exportChunkRows = n }(exportChunkRows)
	exportChunkRows = 4
	s := migratedStore(t)
	now := time.Now().UTC()
	ats := make([]time.Time, 30)
	for i := range ats {
		ats[i] = now.Add(-time.Duration(i) * 50 * time.Minute)
	}
	evs := callEvents("c-", ats) // principals p0, p1, p2: 10 rows each
	if err := s.WriteBatch(context.Background(), "counts-fail", evs); err != nil {
		t.Fatal(err)
	}
	want := auditIDs(t, legacyReader{s}, AuditQuery{})
	conn := s.conn
	defer func() { s.conn = conn }()
	for _, match := range []string{"GROUP BY principal", "toStartOfHour"} {
		s.conn = failQueries{Conn: conn, match: match}
		if got := auditIDs(t, s, AuditQuery{}); !reflect.DeepEqual(got, want) {
			t.Errorf("%s failing: %d rows, want %d; first difference at %d", match, len(got), len(want), firstMismatch(got, want))
		}
	}
}

// TestAuditExportBoundedMemory: exporting everyone's rows of a window
// sorted them all in one query, which a server's memory limit refused
// (at 10 M calls, 1.86 GiB); read a chunk at a time, the same export
// passes under a limit that one query over all of them exceeds.
func TestAuditExportBoundedMemory(t *testing.T) {
	defer func(n uint64) { exportChunkRows = n }(exportChunkRows)
	exportChunkRows = 20_000
	s := migratedStore(t)
	const n = 600_000
	generateReadBench(t, s, n, time.Now())
	// A query's memory is mostly its read buffers, about 1 MB per column
	// per thread, and the threads default to the server's cores: one
	// thread makes the limit mean the same on any machine (a chunk then
	// needs about 40 MB, one query over every row far more).
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"max_memory_usage": 80_000_000, "max_threads": 1}))
	// The limit does refuse one query over every row.
	err := s.auditRead(ctx, "", nil, "", 0, false, func(AuditRow) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "Memory limit") {
		t.Fatalf("one query over %d rows under the limit: %v; the test needs it refused", n, err)
	}
	rows := 0
	if err := s.Audit(ctx, AuditQuery{}, func(AuditRow) error { rows++; return nil }); err != nil {
		t.Fatalf("export under the memory limit: %v", err)
	}
	if rows != n {
		t.Fatalf("exported %d rows, want %d", rows, n)
	}
}

// planExport is exportPlanner over counts.
func planExport(counts []principalCount, max uint64) []exportChunk {
	var p exportPlanner
	for _, c := range counts {
		p.add(c, max)
	}
	return p.plan
}
