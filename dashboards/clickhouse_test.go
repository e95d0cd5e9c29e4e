package dashboards

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
	chstore "github.com/mcptrail/mcptrail/recorder/clickhouse"
)

// fixture records, at base, one request per situation the dashboards show,
// with every hop filled the way the proxy fills it (server, target and
// principal on each hop):
//
//	r1 alice crm.search  tool_error
//	r2 alice crm.get     ok
//	r3 bob   git.push    denied by policy (auth hop denied)
//	r4 carol git.status  transport_error on the upstream
//	r5 bob   crm.search  jsonrpc_error -32602
//	r6 -     initialize  ok, answered by the gateway itself (no server)
//	r7 -     -           unknown token: refused before parsing (auth hop only)
func fixture(base time.Time) []recorder.Event {
	type call struct {
		req, principal, method, server, target string
		outcome                                recorder.Outcome
		code                                   int32
		msg                                    string
		upstream                               bool
		decision                               string
		durUs                                  int64
	}
	calls := []call{
		{"r1", "alice", "tools/call", "crm", "crm.search", recorder.OutcomeToolError, 0, "no such account", true, "allowed", 7000},
		{"r2", "alice", "tools/call", "crm", "crm.get", recorder.OutcomeOK, 0, "", true, "allowed", 3000},
		{"r3", "bob", "tools/call", "git", "git.push", recorder.OutcomeDenied, -32001, "denied by policy", false, "denied", 200},
		{"r4", "carol", "tools/call", "git", "git.status", recorder.OutcomeTransportError, -32000, "backend git: connection refused", true, "allowed", 30000},
		{"r5", "bob", "tools/call", "crm", "crm.search", recorder.OutcomeJSONRPCError, -32602, "invalid params", true, "allowed", 5000},
		{"r6", "", "initialize", "", "", recorder.OutcomeOK, 0, "", false, "none", 100},
	}
	var evs []recorder.Event
	for i, c := range calls {
		at := base.Add(time.Duration(i) * 10 * time.Second)
		mk := func(hop recorder.Hop, seq uint32, off time.Duration) recorder.Event {
			return recorder.Event{
				EventID: fmt.Sprintf("%s-e%d", c.req, seq), RequestID: c.req, SessionID: "S-" + c.principal,
				TraceID: "0af7651916cd43dd8448eb211c80319c", Hop: hop, Seq: seq, TimeNs: at.Add(off).UnixNano(),
				Method: c.method, Server: c.server, Target: c.target, Principal: c.principal,
				AuthDecision: c.decision, Backend: c.server, ClientName: "claude", GatewayInstance: "gw-1",
			}
		}
		in := mk(recorder.HopInbound, 0, 0)
		auth := mk(recorder.HopAuth, 1, time.Millisecond)
		auth.AuthRule = "token:" + c.principal
		if c.decision == "denied" {
			auth.Outcome, auth.AuthRule = recorder.OutcomeDenied, "deny:git.*"
		}
		evs = append(evs, in, auth)
		seq := uint32(2)
		if c.upstream {
			up := mk(recorder.HopUpstream, seq, 2*time.Millisecond)
			up.Attempt, up.DurationUs = 1, c.durUs-500
			if c.outcome == recorder.OutcomeTransportError || c.outcome == recorder.OutcomeJSONRPCError {
				up.Outcome, up.ErrorCode, up.ErrorMessage = c.outcome, c.code, c.msg
			}
			evs = append(evs, up)
			seq++
		}
		resp := mk(recorder.HopResponse, seq, time.Duration(c.durUs)*time.Microsecond)
		resp.DurationUs, resp.Outcome, resp.ErrorCode, resp.ErrorMessage = c.durUs, c.outcome, c.code, c.msg
		evs = append(evs, resp)
	}
	refused := recorder.Event{
		EventID: "r7-e0", RequestID: "r7", Hop: recorder.HopAuth, TimeNs: base.Add(70 * time.Second).UnixNano(),
		AuthDecision: "denied", AuthRule: "unknown token", Outcome: recorder.OutcomeDenied, ErrorCode: -32001,
		ErrorMessage: "unauthorized", GatewayInstance: "gw-1",
	}
	return append(evs, refused)
}

func replayFixture(base time.Time) []struct {
	run     chstore.ReplayRun
	results []chstore.ReplayResult
} {
	res := func(req, tool string, st chstore.ReplayStatus) chstore.ReplayResult {
		r := chstore.ReplayResult{RequestID: req, Tool: tool, Status: st, OriginalLatency: 3 * time.Millisecond, ReplayLatency: 5 * time.Millisecond}
		if st == chstore.ReplayChanged {
			r.Diff = `[{"op":"replace","path":"/content/0/text","value":"new"}]`
		}
		if st == chstore.ReplayFailed {
			r.Error = "backend crm: connection refused"
		}
		return r
	}
	return []struct {
		run     chstore.ReplayRun
		results []chstore.ReplayResult
	}{
		{chstore.ReplayRun{ID: "run-1", Started: base, Finished: base.Add(4 * time.Second), Mode: "mock", Target: "bundle.jsonl"},
			[]chstore.ReplayResult{res("r1", "crm.search", chstore.ReplayChanged), res("r2", "crm.get", chstore.ReplayIdentical)}},
		{chstore.ReplayRun{ID: "run-2", Started: base.Add(time.Minute), Finished: base.Add(time.Minute + 2*time.Second), Mode: "live", Target: "http://crm-staging"},
			[]chstore.ReplayResult{res("r1", "crm.search", chstore.ReplayIdentical), res("r4", "git.status", chstore.ReplayFailed)}},
	}
}

type result struct {
	cols []string
	rows [][]string
}

// col returns column name of every row.
func (r result) col(name string) []string {
	for i, c := range r.cols {
		if c == name {
			out := make([]string, len(r.rows))
			for j, row := range r.rows {
				out[j] = row[i]
			}
			return out
		}
	}
	return nil
}

func run(ctx context.Context, conn driver.Conn, sql string) (result, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return result{}, err
	}
	defer rows.Close()
	res := result{cols: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			return result{}, fmt.Errorf("scanning: %w", err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(reflect.ValueOf(v).Elem().Interface())
		}
		res.rows = append(res.rows, row)
	}
	return res, rows.Err()
}

// TestSQLOnClickHouse runs every panel's and every variable's SQL, with the
// macros expanded for a concrete window, against a real ClickHouse holding
// the migrated schema and a fixture, once with every variable on All and
// once with one value each. A query that does not parse, names a missing
// column or uses a function the server lacks fails here. With All selected
// every query must return rows (so none filters everything away by
// mistake), and some answers are checked outright.
func TestSQLOnClickHouse(t *testing.T) {
	ctx := context.Background()
	srv := chtest.Shared(t)
	cfg := chstore.DefaultConfig()
	cfg.Addr = []string{srv.Addr()}
	cfg.Database = chtest.Database(t, srv.Addr())
	store, err := chstore.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	t.Logf("ClickHouse %s, database %s", store.Features().Version, cfg.Database)

	now := time.Now().Truncate(time.Second)
	base := now.Add(-30 * time.Minute)
	if err := store.WriteBatch(ctx, "fixture", fixture(base)); err != nil {
		t.Fatalf("writing fixture: %v", err)
	}
	for i, r := range replayFixture(base) {
		if err := store.WriteReplayRun(ctx, r.run, r.results); err != nil {
			t.Fatalf("writing replay run: %v", err)
		}
		if i == 0 { // a rewritten run must still count once
			if err := store.WriteReplayRun(ctx, r.run, r.results); err != nil {
				t.Fatalf("rewriting replay run: %v", err)
			}
		}
	}

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.Addr()}})
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close()

	gen, err := Generate(Options{Database: cfg.Database})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	w := Window{From: now.Add(-time.Hour), To: now.Add(time.Minute), Interval: time.Minute}
	all := map[string]result{}
	one := map[string]result{}
	for _, g := range gen {
		for _, q := range Queries(g.Model) {
			key := g.UID + " / " + q.Panel + " / " + q.RefID
			for _, mode := range []struct {
				name string
				vars map[string][]string
				into map[string]result
			}{{"all", nil, all}, {"one value", someValues, one}} {
				sql, err := Expand(q.SQL, w, mode.vars)
				if err != nil {
					t.Errorf("%s: expanding (%s): %v", key, mode.name, err)
					continue
				}
				res, err := run(ctx, conn, sql)
				if err != nil {
					t.Errorf("%s (%s): %v\n%s", key, mode.name, err, sql)
					continue
				}
				if mode.vars == nil && len(res.rows) == 0 {
					t.Errorf("%s: no rows with every variable on All\n%s", key, sql)
				}
				if q.Type == QueryTimeSeries && (len(res.cols) == 0 || res.cols[0] != "t") {
					t.Errorf("%s: time series query's first column is %v, want t", key, res.cols)
				}
				mode.into[key] = res
			}
		}
	}

	checks := []struct {
		key, col string
		res      map[string]result
		want     string // values in row order; for time series, the distinct values sorted
	}{
		{"mcptrail-overview / Top failing tools / A", "tool", all, "crm.search git.push git.status"},
		{"mcptrail-overview / Top failing tools / A", "failed", all, "2 1 1"},
		{"mcptrail-overview / Top failing tools / A", "last_error", all, "invalid params denied by policy backend git: connection refused"},
		{"mcptrail-overview / Recent failed calls / A", "request_id", all, "r5 r4 r3 r1"},
		{"mcptrail-overview / Recent failed calls / A", "request_id", one, "r1"},
		{"mcptrail-overview / Recent failed calls / A", "outcome", one, "tool_error"},
		{"mcptrail-overview / Calls/s by server / A", "series", all, "(gateway) crm git"},
		{"mcptrail-overview / Auth denials by principal / A", "series", all, "(unknown) bob"},
		{"mcptrail-overview / Upstream latency by backend (p50, p99) / B", "series", one, "crm p99"},
		{"mcptrail-overview / variable server / server", "server", all, "crm git"},
		{"mcptrail-overview / variable tool / tool", "target", one, "crm.get crm.search"},
		{"mcptrail-overview / variable principal / principal", "principal", all, "alice bob carol"},
		{"mcptrail-audit / Calls by principal / A", "principal_name", all, "(none) alice bob carol"},
		{"mcptrail-audit / Calls by principal / A", "denied", all, "1 0 1 0"},
		{"mcptrail-audit / Recent denials / A", "request_id", all, "r7 r3"},
		{"mcptrail-audit / Calls by principal and tool / A", "tool", one, "crm.get crm.search"},
		{"mcptrail-replay / Runs / A", "replay_run_id", all, "run-2 run-1"},
		{"mcptrail-replay / Runs / A", "regression_ratio", all, "0.5 0.5"},
		{"mcptrail-replay / Regressions per run / A", "changed", all, "1 0"},
		{"mcptrail-replay / Most regressed tools / A", "tool", all, "crm.search git.status"},
		{"mcptrail-replay / Most regressed tools / A", "changed", all, "1 0"},
		{"mcptrail-replay / Most regressed tools / A", "replayed", all, "2 1"},
		{"mcptrail-replay / Regressed requests / A", "request_id", all, "r4 r1"},
	}
	for _, c := range checks {
		res, ok := c.res[c.key]
		if !ok {
			t.Errorf("no result for %s", c.key)
			continue
		}
		got := res.col(c.col)
		if c.col == "series" {
			got = distinctSorted(got)
		}
		if got := strings.Join(got, " "); got != c.want {
			t.Errorf("%s: column %s = %q, want %q (columns %v)", c.key, c.col, got, c.want, res.cols)
		}
	}
}

func distinctSorted(vs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
