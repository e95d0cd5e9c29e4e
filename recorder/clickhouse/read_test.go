package clickhouse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
)

// callEvents makes one call (a response hop, which is what an audit row is
// made from) at each of ats: call i is request "<prefix><i>", principal
// p<i%3> with role r<i%2>, tool t<i%4> on server s<i%2>; every 5th is
// denied, every 7th a tool error.
func callEvents(prefix string, ats []time.Time) []recorder.Event {
	evs := make([]recorder.Event, len(ats))
	for i, at := range ats {
		e := recorder.Event{
			EventID: fmt.Sprintf("%s%d-resp", prefix, i), RequestID: fmt.Sprintf("%s%d", prefix, i), Hop: recorder.HopResponse, Seq: 1,
			TimeNs: at.UnixNano(), Method: "tools/call", Principal: fmt.Sprintf("p%d", i%3),
			Server: fmt.Sprintf("s%d", i%2), Target: fmt.Sprintf("s%d.t%d", i%2, i%4),
			AuthDecision: "allowed", AuthRule: fmt.Sprintf("token:p%d", i%3),
			Attrs: []recorder.Attr{{Key: recorder.AttrAuthRoles, Value: fmt.Sprintf("r%d", i%2)}},
		}
		switch {
		case i%5 == 0:
			e.AuthDecision, e.AuthRule, e.Outcome = "denied", "deny:*", recorder.OutcomeDenied
		case i%7 == 0:
			e.Outcome, e.ErrorMessage = recorder.OutcomeToolError, "boom"
		}
		evs[i] = e
	}
	return evs
}

// writeTwice writes evs as two batches with different tokens, as a retry
// after a crash between the rows and the token would, and checks that the
// audit table holds both copies unmerged (merges stopped): every read
// below sees the duplicates.
// principalEvents is callEvents all made by principal p (requests
// "<p>-<i>").
func principalEvents(p string, ats []time.Time) []recorder.Event {
	evs := callEvents(p+"-", ats)
	for i := range evs {
		evs[i].Principal = p
	}
	return evs
}

func writeTwice(t *testing.T, s *Store, evs []recorder.Event) {
	t.Helper()
	ctx := context.Background()
	for _, table := range []string{"audit"} {
		if err := s.conn.Exec(ctx, "SYSTEM STOP MERGES "+s.storageTable(table)); err != nil {
			t.Fatalf("stopping merges on %s: %v", table, err)
		}
	}
	before := count(t, s, "SELECT count() FROM "+s.table("audit"))
	for _, tok := range []string{evs[0].EventID + "/first", evs[0].EventID + "/retry"} {
		if err := s.WriteBatch(ctx, tok, evs); err != nil {
			t.Fatalf("WriteBatch(%s): %v", tok, err)
		}
	}
	if n := count(t, s, "SELECT count() FROM "+s.table("audit")) - before; n != uint64(2*len(evs)) {
		t.Fatalf("audit gained %d rows, want %d (each call twice)", n, 2*len(evs))
	}
}

// wantCalls is Calls computed in Go: the calls of evs in [since, until)
// matching keep, newest first, at most limit.
func wantCalls(evs []recorder.Event, since, until time.Time, limit int, keep func(recorder.Event) bool) []string {
	var in []recorder.Event
	for _, e := range evs {
		if (!since.IsZero() && e.TimeNs < since.UnixNano()) || (!until.IsZero() && e.TimeNs >= until.UnixNano()) || (keep != nil && !keep(e)) {
			continue
		}
		in = append(in, e)
	}
	slices.SortFunc(in, func(a, b recorder.Event) int {
		if a.TimeNs != b.TimeNs {
			return -cmp.Compare(a.TimeNs, b.TimeNs)
		}
		return cmp.Compare(a.EventID, b.EventID)
	})
	var ids []string
	for _, e := range in[:min(limit, len(in))] {
		ids = append(ids, e.RequestID)
	}
	return ids
}

func callIDs(t *testing.T, s *Store, q CallsQuery) []string {
	t.Helper()
	calls, err := s.Calls(context.Background(), q)
	if err != nil {
		t.Fatalf("Calls(%+v): %v", q, err)
	}
	var ids []string
	for _, c := range calls {
		ids = append(ids, c.RequestID)
	}
	return ids
}

// TestCallsWindows: Calls reads windows of time backwards (1 h, 6 h, 1 d,
// 7 d, 30 d, 90 d, 365 d, then the rest) and stops once the page is full.
// Pages that span several windows, skip empty ones, end exactly at a
// window's end, and start or stop exactly at Since (inclusive) or Until
// (exclusive) list the same calls, in the same order, as sorting them all;
// each call once although every row is stored twice.
func TestCallsWindows(t *testing.T) {
	s := migratedStore(t)
	until := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	day := 24 * time.Hour
	var ats []time.Time
	for _, off := range []time.Duration{
		-10 * time.Minute, -30 * time.Minute, -30 * time.Minute, // first hour; two at the same time
		-time.Hour,                   // exactly at the first window's start
		-3 * time.Hour,               // 6 h window; nothing in the 1 d window
		-3 * day, -3 * day, -5 * day, // 7 d window
		-20 * day, -100 * day, -400 * day, -1000 * day,
		0,               // at until: excluded when until is given
		2 * time.Minute, // after until (a clock ahead)
	} {
		ats = append(ats, until.Add(off))
	}
	evs := callEvents("c", ats)
	writeTwice(t, s, evs)
	tests := []struct {
		name         string
		since, until time.Time
		limit        int
	}{
		{"one window", time.Time{}, until, 2},
		{"limit reached exactly at a window's end", time.Time{}, until, 3},
		{"page spans windows, across an empty one", time.Time{}, until, 6},
		{"everything", time.Time{}, until, 100},
		{"no until", time.Time{}, time.Time{}, 100},
		{"since inclusive", until.Add(-3 * day), until, 100},
		{"since between windows", until.Add(-4 * day), until, 100},
		{"since inside the first window", until.Add(-30 * time.Minute), until, 100},
		{"since and until inside one old window", until.Add(-401 * day), until.Add(-19 * day), 100},
		{"until exclusive, at a row", time.Time{}, until.Add(-3 * day), 100},
		{"nothing in range", until.Add(-2 * day), until.Add(-day), 100},
		{"limit 1", time.Time{}, until.Add(-6 * time.Hour), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := CallsQuery{Since: tt.since, Until: tt.until, Limit: tt.limit}
			got, want := callIDs(t, s, q), wantCalls(evs, tt.since, tt.until, tt.limit, nil)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Calls(since %v, until %v, limit %d) = %v, want %v", tt.since, tt.until, tt.limit, got, want)
			}
		})
	}
	t.Run("filters", func(t *testing.T) {
		denied := func(e recorder.Event) bool { return e.AuthDecision == "denied" }
		if got, want := callIDs(t, s, CallsQuery{Until: until, Decision: "denied"}), wantCalls(evs, time.Time{}, until, 100, denied); !reflect.DeepEqual(got, want) {
			t.Errorf("Calls(denied) = %v, want %v", got, want)
		}
		p1 := func(e recorder.Event) bool { return e.Principal == "p1" && e.Outcome != recorder.OutcomeOK }
		if got, want := callIDs(t, s, CallsQuery{Principal: "p1", FailedOnly: true}), wantCalls(evs, time.Time{}, time.Time{}, 100, p1); !reflect.DeepEqual(got, want) {
			t.Errorf("Calls(p1 failed) = %v, want %v", got, want)
		}
	})
}

// TestReadDuplicatesExact: with every call stored twice in two unmerged
// parts, Calls and Audit return each call once, the right number of them,
// in order, also when the copies fill the rows read beyond the page and
// the read must be repeated with more.
func TestReadDuplicatesExact(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	ats := make([]time.Time, 500)
	for i := range ats {
		ats[i] = base.Add(time.Duration(i) * 7 * time.Second)
	}
	evs := callEvents("c", ats)
	writeTwice(t, s, evs)
	for _, limit := range []int{1, 100, 499, 500, 1000} {
		if got, want := callIDs(t, s, CallsQuery{Limit: limit}), wantCalls(evs, time.Time{}, time.Time{}, limit, nil); !reflect.DeepEqual(got, want) {
			t.Errorf("Calls(limit %d) = %d calls %v..., want %d", limit, len(got), got[:min(len(got), 5)], len(want))
		}
	}
	// Audit: by principal, then time.
	sorted := slices.Clone(evs)
	slices.SortFunc(sorted, func(a, b recorder.Event) int {
		if a.Principal != b.Principal {
			return cmp.Compare(a.Principal, b.Principal)
		}
		return cmp.Compare(a.TimeNs, b.TimeNs)
	})
	var all []string
	for _, e := range sorted {
		all = append(all, e.RequestID)
	}
	for _, limit := range []int{0, 1, 200, 500, 600} {
		var got []string
		if err := s.Audit(ctx, AuditQuery{Limit: limit}, func(r AuditRow) error { got = append(got, r.RequestID); return nil }); err != nil {
			t.Fatal(err)
		}
		want := all
		if limit > 0 {
			want = all[:min(limit, len(all))]
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Audit(limit %d) = %d rows, want %d", limit, len(got), len(want))
		}
	}
	// A call written while a page is read, sorting before the rows read
	// already: the rest of the page is read after the last row kept, so
	// that no row repeats and none is skipped.
	var got []string
	late := callEvents("late", []time.Time{base.Add(-time.Hour)}) // p0's first call
	err := s.Audit(ctx, AuditQuery{Limit: 200}, func(r AuditRow) error {
		if len(got) == 0 {
			if err := s.WriteBatch(ctx, "late", late); err != nil {
				return err
			}
		}
		got = append(got, r.RequestID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := all[:200]; !reflect.DeepEqual(got, want) {
		t.Errorf("Audit(limit 200) with a row written meanwhile = %d rows, want %d; first difference at %d", len(got), len(want), firstMismatch(got, want))
	}
	// An error from emit comes back as it is, and stops the stream.
	stop := fmt.Errorf("stop")
	n := 0
	if err := s.Audit(ctx, AuditQuery{}, func(AuditRow) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Audit with a failing emit = %v after %d rows, want %v after 1", err, n, stop)
	}
}

func TestNewestFirst(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	h := time.Hour
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name         string
		since, until time.Time
		want         []window
	}{
		{"no bounds", time.Time{}, time.Time{}, []window{
			{at(h), time.Time{}}, {at(6 * h), at(h)}, {at(24 * h), at(6 * h)}, {at(7 * 24 * h), at(24 * h)},
			{at(30 * 24 * h), at(7 * 24 * h)}, {at(90 * 24 * h), at(30 * 24 * h)}, {at(365 * 24 * h), at(90 * 24 * h)},
			{time.Time{}, at(365 * 24 * h)}}},
		{"since within the first hour", at(30 * time.Minute), time.Time{}, []window{{at(30 * time.Minute), time.Time{}}}},
		{"since at a window's start", at(6 * h), now, []window{{at(h), now}, {at(6 * h), at(h)}}},
		{"since between", at(2 * 24 * h), now, []window{{at(h), now}, {at(6 * h), at(h)}, {at(24 * h), at(6 * h)}, {at(2 * 24 * h), at(24 * h)}}},
	}
	for _, tt := range tests {
		if got := newestFirst(tt.since, tt.until, now); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: newestFirst = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAuditPages: a page of audit rows, one query ordered by principal,
// ts_ns and event_id without FINAL, lists the same rows as sorting them all
// with FINAL (legacyReader): across principals, with Since and Until inside
// a day, a role filter, filters on principal, decision, tool and rule, and
// a batch written twice.
func TestAuditPages(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	now := time.Now().UTC()
	spread := func(prefix string, n int, span time.Duration) []recorder.Event {
		ats := make([]time.Time, n)
		for i := range ats {
			ats[i] = now.Add(-time.Duration(i) * span / time.Duration(n))
		}
		return callEvents(prefix, ats)
	}
	if err := s.WriteBatch(ctx, "old", spread("old", 1500, 50*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, "new", spread("new", 600, 20*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	writeTwice(t, s, spread("dup", 300, 10*24*time.Hour))
	day := 24 * time.Hour
	for _, q := range []AuditQuery{
		{Since: now.Add(-30 * day)},
		{Since: now.Add(-90 * day)},
		{},
		{Since: now.Add(-45*day - 7*time.Hour), Until: now.Add(-3*day + 5*time.Hour)},
		{Since: now.Add(-90 * day), Role: "r1"},
		{Since: now.Add(-90 * day), Principal: "p2", Decision: "allowed"},
		{Since: now.Add(-90 * day), Tool: "s0.*", Rule: "token:p0"},
		{Since: now.Add(-90 * day), Principal: "nobody"},
	} {
		for _, limit := range []int{1, 17, 200, 700, 5000} {
			q.Limit = limit
			got, want := auditIDs(t, s, q), auditIDs(t, legacyReader{s}, q)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Audit(%+v) = %d rows, want %d (from FINAL); first difference at %d", q, len(got), len(want), firstMismatch(got, want))
			}
		}
	}
}

// TestReadTies: events sharing one ts_ns, every one stored twice in two
// unmerged parts, paged by Calls and Audit with limits that end inside,
// and exactly at the end of, a run of equal ts_ns: the same events in the
// same order as a FINAL read. Each page is read on after the last row kept
// (ts_ns, event_id, and principal for Audit) because the copies leave the
// first read short (it asks limit + limit/8 + 16 rows, half of them
// copies), so a continuation that compared ts_ns alone would skip or
// repeat rows of the tie.
func TestReadTies(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	newer := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second).Add(123456789 * time.Nanosecond)
	older := newer.Add(-3 * time.Hour) // another of Calls' windows
	var evs []recorder.Event
	for _, g := range []struct {
		prefix string
		at     time.Time
	}{{"a", newer}, {"b", older}} {
		ats := make([]time.Time, 60)
		for i := range ats {
			ats[i] = g.at
		}
		evs = append(evs, callEvents(g.prefix, ats)...)
	}
	writeTwice(t, s, evs)
	for _, limit := range []int{1, 30, 50, 59, 60, 61, 90, 119, 120, 200} {
		q := CallsQuery{Limit: limit}
		got := callIDs(t, s, q)
		want, err := legacyReader{s}.Calls(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		for _, c := range want {
			wantIDs = append(wantIDs, c.RequestID)
		}
		if len(wantIDs) != min(limit, 120) {
			t.Fatalf("FINAL read of %d calls = %d", limit, len(wantIDs))
		}
		if !reflect.DeepEqual(got, wantIDs) {
			t.Errorf("Calls(limit %d) = %d calls, want %d (from FINAL); first difference at %d", limit, len(got), len(wantIDs), firstMismatch(got, wantIDs))
		}
		aq := AuditQuery{Limit: limit}
		if got, want := auditIDs(t, s, aq), auditIDs(t, legacyReader{s}, aq); !reflect.DeepEqual(got, want) || len(want) != min(limit, 120) {
			t.Errorf("Audit(limit %d) = %d rows, want %d (from FINAL); first difference at %d", limit, len(got), len(want), firstMismatch(got, want))
		}
		// One principal: its 40 rows, 20 at each ts_ns.
		aq.Principal = "p1"
		if got, want := auditIDs(t, s, aq), auditIDs(t, legacyReader{s}, aq); !reflect.DeepEqual(got, want) || len(want) != min(limit, 40) {
			t.Errorf("Audit(p1, limit %d) = %d rows, want %d (from FINAL); first difference at %d", limit, len(got), len(want), firstMismatch(got, want))
		}
	}
}

func auditIDs(t *testing.T, r pageReader, q AuditQuery) []string {
	t.Helper()
	var ids []string
	if err := r.Audit(context.Background(), q, func(r AuditRow) error { ids = append(ids, r.RequestID); return nil }); err != nil {
		t.Fatalf("Audit(%+v): %v", q, err)
	}
	return ids
}

func firstMismatch(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// queryLog records the queries a Store sends through it.
type queryLog struct {
	driver.Conn
	queries []string
	args    [][]any
}

func (l *queryLog) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	l.queries, l.args = append(l.queries, query), append(l.args, args)
	return l.Conn.Query(ctx, query, args...)
}

// TestAuditPrincipalBound: a page of everyone's audit rows is read first
// under principal <= the principal at which the rows per principal, counted
// in order without FINAL, reach the page, then on without the bound when
// copies leave the rows under it short. Principals pa (50 calls), pb (30,
// stored twice), pc (20), pd (100, stored twice), pe (7): the same rows as
// a FINAL read for pages that end inside a principal, exactly at its last
// row, span several principals, run past a bound that the copies made too
// tight (pb's 60 rows count for 30), or exceed every row; with filters that
// leave few rows. Where the counts are exact, the page takes a single
// query under the expected principal.
func TestAuditPrincipalBound(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	now := time.Now().UTC()
	group := func(p string, n int) []recorder.Event {
		ats := make([]time.Time, n)
		for i := range ats {
			ats[i] = now.Add(-time.Duration(i*37%n) * 3 * time.Hour)
		}
		return principalEvents(p, ats)
	}
	for _, g := range []struct {
		p     string
		n     int
		twice bool
	}{{"pa", 50, false}, {"pb", 30, true}, {"pc", 20, false}, {"pd", 100, true}, {"pe", 7, false}} {
		evs := group(g.p, g.n)
		if g.twice {
			writeTwice(t, s, evs)
		} else if err := s.WriteBatch(ctx, g.p, evs); err != nil {
			t.Fatal(err)
		}
	}
	day := 24 * time.Hour
	for _, q := range []AuditQuery{
		{},
		{Since: now.Add(-90 * day)},
		{Since: now.Add(-5 * day), Until: now.Add(-2*day + 7*time.Hour)},
		{Decision: "denied"},
		{Tool: "s1.*"},
		{Role: "r1", Rule: "token:p1"},
		{Principal: "pb"},
		{Principal: "nobody"},
	} {
		for _, limit := range []int{1, 7, 10, 49, 50, 51, 79, 80, 81, 100, 110, 130, 131, 150, 206, 207, 500} {
			q.Limit = limit
			got, want := auditIDs(t, s, q), auditIDs(t, legacyReader{s}, q)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Audit(%+v) = %d rows, want %d (from FINAL); first difference at %d", q, len(got), len(want), firstMismatch(got, want))
			}
		}
	}
	// Where the counts are exact (pa's rows are stored once), the first
	// query answers the page, under the principal whose rows reach it.
	log := &queryLog{Conn: s.conn}
	s.conn = log
	defer func() { s.conn = log.Conn }()
	for _, c := range []struct {
		q     AuditQuery
		bound string
	}{
		{AuditQuery{Limit: 1}, "pa"},
		{AuditQuery{Limit: 50}, "pa"},                     // pa's rows exactly
		{AuditQuery{Limit: 51}, "pb"},                     // pb's counts 60, its events 30
		{AuditQuery{Decision: "denied", Limit: 10}, "pa"}, // pa's 10 denied
	} {
		log.queries, log.args = nil, nil
		if got, want := auditIDs(t, s, c.q), auditIDs(t, legacyReader{s}, c.q); !reflect.DeepEqual(got, want) {
			t.Errorf("Audit(%+v) = %d rows, want %d (from FINAL)", c.q, len(got), len(want))
		}
		// Audit's queries, then legacyReader's one.
		if n := len(log.queries) - 1; n != 2 {
			t.Errorf("Audit(%+v) took %d queries, want 2 (the counts, the page): %q", c.q, n, log.queries[:max(n, 0)])
			continue
		}
		if args := log.args[1]; len(args) == 0 || args[len(args)-1] != c.bound {
			t.Errorf("Audit(%+v) read under %v, want principal <= %q", c.q, args, c.bound)
		}
	}
}

func TestReachPrincipal(t *testing.T) {
	counts := []principalCount{{"a", 3}, {"b", 2}, {"c", 5}}
	for _, tt := range []struct {
		n    int
		want string
		ok   bool
	}{{1, "a", true}, {3, "a", true}, {4, "b", true}, {5, "b", true}, {6, "c", true}, {10, "c", true}, {11, "", false}} {
		if got, ok := reachPrincipal(counts, tt.n); got != tt.want || ok != tt.ok {
			t.Errorf("reachPrincipal(%d) = %q, %v; want %q, %v", tt.n, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := reachPrincipal(nil, 1); ok {
		t.Error("reachPrincipal of no principals found one")
	}
}

// failingCounts fails the per-principal count query, as a server's memory
// or time limit would.
type failingCounts struct{ queryLog }

func (f *failingCounts) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	if strings.Contains(query, "GROUP BY principal") {
		f.queries = append(f.queries, query)
		return nil, errors.New("code: 241, memory limit exceeded")
	}
	return f.queryLog.Query(ctx, query, args...)
}

// TestAuditPrincipalBoundOddPrincipals: principals that are empty (no
// authentication), or hold a NUL or a 0xff byte, bound a page like any
// other (ClickHouse compares the bound and sorts byte by byte); a page
// whose count query fails is read without the bound, not refused.
func TestAuditPrincipalBoundOddPrincipals(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	now := time.Now().UTC()
	for i, g := range []struct {
		p     string
		n     int
		twice bool
	}{{"", 12, true}, {"\x00a", 9, false}, {"a", 5, true}, {"a\xff", 8, false}, {"b", 6, false}} {
		ats := make([]time.Time, g.n)
		for j := range ats {
			ats[j] = now.Add(-time.Duration(j) * time.Hour)
		}
		evs := callEvents(fmt.Sprintf("g%d-", i), ats)
		for j := range evs {
			evs[j].Principal = g.p
		}
		if g.twice {
			writeTwice(t, s, evs)
		} else if err := s.WriteBatch(ctx, fmt.Sprintf("g%d", i), evs); err != nil {
			t.Fatal(err)
		}
	}
	for limit := 1; limit <= 41; limit++ {
		q := AuditQuery{Limit: limit}
		got, want := auditIDs(t, s, q), auditIDs(t, legacyReader{s}, q)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Audit(limit %d) = %d rows, want %d (from FINAL); first difference at %d", limit, len(got), len(want), firstMismatch(got, want))
		}
	}
	// The empty principal's 12 events (24 rows) bound a page of 20 under
	// principal <= ''.
	log := &queryLog{Conn: s.conn}
	s.conn = log
	got, want := auditIDs(t, s, AuditQuery{Limit: 20}), auditIDs(t, legacyReader{s}, AuditQuery{Limit: 20})
	s.conn = log.Conn
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Audit(limit 20) = %d rows, want %d (from FINAL)", len(got), len(want))
	}
	if len(log.args) < 2 || len(log.args[1]) == 0 || log.args[1][len(log.args[1])-1] != "" {
		t.Errorf("Audit(limit 20) queries %q with %v, want the page under principal <= ''", log.queries, log.args)
	}
	// The principal sought is among the first 20: the counts stop there.
	if len(log.queries) == 0 || !strings.HasSuffix(log.queries[0], "LIMIT 20") {
		t.Errorf("count query %q, want it limited to the page's 20 principals", log.queries)
	}
	fail := &failingCounts{queryLog{Conn: s.conn}}
	s.conn = fail
	got = auditIDs(t, s, AuditQuery{Limit: 30})
	s.conn = fail.Conn
	if want := auditIDs(t, legacyReader{s}, AuditQuery{Limit: 30}); !reflect.DeepEqual(got, want) {
		t.Errorf("Audit(limit 30) with the counts failing = %d rows, want %d (from FINAL)", len(got), len(want))
	}
	if len(fail.queries) != 2 || strings.Contains(fail.queries[1], "principal <=") {
		t.Errorf("with the counts failing, queries %q; want the counts, then the page without a bound", fail.queries)
	}
}
