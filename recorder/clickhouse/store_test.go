package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Println("goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// openStore opens a store on the shared local server in a fresh database,
// dropped when the test ends. It does not migrate.
func openStore(t testing.TB, retention Retention) *Store {
	t.Helper()
	srv := chtest.Shared(t)
	cfg := DefaultConfig()
	cfg.Addr = []string{srv.Addr()}
	cfg.Database = chtest.Database(t, srv.Addr())
	cfg.Retention = retention
	s, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func migratedStore(t testing.TB) *Store {
	t.Helper()
	s := openStore(t, DefaultRetention())
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func count(t testing.TB, s *Store, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestFeaturesLocalServer(t *testing.T) {
	s := openStore(t, DefaultRetention())
	f := s.Features()
	if f.Version == "" {
		t.Fatal("Features().Version is empty")
	}
	// The local server is 18.16 on every machine we control; the detection
	// must then report the base feature set, or the DDL would not run.
	if versionAtLeast(f.Version, 19, 0) {
		t.Logf("server %s is newer than 18.16; features %+v", f.Version, f)
		return
	}
	want := BaseFeatures()
	want.Version = f.Version
	if f != want {
		t.Errorf("Features() on %s = %+v, want %+v", f.Version, f, want)
	}
}

func TestMigrateFreshRerunUpgrade(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, DefaultRetention())
	db := s.cfg.Database

	// Install v1 only, as a gateway of the previous release would have.
	if err := s.migrateTo(ctx, 1); err != nil {
		t.Fatalf("migrate to v1: %v", err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != 1 {
		t.Fatalf("SchemaVersion after v1 = %d, %v; want 1", v, err)
	}
	colQ := "SELECT count() FROM system.columns WHERE database = ? AND table = 'hops' AND name = 'redaction_version'"
	if n := count(t, s, colQ, db); n != 0 {
		t.Fatalf("v1 hops already has redaction_version")
	}
	// A row written by v1.
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+db+".hops (event_id, request_id, hop, ts, ts_ns)")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := b.Append("e-old", "r-old", "inbound", now, uint64(now.UnixNano())); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	// Upgrade.
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("upgrade from v1: %v", err)
	}
	latest := migrations[len(migrations)-1].Version
	if v, _ := s.SchemaVersion(ctx); v != latest {
		t.Fatalf("SchemaVersion after upgrade = %d, want %d", v, latest)
	}
	if n := count(t, s, colQ, db); n != 1 {
		t.Fatalf("upgrade did not add hops.redaction_version")
	}
	if n := count(t, s, "SELECT count() FROM "+db+".hops WHERE event_id = 'e-old' AND redaction_count = 0"); n != 1 {
		t.Fatalf("v1 row after upgrade: count = %d, want 1", n)
	}

	// Re-run: a no-op that records nothing new.
	before := count(t, s, "SELECT count() FROM "+db+".schema_migrations")
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("re-running Migrate: %v", err)
	}
	if after := count(t, s, "SELECT count() FROM "+db+".schema_migrations"); after != before {
		t.Fatalf("schema_migrations rows %d -> %d after a no-op Migrate", before, after)
	}

	// A guarded ADD COLUMN re-run after a crash between the ALTER and the
	// record: forget v2 and migrate again.
	if err := s.conn.Exec(ctx, "ALTER TABLE "+db+".schema_migrations DELETE WHERE version = 2"); err != nil {
		// 18.16 supports mutations; wait for it to apply below.
		t.Fatalf("forgetting v2: %v", err)
	}
	waitMutations(t, s, "schema_migrations")
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("re-applying v2 over existing columns: %v", err)
	}
}

func waitMutations(t *testing.T, s *Store, table string) {
	t.Helper()
	for range 100 {
		if count(t, s, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND NOT is_done", s.cfg.Database, table) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("mutation on %s did not finish", table)
}

func TestMigrateFresh(t *testing.T) {
	s := migratedStore(t)
	for _, table := range []string{"hops", "payloads", "request_index", "audit", "write_tokens", "replay_runs", "replay_results", "schema_migrations", "request_index_mv"} {
		if n := count(t, s, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, table); n != 1 {
			t.Errorf("table %s missing after Migrate", table)
		}
	}
}

// fixture: three requests at base, base+1s, base+2s.
//
//	r1: alice, crm.search, tool error, trace T, session S1, payloads
//	r2: alice, crm.get, ok, trace T, session S1
//	r3: bob, git.push, denied by policy, session S2
func fixture(base time.Time) []recorder.Event {
	const trace = "0af7651916cd43dd8448eb211c80319c"
	mk := func(req string, i int, hop recorder.Hop, seq uint32, off time.Duration) recorder.Event {
		return recorder.Event{
			EventID: fmt.Sprintf("%s-e%d", req, i), RequestID: req, Hop: hop, Seq: seq,
			TimeNs: base.Add(off).UnixNano(), Method: "tools/call", GatewayInstance: "gw-1", GatewayVersion: "0.1.0",
		}
	}
	var evs []recorder.Event
	// r1
	in := mk("r1", 0, recorder.HopInbound, 0, 0)
	in.SessionID, in.TraceID, in.SpanID, in.Target, in.Server, in.RPCID = "S1", trace, "00f067aa0ba902b7", "crm.search", "crm", "1"
	in.ClientName, in.ClientVersion, in.ProtocolVersion = "claude", "1.2", "2025-06-18"
	in.Params, in.ParamsSHA256 = []byte(`{"name":"crm.search","arguments":{"q":"acme"}}`), "aa"
	in.Attrs = []recorder.Attr{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}}
	auth := mk("r1", 1, recorder.HopAuth, 1, time.Millisecond)
	auth.SessionID, auth.TraceID, auth.Principal, auth.AuthDecision, auth.AuthRule = "S1", trace, "alice", "allowed", "token:alice"
	up := mk("r1", 2, recorder.HopUpstream, 2, 2*time.Millisecond)
	up.SessionID, up.TraceID, up.Server, up.Target, up.Backend, up.Attempt, up.Fallback = "S1", trace, "crm", "crm.search", "crm-a", 1, true
	up.DurationUs, up.ConnectUs, up.TTFBUs, up.QueueUs, up.UpstreamVersion = 4000, 100, 3000, 50, "2025-03-26"
	up.RedactionVersion, up.RedactionCount, up.RequestBytes, up.ResponseBytes = "r7", 2, 120, 900
	resp := mk("r1", 3, recorder.HopResponse, 3, 7*time.Millisecond)
	resp.SessionID, resp.TraceID, resp.Server, resp.Target, resp.Principal = "S1", trace, "crm", "crm.search", "alice"
	resp.Outcome, resp.ErrorMessage, resp.DurationUs = recorder.OutcomeToolError, "no such account", 7000
	resp.Result, resp.ResultSHA256, resp.PayloadTruncated = []byte(`{"isError":true}`), "bb", true
	evs = append(evs, in, auth, up, resp)
	// r2
	in2 := mk("r2", 0, recorder.HopInbound, 0, time.Second)
	in2.SessionID, in2.TraceID, in2.Target, in2.Server, in2.Principal = "S1", trace, "crm.get", "crm", "alice"
	resp2 := mk("r2", 1, recorder.HopResponse, 1, time.Second+3*time.Millisecond)
	resp2.SessionID, resp2.TraceID, resp2.DurationUs = "S1", trace, 3000
	evs = append(evs, in2, resp2)
	// r3
	in3 := mk("r3", 0, recorder.HopInbound, 0, 2*time.Second)
	in3.SessionID, in3.Target, in3.Server = "S2", "git.push", "git"
	auth3 := mk("r3", 1, recorder.HopAuth, 1, 2*time.Second+time.Millisecond)
	auth3.SessionID, auth3.Principal, auth3.AuthDecision, auth3.AuthRule, auth3.Outcome = "S2", "bob", "denied", "deny:git.*", recorder.OutcomeDenied
	resp3 := mk("r3", 2, recorder.HopResponse, 2, 2*time.Second+2*time.Millisecond)
	resp3.SessionID, resp3.Outcome, resp3.ErrorCode, resp3.ErrorMessage = "S2", recorder.OutcomeDenied, -32001, "denied by policy"
	evs = append(evs, in3, auth3, resp3)
	return evs
}

func eventsOf(evs []recorder.Event, req string) []recorder.Event {
	var out []recorder.Event
	for _, e := range evs {
		if e.RequestID == req {
			out = append(out, e)
		}
	}
	return out
}

func stripPayloads(evs []recorder.Event) []recorder.Event {
	out := make([]recorder.Event, len(evs))
	for i, e := range evs {
		e.Params, e.Result, e.PayloadTruncated, e.ParamsSHA256, e.ResultSHA256 = nil, nil, false, "", ""
		out[i] = e
	}
	return out
}

func diffEvents(t *testing.T, what string, got, want []recorder.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d: %+v", what, len(got), len(want), got)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: event %d =\n %+v\nwant\n %+v", what, i, got[i], want[i])
		}
	}
}

func TestWriteAndRead(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	evs := fixture(base)
	if err := s.WriteBatch(ctx, "batch-1", evs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}

	t.Run("trace by request id with payloads", func(t *testing.T) {
		got, err := s.Trace(ctx, "r1", WithPayloads())
		if err != nil {
			t.Fatal(err)
		}
		diffEvents(t, "Trace(r1)", got, eventsOf(evs, "r1"))
	})
	t.Run("trace by request id without payloads", func(t *testing.T) {
		got, err := s.Trace(ctx, "r3")
		if err != nil {
			t.Fatal(err)
		}
		diffEvents(t, "Trace(r3)", got, stripPayloads(eventsOf(evs, "r3")))
	})
	t.Run("trace by trace id spans requests in order", func(t *testing.T) {
		got, err := s.Trace(ctx, "0af7651916cd43dd8448eb211c80319c")
		if err != nil {
			t.Fatal(err)
		}
		want := stripPayloads(append(eventsOf(evs, "r1"), eventsOf(evs, "r2")...))
		diffEvents(t, "Trace(trace)", got, want)
	})
	t.Run("unknown id", func(t *testing.T) {
		if _, err := s.Trace(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Trace(nope) err = %v, want ErrNotFound", err)
		}
	})

	callTests := []struct {
		name string
		q    CallsQuery
		want []string // request ids, newest first
	}{
		{"all", CallsQuery{}, []string{"r3", "r2", "r1"}},
		{"failed", CallsQuery{FailedOnly: true}, []string{"r3", "r1"}},
		{"tool glob", CallsQuery{Tool: "crm.*"}, []string{"r2", "r1"}},
		{"tool glob ?", CallsQuery{Tool: "crm.ge?"}, []string{"r2"}},
		{"server", CallsQuery{Server: "git"}, []string{"r3"}},
		{"principal", CallsQuery{Principal: "alice"}, []string{"r2", "r1"}},
		{"window", CallsQuery{Since: base.Add(500 * time.Millisecond), Until: base.Add(1500 * time.Millisecond)}, []string{"r2"}},
		{"limit", CallsQuery{Limit: 1}, []string{"r3"}},
		{"underscore is literal", CallsQuery{Tool: "crm_search"}, nil},
	}
	for _, tt := range callTests {
		t.Run("calls "+tt.name, func(t *testing.T) {
			got, err := s.Calls(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range got {
				ids = append(ids, c.RequestID)
			}
			if !reflect.DeepEqual(ids, tt.want) {
				t.Fatalf("Calls(%+v) = %v, want %v", tt.q, ids, tt.want)
			}
		})
	}
	t.Run("call fields", func(t *testing.T) {
		got, err := s.Calls(ctx, CallsQuery{Server: "crm", FailedOnly: true})
		if err != nil || len(got) != 1 {
			t.Fatalf("Calls = %v, %v", got, err)
		}
		want := Call{Time: base.Add(7 * time.Millisecond), RequestID: "r1", SessionID: "S1", TraceID: "0af7651916cd43dd8448eb211c80319c",
			Principal: "alice", Method: "tools/call", Server: "crm", Target: "crm.search", Outcome: recorder.OutcomeToolError,
			ErrorMessage: "no such account", Duration: 7 * time.Millisecond}
		if got[0] != want {
			t.Fatalf("Calls()[0] = %+v, want %+v", got[0], want)
		}
	})

	auditTests := []struct {
		name string
		q    AuditQuery
		want []string // "principal decision rule target outcome"
	}{
		{"alice", AuditQuery{Principal: "alice"}, []string{"alice allowed token:alice crm.search tool_error", "alice   crm.get ok"}},
		{"denied", AuditQuery{Decision: "denied"}, []string{"bob denied deny:git.* git.push denied"}},
		{"glob", AuditQuery{Tool: "git.*"}, []string{"bob denied deny:git.* git.push denied"}},
		{"window empty", AuditQuery{Since: base.Add(time.Hour)}, nil},
	}
	for _, tt := range auditTests {
		t.Run("audit "+tt.name, func(t *testing.T) {
			var got []string
			err := s.Audit(ctx, tt.q, func(r AuditRow) error {
				got = append(got, fmt.Sprintf("%s %s %s %s %s", r.Principal, r.Decision, r.Rule, r.Target, r.Outcome))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Audit(%+v) = %q, want %q", tt.q, got, tt.want)
			}
		})
	}
	t.Run("audit emit error stops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := s.Audit(ctx, AuditQuery{}, func(AuditRow) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Audit with failing emit: err = %v after %d rows, want stop after 1", err, n)
		}
	})

	selTests := []struct {
		name string
		sel  Selection
		want []string // request ids of the returned events, deduplicated in order
	}{
		{"ids", Selection{RequestIDs: []string{"r3", "r1"}}, []string{"r1", "r3"}},
		{"session", Selection{SessionID: "S1"}, []string{"r1", "r2"}},
		{"session failed", Selection{SessionID: "S1", FailedOnly: true}, []string{"r1"}},
		{"trace", Selection{TraceID: "0af7651916cd43dd8448eb211c80319c", Tool: "crm.get"}, []string{"r2"}},
		{"window server", Selection{Since: base.Add(-time.Minute), Server: "git"}, []string{"r3"}},
		{"window principal", Selection{Since: base.Add(-time.Minute), Principal: "alice"}, []string{"r1", "r2"}},
		{"nothing", Selection{RequestIDs: []string{"zz"}}, nil},
	}
	for _, tt := range selTests {
		t.Run("select "+tt.name, func(t *testing.T) {
			got, err := s.Select(ctx, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range got {
				if len(ids) == 0 || ids[len(ids)-1] != e.RequestID {
					ids = append(ids, e.RequestID)
				}
			}
			if !reflect.DeepEqual(ids, tt.want) {
				t.Fatalf("Select(%+v) requests = %v, want %v", tt.sel, ids, tt.want)
			}
		})
	}
	t.Run("select has payloads", func(t *testing.T) {
		got, err := s.Select(ctx, Selection{RequestIDs: []string{"r1"}})
		if err != nil {
			t.Fatal(err)
		}
		diffEvents(t, "Select(r1)", got, eventsOf(evs, "r1"))
	})
	t.Run("select unbounded", func(t *testing.T) {
		if _, err := s.Select(ctx, Selection{Server: "crm"}); !errors.Is(err, ErrSelectionTooWide) {
			t.Fatalf("Select without ids or since: err = %v, want ErrSelectionTooWide", err)
		}
	})
}

func TestDuplicateBatches(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	evs := fixture(time.Now().UTC().Add(-time.Minute))
	for range 2 {
		if err := s.WriteBatch(ctx, "tok-1", evs); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
	}
	db := s.cfg.Database
	if n := count(t, s, "SELECT count() FROM "+db+".hops"); n != uint64(len(evs)) {
		t.Errorf("hops rows after the same token twice = %d, want %d (token check)", n, len(evs))
	}
	// A crash between the rows and the token: the retry carries a new token
	// and the rows land twice; every read still counts each event once.
	if err := s.WriteBatch(ctx, "tok-2", evs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".hops FINAL"); n != uint64(len(evs)) {
		t.Errorf("hops FINAL rows = %d, want %d", n, len(evs))
	}
	got, err := s.Trace(ctx, "r1", WithPayloads())
	if err != nil {
		t.Fatal(err)
	}
	diffEvents(t, "Trace(r1) after duplicate write", got, eventsOf(evs, "r1"))
	calls, err := s.Calls(ctx, CallsQuery{})
	if err != nil || len(calls) != 3 {
		t.Fatalf("Calls after duplicate write = %d rows (%v), want 3", len(calls), err)
	}
	n := 0
	if err := s.Audit(ctx, AuditQuery{}, func(AuditRow) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("Audit after duplicate write = %d rows (%v), want 3", n, err)
	}
	if err := s.WriteBatch(ctx, "", nil); err != nil {
		t.Fatalf("WriteBatch(empty) = %v", err)
	}
}

func TestDropExpiredPartitions(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Retention{Hops: 30 * 24 * time.Hour, Payloads: 7 * 24 * time.Hour})
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	old := fixture(now.AddDate(0, 0, -40)) // past every retention but audit (forever)
	mid := fixture(now.AddDate(0, 0, -10)) // past payload retention only
	for i := range mid {
		mid[i].EventID, mid[i].RequestID = "m"+mid[i].EventID, "m"+mid[i].RequestID
	}
	if err := s.WriteBatch(ctx, "old", old); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, "mid", mid); err != nil {
		t.Fatal(err)
	}
	n, err := s.dropExpiredPartitions(ctx, now)
	if err != nil {
		t.Fatalf("DropExpiredPartitions: %v", err)
	}
	if n == 0 {
		t.Fatal("DropExpiredPartitions dropped nothing")
	}
	db := s.cfg.Database
	checks := []struct {
		q    string
		want uint64
	}{
		{"SELECT count() FROM " + db + ".hops WHERE request_id LIKE 'r%'", 0},
		{"SELECT count() FROM " + db + ".hops WHERE request_id LIKE 'mr%'", uint64(len(mid))},
		{"SELECT count() FROM " + db + ".payloads", 0},
		{"SELECT count() FROM " + db + ".request_index WHERE request_id LIKE 'r%'", 0},
		{"SELECT count() FROM " + db + ".audit", 6},
	}
	for _, c := range checks {
		if got := count(t, s, c.q); got != c.want {
			t.Errorf("%s = %d, want %d", c.q, got, c.want)
		}
	}
	if n2, err := s.dropExpiredPartitions(ctx, now); err != nil || n2 != 0 {
		t.Errorf("second DropExpiredPartitions = %d, %v; want 0, nil", n2, err)
	}
}

func TestWriteReplayRun(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	run := ReplayRun{ID: "run-1", Started: time.Now().UTC(), Finished: time.Now().UTC(), Mode: "dry-run", Target: "staging", Selection: `{"tool":"crm.*"}`}
	results := []ReplayResult{
		{RequestID: "r1", Tool: "crm.search", Status: ReplayIdentical, OriginalLatency: 7 * time.Millisecond, ReplayLatency: 5 * time.Millisecond},
		{RequestID: "r2", Tool: "crm.get", Status: ReplayChanged, Diff: `[{"op":"replace","path":"/x"}]`},
		{RequestID: "r3", Tool: "crm.get", Status: ReplayFailed, Error: "timeout"},
	}
	if err := s.WriteReplayRun(ctx, run, results); err != nil {
		t.Fatalf("WriteReplayRun: %v", err)
	}
	db := s.cfg.Database
	var total, identical, changed, failed, skipped uint32
	err := s.conn.QueryRow(ctx, "SELECT total, identical, changed, failed, skipped FROM "+db+".replay_runs FINAL WHERE replay_run_id = 'run-1'").
		Scan(&total, &identical, &changed, &failed, &skipped)
	if err != nil {
		t.Fatal(err)
	}
	if got := [5]uint32{total, identical, changed, failed, skipped}; got != [5]uint32{3, 1, 1, 1, 0} {
		t.Errorf("replay_runs counts = %v, want [3 1 1 1 0]", got)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".replay_results WHERE replay_run_id = 'run-1' AND status = 'changed' AND diff != ''"); n != 1 {
		t.Errorf("changed results with diff = %d, want 1", n)
	}
	if err := s.WriteReplayRun(ctx, run, []ReplayResult{{RequestID: "x", Status: "weird"}}); err == nil {
		t.Error("WriteReplayRun accepted an unknown status")
	}
}

// TestAuditRefusedRequest: a request refused before it became a call (bad
// bearer token) leaves only a denied auth hop; it must still be audited.
func TestAuditRefusedRequest(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	ts := time.Now().UTC().Add(-time.Minute)
	ev := recorder.Event{EventID: "e-401", RequestID: "r-401", Hop: recorder.HopAuth, TimeNs: ts.UnixNano(),
		AuthDecision: "denied", AuthRule: "unknown bearer token", Outcome: recorder.OutcomeDenied, ErrorCode: -32001,
		ErrorMessage: "unknown bearer token"}
	// A call-path denial: auth hop with a method, then a response hop; it
	// must be audited once, from the response.
	deny := fixture(ts)[6:9] // r3
	if err := s.WriteBatch(ctx, "t", append([]recorder.Event{ev}, deny...)); err != nil {
		t.Fatal(err)
	}
	calls, err := s.Calls(ctx, CallsQuery{FailedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range calls {
		ids = append(ids, c.RequestID+":"+c.Outcome.String())
	}
	if want := []string{"r3:denied", "r-401:denied"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("Calls(failed) = %v, want %v", ids, want)
	}
	var rules []string
	if err := s.Audit(ctx, AuditQuery{Decision: "denied"}, func(r AuditRow) error { rules = append(rules, r.Rule); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"unknown bearer token", "deny:git.*"}; !reflect.DeepEqual(rules, want) {
		t.Fatalf("Audit(denied) rules = %q, want %q", rules, want)
	}
}

// TestGlobToLikeOnServer checks the escaping against the server's own LIKE
// (18.16 here), through the driver's parameter binding.
func TestGlobToLikeOnServer(t *testing.T) {
	s := openStore(t, DefaultRetention())
	for _, tt := range globTests {
		for _, str := range append(append([]string(nil), tt.match...), tt.noMatch...) {
			want := slices.Contains(tt.match, str)
			var got uint8
			if err := s.conn.QueryRow(context.Background(), "SELECT ? LIKE ?", str, globToLike(tt.glob)).Scan(&got); err != nil {
				t.Fatalf("LIKE %q: %v", globToLike(tt.glob), err)
			}
			if (got == 1) != want {
				t.Errorf("server: %q LIKE %q (glob %q) = %d, want %v", str, globToLike(tt.glob), tt.glob, got, want)
			}
		}
	}
}

// TestAuditRoles: the roles an auth hop recorded (a JWT principal's, from
// auth.oauth.bindings) reach the audit row of the request, with the rule
// that decided, and Audit filters on them. A refusal before routing keeps
// its own hop's roles; a static token's row has none.
func TestAuditRoles(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	evs := fixture(time.Now().UTC().Add(-time.Minute))
	evs[1].Attrs = []recorder.Attr{{Key: recorder.AttrAuthRoles, Value: "support,oncall"}} // r1's auth hop
	evs[7].Attrs = []recorder.Attr{{Key: recorder.AttrAuthRoles, Value: "intern"}}         // r3's denied auth hop
	if err := s.WriteBatch(ctx, "roles", evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    AuditQuery
		want []string // "request rule roles"
	}{
		{"all", AuditQuery{}, []string{"r1 token:alice [support oncall]", "r2  []", "r3 deny:git.* [intern]"}},
		{"role support", AuditQuery{Role: "support"}, []string{"r1 token:alice [support oncall]"}},
		{"role oncall denied", AuditQuery{Role: "oncall", Decision: "denied"}, nil},
		{"role intern", AuditQuery{Role: "intern"}, []string{"r3 deny:git.* [intern]"}},
		{"role is exact", AuditQuery{Role: "on"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := s.Audit(ctx, tt.q, func(r AuditRow) error {
				got = append(got, fmt.Sprintf("%s %s %v", r.RequestID, r.Rule, r.Roles))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Audit(%+v) = %q, want %q", tt.q, got, tt.want)
			}
		})
	}
}
