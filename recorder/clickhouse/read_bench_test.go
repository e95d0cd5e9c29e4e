package clickhouse

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// readBenchCalls is how many calls BenchmarkReadShapes records: 10 M, as
// issue 10 asks; MCPTRAIL_BENCH_CALLS overrides it for a quick look.
func readBenchCalls(b *testing.B) uint64 {
	if v := os.Getenv("MCPTRAIL_BENCH_CALLS"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			b.Fatalf("MCPTRAIL_BENCH_CALLS=%q: %v", v, err)
		}
		return n
	}
	return 10_000_000
}

const readBenchSpan = 90 * 24 * time.Hour

// generateReadBench fills a migrated store server-side with n calls spread
// evenly over the 90 days before end (audit rows), ~200 principals of which
// 4 make 40% of the calls, 50 tools over 8 servers, 2% denied, 3% tool
// errors, and the hops (4 per request, request_index derived by the view)
// of the newest n/4 requests: as many hop rows as calls. Call k is request
// "req-k", newest first. It inserts a tenth at a time, oldest first, as a
// gateway would, so that the table has several parts to merge.
func generateReadBench(b testing.TB, s *Store, n uint64, end time.Time) {
	ctx := context.Background()
	db := s.cfg.Database
	step := uint64(readBenchSpan.Nanoseconds()) / n
	endNs := uint64(end.UnixNano())
	// cols computes, from number k, the columns both tables share.
	cols := fmt.Sprintf(`k, %d - k * %d - cityHash64(k, 0) %% %d AS tsn, toDateTime(intDiv(tsn, 1000000000)) AS t,
		cityHash64(k, 1) %% 1000 AS h, if(h < 400, concat('heavy-', toString(h %% 4)), concat('user-', toString(h %% 196))) AS p,
		cityHash64(k, 2) %% 50 AS tn, concat('srv', toString(tn %% 8)) AS srv, concat(srv, '.tool', toString(tn)) AS tgt,
		cityHash64(k, 3) %% 100 AS d, if(d < 2, 'denied', 'allowed') AS dec, if(d < 2, concat('deny:', srv, '.*'), concat('token:', p)) AS rl,
		if(d < 2, 'denied', if(d < 5, 'tool_error', 'ok')) AS oc, concat('req-', toString(k)) AS rid,
		concat('sess-', toString(intDiv(k, 20))) AS sid, lower(hex(cityHash64(k, 5))) AS tid`, endNs, step, step)
	const parts = 10
	for i := parts - 1; i >= 0; i-- {
		lo, hi := n*uint64(i)/parts, n*uint64(i+1)/parts
		q := fmt.Sprintf(`INSERT INTO %s (ts, ts_ns, event_id, request_id, session_id, trace_id, principal, method, server, target,
			decision, rule, roles, outcome, error_code, error_message, duration_us, client_name)
			SELECT t, tsn, concat('ev-', toString(k), '-4'), rid, sid, tid, p, 'tools/call', srv, tgt, dec, rl,
				if(h < 400, ['admin'], if(h %% 2 = 0, ['support'], emptyArrayString())), oc,
				if(oc = 'tool_error', -32000, 0), if(oc = 'tool_error', 'boom', ''), toInt64(cityHash64(k, 4) %% 500000), 'claude'
			FROM (SELECT %s FROM (SELECT number AS k FROM system.numbers LIMIT %d OFFSET %d))`,
			s.storageTable("audit"), cols, hi-lo, lo)
		if err := s.conn.Exec(ctx, q); err != nil {
			b.Fatalf("generating audit rows %d..%d: %v", lo, hi, err)
		}
	}
	for i := parts - 1; i >= 0; i-- {
		lo, hi := n/4*uint64(i)/parts, n/4*uint64(i+1)/parts
		q := fmt.Sprintf(`INSERT INTO %s (event_id, request_id, session_id, trace_id, span_id, hop, seq, ts, ts_ns, duration_us,
			method, server, target, principal, auth_decision, auth_rule, outcome)
			SELECT concat('ev-', toString(k), '-', toString(hn)), rid, sid, tid, lower(hex(cityHash64(k, hn))),
				CAST(hs AS Enum8('unknown' = 0, 'inbound' = 1, 'auth' = 2, 'route' = 3, 'upstream' = 4, 'response' = 5, 'notification' = 6, 'server_request' = 7)),
				toUInt32(hn - 1), t, tsn + hn * 1000, toInt64(1000), 'tools/call', srv, tgt, p, dec, rl,
				CAST(oc AS Enum8('ok' = 0, 'tool_error' = 1, 'jsonrpc_error' = 2, 'transport_error' = 3, 'denied' = 4))
			FROM (SELECT %s FROM (SELECT number AS k FROM system.numbers LIMIT %d OFFSET %d))
			ARRAY JOIN [1, 2, 3, 4] AS hn, ['inbound', 'auth', 'upstream', 'response'] AS hs`,
			s.storageTable("hops"), cols, hi-lo, lo)
		if err := s.conn.Exec(ctx, q); err != nil {
			b.Fatalf("generating hops %d..%d: %v", lo, hi, err)
		}
	}
	if got := count(b, s, "SELECT count() FROM "+db+".audit"); got != n {
		b.Fatalf("generated %d audit rows, want %d", got, n)
	}
}

// readShape is one page the console or the CLI shows.
type readShape struct {
	name string
	// run reads the page and returns how many rows it shows.
	run func(ctx context.Context, s pageReader) (int, error)
}

// pageReader is what the pages read: *Store, or legacyReader, the readers
// as they were before issue 10, for a same-run comparison.
type pageReader interface {
	Calls(ctx context.Context, q CallsQuery) ([]Call, error)
	Audit(ctx context.Context, q AuditQuery, emit func(AuditRow) error) error
	AuditDays(ctx context.Context, q AuditQuery, maxDays int) ([]AuditDay, error)
	Trace(ctx context.Context, id string, opts ...ReadOption) ([]recorder.Event, error)
}

// readShapes are the pages of issue 10, anchored at end (the newest
// recorded call) for n calls generated. "tool" is one of 50 tools, "principal" one of the 196
// light principals.
func readShapes(end time.Time, n uint64) []readShape {
	day := 24 * time.Hour
	calls := func(q CallsQuery) func(context.Context, pageReader) (int, error) {
		return func(ctx context.Context, s pageReader) (int, error) {
			cs, err := s.Calls(ctx, q)
			return len(cs), err
		}
	}
	audit := func(q AuditQuery) func(context.Context, pageReader) (int, error) {
		return func(ctx context.Context, s pageReader) (int, error) {
			days, err := s.AuditDays(ctx, q, 0)
			if err != nil || len(days) == 0 {
				return 0, err
			}
			q.Limit = 200
			n := 0
			err = s.Audit(ctx, q, func(AuditRow) error { n++; return nil })
			return n, err
		}
	}
	return []readShape{
		{"calls/last-hour", calls(CallsQuery{Since: end.Add(-time.Hour)})},
		{"calls/tool/7d", calls(CallsQuery{Since: end.Add(-7 * day), Tool: "srv3.tool11"})},
		{"calls/tool/30d", calls(CallsQuery{Since: end.Add(-30 * day), Tool: "srv3.tool11"})},
		{"calls/tool/90d", calls(CallsQuery{Since: end.Add(-90 * day), Tool: "srv3.tool11"})},
		{"calls/principal-failed/30d", calls(CallsQuery{Since: end.Add(-30 * day), Principal: "user-17", FailedOnly: true})},
		{"audit/everyone/7d", audit(AuditQuery{Since: end.Add(-7 * day)})},
		{"audit/everyone/30d", audit(AuditQuery{Since: end.Add(-30 * day)})},
		{"audit/everyone/90d", audit(AuditQuery{Since: end.Add(-90 * day)})},
		// The two halves of audit/everyone/90d, to see which dominates.
		{"audit/everyone/90d-days", func(ctx context.Context, s pageReader) (int, error) {
			days, err := s.AuditDays(ctx, AuditQuery{Since: end.Add(-90 * day)}, 0)
			return len(days), err
		}},
		{"audit/everyone/90d-rows", func(ctx context.Context, s pageReader) (int, error) {
			n := 0
			err := s.Audit(ctx, AuditQuery{Since: end.Add(-90 * day), Limit: 200}, func(AuditRow) error { n++; return nil })
			return n, err
		}},
		{"audit/principal/90d", func(ctx context.Context, s pageReader) (int, error) {
			// The page and the whole CSV download.
			q := AuditQuery{Since: end.Add(-90 * day), Principal: "user-17"}
			n, err := audit(q)(ctx, s)
			if err != nil {
				return n, err
			}
			err = s.Audit(ctx, q, func(AuditRow) error { n++; return nil })
			return n, err
		}},
		{"trace", func(ctx context.Context, s pageReader) (int, error) {
			evs, err := s.Trace(ctx, fmt.Sprintf("req-%d", n/8+7))
			return len(evs), err
		}},
	}
}

// BenchmarkReadShapes records 10 M calls over 90 days (see
// generateReadBench) and reads each page of issue 10: wall time per page
// (ns/op), run alone on this machine's shared server. Every page must show
// rows. Run it with -benchtime 3x: the data takes minutes to generate.
func BenchmarkReadShapes(b *testing.B) {
	ctx := context.Background()
	s := migratedStore(b)
	end := time.Now().UTC().Truncate(time.Second)
	start := time.Now()
	generateReadBench(b, s, readBenchCalls(b), end)
	b.Logf("generated %d calls in %v", readBenchCalls(b), time.Since(start).Round(time.Second))
	for _, sh := range readShapes(end, readBenchCalls(b)) {
		for _, r := range []struct {
			name string
			r    pageReader
		}{{"before", legacyReader{s}}, {"nobound", unboundReader{s}}, {"after", s}} {
			if r.name == "nobound" && !strings.HasPrefix(sh.name, "audit/") {
				continue
			}
			b.Run(sh.name+"/"+r.name, func(b *testing.B) {
				rows := 0
				for b.Loop() {
					n, err := sh.run(ctx, r.r)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						b.Fatalf("%s shows no rows", sh.name)
					}
					rows = n
				}
				b.ReportMetric(float64(rows), "rows")
			})
		}
	}
}

// unboundReader reads audit pages as the Store did before their first rows
// were read under a principal bound: one query ordered over the whole
// window.
type unboundReader struct{ *Store }

func (u unboundReader) Audit(ctx context.Context, q AuditQuery, emit func(AuditRow) error) error {
	return u.auditPage(ctx, q.filter(), q.Limit, false, emit)
}
