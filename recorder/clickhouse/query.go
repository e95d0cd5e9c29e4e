package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
)

// ReadOption tunes Trace.
type ReadOption func(*readOpts)

type readOpts struct {
	payloads    bool
	maxRequests int
}

// WithMaxRequests reads at most n requests (the earliest) of a trace or
// session id; 0 reads them all.
func WithMaxRequests(n int) ReadOption { return func(o *readOpts) { o.maxRequests = n } }

// WithPayloads fills Params and Result of the returned events from the
// payloads table (nil where none was recorded or retention removed it).
func WithPayloads() ReadOption { return func(o *readOpts) { o.payloads = true } }

// Trace returns every hop of the requests that id names: a request id, a
// W3C trace id (32 hex digits) or a session id. Events are ordered by
// request (earliest first), then seq, then time. ErrNotFound when none.
func (s *Store) Trace(ctx context.Context, id string, opts ...ReadOption) ([]recorder.Event, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	if id == "" {
		return nil, fmt.Errorf("reading trace: empty id: %w", ErrNotFound)
	}
	reqs, err := s.lookupIndex(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("reading trace %s: %w", id, err)
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("reading trace %s: %w", id, ErrNotFound)
	}
	if o.maxRequests > 0 && len(reqs) > o.maxRequests {
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].min < reqs[j].min })
		reqs = reqs[:o.maxRequests]
	}
	evs, err := s.loadEvents(ctx, reqs, o.payloads)
	if err != nil {
		return nil, fmt.Errorf("reading trace %s: %w", id, err)
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("reading trace %s (hops expired): %w", id, ErrNotFound)
	}
	return evs, nil
}

// reqWindow is a request id with the time window its hops fall in.
type reqWindow struct {
	id       string
	min, max int64 // Unix ns
}

// lookupIndex resolves request, trace or session ids to request windows.
func (s *Store) lookupIndex(ctx context.Context, ids []string) ([]reqWindow, error) {
	var out []reqWindow
	for _, chunk := range chunks(ids, 1000) {
		rows, err := s.conn.Query(ctx, "SELECT request_id, min(min_ts_ns), max(max_ts_ns) FROM "+s.table("request_index")+
			" WHERE id IN ? GROUP BY request_id", groupSet(chunk))
		if err != nil {
			return nil, fmt.Errorf("querying request_index: %w", err)
		}
		for rows.Next() {
			var w reqWindow
			var lo, hi uint64
			if err := rows.Scan(&w.id, &lo, &hi); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning request_index: %w", err)
			}
			w.min, w.max = int64(lo), int64(hi)
			out = append(out, w)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("querying request_index: %w", err)
		}
	}
	return out, nil
}

func chunks(ids []string, n int) [][]string {
	var out [][]string
	for len(ids) > n {
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

func groupSet(ids []string) clickhouse.GroupSet {
	v := make([]any, len(ids))
	for i, id := range ids {
		v[i] = id
	}
	return clickhouse.GroupSet{Value: v}
}

const hopsSelect = "SELECT event_id, request_id, session_id, trace_id, span_id, toString(hop), seq, ts_ns, " +
	"duration_us, queue_us, connect_us, ttfb_us, method, server, target, rpc_id, " +
	"principal, auth_decision, auth_rule, route_rule, backend, attempt, fallback, " +
	"toString(outcome), error_code, error_message, request_bytes, response_bytes, " +
	"client_name, client_version, protocol_version, upstream_version, " +
	"gateway_instance, gateway_version, config_hash, redaction_version, redaction_count, " +
	"attr_keys, attr_values FROM "

// loadEvents reads the hops (and optionally payloads) of reqs, deduplicated
// by event_id, ordered by request start, seq, time.
func (s *Store) loadEvents(ctx context.Context, reqs []reqWindow, payloads bool) ([]recorder.Event, error) {
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].min != reqs[j].min {
			return reqs[i].min < reqs[j].min
		}
		return reqs[i].id < reqs[j].id
	})
	rank := make(map[string]int, len(reqs))
	var evs []recorder.Event
	for start := 0; start < len(reqs); start += 1000 {
		part := reqs[start:min(start+1000, len(reqs))]
		ids := make([]string, len(part))
		lo, hi := part[0].min, part[0].max
		for i, r := range part {
			ids[i] = r.id
			rank[r.id] = start + i
			lo, hi = min(lo, r.min), max(hi, r.max)
		}
		// The ts bounds let the server skip whole day partitions.
		where := " FINAL WHERE request_id IN ? AND ts >= toDateTime(?) AND ts <= toDateTime(?)"
		args := []any{groupSet(ids), lo / 1e9, hi/1e9 + 1}
		rows, err := s.conn.Query(ctx, hopsSelect+s.table("hops")+where, args...)
		if err != nil {
			return nil, fmt.Errorf("querying hops: %w", err)
		}
		first := len(evs)
		for rows.Next() {
			var (
				e            recorder.Event
				hop, outcome string
				ts           uint64
				fallback     uint8
				keys, vals   []string
			)
			err := rows.Scan(&e.EventID, &e.RequestID, &e.SessionID, &e.TraceID, &e.SpanID, &hop, &e.Seq, &ts,
				&e.DurationUs, &e.QueueUs, &e.ConnectUs, &e.TTFBUs, &e.Method, &e.Server, &e.Target, &e.RPCID,
				&e.Principal, &e.AuthDecision, &e.AuthRule, &e.RouteRule, &e.Backend, &e.Attempt, &fallback,
				&outcome, &e.ErrorCode, &e.ErrorMessage, &e.RequestBytes, &e.ResponseBytes,
				&e.ClientName, &e.ClientVersion, &e.ProtocolVersion, &e.UpstreamVersion,
				&e.GatewayInstance, &e.GatewayVersion, &e.ConfigHash, &e.RedactionVersion, &e.RedactionCount,
				&keys, &vals)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning hops: %w", err)
			}
			e.Hop, e.Outcome, e.TimeNs, e.Fallback = recorder.ParseHop(hop), recorder.ParseOutcome(outcome), int64(ts), fallback != 0
			for i := range min(len(keys), len(vals)) {
				e.Attrs = append(e.Attrs, recorder.Attr{Key: keys[i], Value: vals[i]})
			}
			evs = append(evs, e)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("querying hops: %w", err)
		}
		if payloads && len(evs) > first {
			if err := s.fillPayloads(ctx, evs[first:], ids, lo, hi); err != nil {
				return nil, err
			}
		}
	}
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := &evs[i], &evs[j]
		if ra, rb := rank[a.RequestID], rank[b.RequestID]; ra != rb {
			return ra < rb
		}
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		if a.TimeNs != b.TimeNs {
			return a.TimeNs < b.TimeNs
		}
		return a.EventID < b.EventID
	})
	return evs, nil
}

func (s *Store) fillPayloads(ctx context.Context, evs []recorder.Event, ids []string, lo, hi int64) error {
	byID := make(map[string]*recorder.Event, len(evs))
	for i := range evs {
		byID[evs[i].EventID] = &evs[i]
	}
	rows, err := s.conn.Query(ctx, "SELECT event_id, params, result, truncated, params_sha256, result_sha256 FROM "+s.table("payloads")+
		" FINAL WHERE request_id IN ? AND ts >= toDateTime(?) AND ts <= toDateTime(?)", groupSet(ids), lo/1e9, hi/1e9+1)
	if err != nil {
		return fmt.Errorf("querying payloads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, params, result string
			trunc              uint8
			psum, rsum         string
		)
		if err := rows.Scan(&id, &params, &result, &trunc, &psum, &rsum); err != nil {
			return fmt.Errorf("scanning payloads: %w", err)
		}
		e := byID[id]
		if e == nil {
			continue
		}
		if params != "" {
			e.Params = []byte(params)
		}
		if result != "" {
			e.Result = []byte(result)
		}
		e.PayloadTruncated, e.ParamsSHA256, e.ResultSHA256 = trunc != 0, psum, rsum
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("querying payloads: %w", err)
	}
	return nil
}

// CallsQuery selects calls (answered requests). Zero fields do not filter.
type CallsQuery struct {
	Since, Until time.Time // window on the response time; Until exclusive
	FailedOnly   bool      // only outcomes other than ok
	Server       string    // exact backend namespace
	Tool         string    // glob on the target: * any run, ? one character
	Principal    string    // exact principal
	Outcome      string    // exact outcome: ok, tool_error, jsonrpc_error, transport_error, denied
	Decision     string    // exact auth decision: allowed, denied, none
	Limit        int       // max rows; default 100, at most MaxCallsLimit
}

// MaxCallsLimit bounds CallsQuery.Limit: a page of calls is read whole.
const MaxCallsLimit = 10000

// Call is one answered request.
type Call struct {
	Time         time.Time
	RequestID    string
	SessionID    string
	TraceID      string
	Principal    string
	Method       string
	Server       string
	Target       string
	Outcome      recorder.Outcome
	ErrorCode    int32
	ErrorMessage string
	Duration     time.Duration
}

// Calls lists answered requests matching q, newest first, from the audit
// table (one row per response hop), so it reaches back as far as audit
// retention.
//
// It reads windows of time backwards from Until (or now): the last hour,
// then 6 hours, a day, a week, 30, 90, 365 days, then back to Since, and
// stops as soon as the page is full, so that a busy filter sorts an hour
// of rows instead of the whole range (ClickHouse 18.16 cannot read in
// sort-key order). Each window is read without FINAL (see readPage).
func (s *Store) Calls(ctx context.Context, q CallsQuery) ([]Call, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxCallsLimit)
	f := auditFilter{principal: q.Principal, server: q.Server, tool: q.Tool,
		decision: q.Decision, outcome: q.Outcome, failed: q.FailedOnly}
	var out []Call
	for _, w := range newestFirst(q.Since, q.Until, time.Now()) {
		f.since, f.until = w.since, w.until
		got, err := s.callsIn(ctx, f, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// callsIn reads the newest n calls matching f.
func (s *Store) callsIn(ctx context.Context, f auditFilter, n int) ([]Call, error) {
	where, args := filters(f)
	var (
		out []Call
		c   Call
	)
	err := s.readPage(ctx, pageQuery{
		sel: "SELECT event_id, ts_ns, request_id, session_id, trace_id, principal, method, server, target, toString(outcome), " +
			"error_code, error_message, duration_us FROM " + s.table("audit"),
		where: where, args: args, order: "ts_ns DESC, event_id", after: newestAfter,
	}, n,
		func(rows driver.Rows) (pageKey, error) {
			var (
				k       pageKey
				outcome string
				dur     int64
			)
			c = Call{}
			if err := rows.Scan(&k.eventID, &k.tsNs, &c.RequestID, &c.SessionID, &c.TraceID, &c.Principal, &c.Method, &c.Server, &c.Target,
				&outcome, &c.ErrorCode, &c.ErrorMessage, &dur); err != nil {
				return k, fmt.Errorf("scanning calls: %w", err)
			}
			k.principal = c.Principal
			c.Time, c.Outcome, c.Duration = time.Unix(0, int64(k.tsNs)).UTC(), recorder.ParseOutcome(outcome), time.Duration(dur)*time.Microsecond
			return k, nil
		}, func() error { out = append(out, c); return nil })
	if err != nil {
		return nil, fmt.Errorf("querying calls: %w", err)
	}
	return out, nil
}

// window is a span of response times: since inclusive, until exclusive;
// a zero bound does not bound.
type window struct{ since, until time.Time }

// callWindows are the widths of the windows Calls reads, newest first.
var callWindows = []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
	30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour}

// newestFirst cuts [since, until) into adjacent windows ending callWindows
// before until (or now, when until is zero), newest first; the last one
// reaches back to since. The first window keeps until as it is: with no
// until, rows stamped after now by a gateway whose clock runs ahead are
// still read.
func newestFirst(since, until, now time.Time) []window {
	anchor := until
	if anchor.IsZero() {
		anchor = now
	}
	var out []window
	hi := until
	for _, d := range callWindows {
		lo := anchor.Add(-d)
		if !since.IsZero() && !lo.After(since) {
			break
		}
		if !hi.IsZero() && !lo.Before(hi) {
			continue
		}
		out = append(out, window{lo, hi})
		hi = lo
	}
	return append(out, window{since, hi})
}

// pageQuery is a query over audit that readPage reads a page of.
type pageQuery struct {
	sel   string // SELECT ... FROM table
	where string // filters' clause, or ""
	args  []any
	order string // ORDER BY ...: the copies of one event must be adjacent
	// after is the condition for the rows that sort after the row whose
	// principal, ts_ns and event_id are k.
	after func(k pageKey) (string, []any)
	// bound, when not "", is a condition the first rows in order are
	// expected to meet (with boundArgs), so that the server sorts only the
	// rows under it. readPage reads with it until those rows run out, then
	// on without it after the last row kept: a bound that turns out too
	// tight costs a query, never a row. That holds only for a bound that
	// selects a leading run of the order: "<first ORDER BY column> <= ?"
	// with an ascending first column (a bound on any other column would
	// drop rows that sort before the last one under it).
	bound     string
	boundArgs []any
}

// pageKey is where a row sorts in a page.
type pageKey struct {
	principal string
	tsNs      uint64
	eventID   string
}

// newestAfter follows ORDER BY ts_ns DESC, event_id.
func newestAfter(k pageKey) (string, []any) {
	return "(ts_ns < ? OR (ts_ns = ? AND event_id > ?))", []any{k.tsNs, k.tsNs, k.eventID}
}

// principalAfter follows ORDER BY principal, ts_ns, event_id.
func principalAfter(k pageKey) (string, []any) {
	return "(principal > ? OR (principal = ? AND (ts_ns > ? OR (ts_ns = ? AND event_id > ?))))",
		[]any{k.principal, k.principal, k.tsNs, k.tsNs, k.eventID}
}

// readPage reads the first n distinct events of q (all when n <= 0)
// without FINAL: a batch written twice (a crash between its rows and its
// write token) leaves identical rows with the same event_id in two parts
// until ClickHouse merges them, and FINAL, which merges them at read time,
// makes a query over many rows several times slower. scan reads a row and
// returns its key; keep takes the row just scanned when it is a new event.
// A row repeating the event_id of the row before it is skipped. With n > 0,
// readPage asks for a few rows more than n and, should copies leave fewer
// than n events in them, asks for the rows after the last one it kept, so
// that rows written meanwhile neither repeat nor go missing within the
// page.
func (s *Store) readPage(ctx context.Context, q pageQuery, n int, scan func(driver.Rows) (pageKey, error), keep func() error) error {
	have := 0
	bounded := n > 0 && q.bound != ""
	var last pageKey // the last row kept, when have > 0
	for {
		var conds []string
		args := append([]any(nil), q.args...)
		if have > 0 {
			cond, cargs := q.after(last)
			conds, args = append(conds, cond), append(args, cargs...)
		}
		if bounded {
			conds, args = append(conds, q.bound), append(args, q.boundArgs...)
		}
		query := q.sel + withConds(q.where, conds) + " ORDER BY " + q.order
		ask := 0
		if n > 0 {
			ask = n - have + (n-have)/8 + 16
			query += fmt.Sprintf(" LIMIT %d", ask)
		}
		rows, err := s.conn.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		raw := 0
		for (n <= 0 || have < n) && rows.Next() {
			k, err := scan(rows)
			if err != nil {
				rows.Close()
				return err
			}
			raw++
			if raw > 1 && k.eventID == last.eventID {
				continue
			}
			last = k
			if err := keep(); err != nil {
				rows.Close()
				return err
			}
			have++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		if n <= 0 || have >= n {
			return nil
		}
		if raw < ask {
			if !bounded {
				return nil
			}
			// The rows under the bound ran out: read on without it.
			bounded = false
		}
	}
}

// withConds is the WHERE clause where (filters' clause, or "") with conds
// added, all of them ANDed.
func withConds(where string, conds []string) string {
	if len(conds) == 0 {
		return where
	}
	if where == "" {
		return " WHERE " + strings.Join(conds, " AND ")
	}
	return where + " AND " + strings.Join(conds, " AND ")
}

// auditFilter is what a query over the audit table filters on; zero
// fields do not filter.
type auditFilter struct {
	since, until            time.Time
	principal, server, tool string
	decision, rule, outcome string
	role                    string // has(roles, role): audit rows only
	failed                  bool
}

// filters builds the WHERE clause shared by Calls, Audit and Select over
// the audit table.
func filters(f auditFilter) (string, []any) {
	var (
		conds []string
		args  []any
	)
	if !f.since.IsZero() {
		conds, args = append(conds, "ts >= toDateTime(?)", "ts_ns >= ?"), append(args, f.since.Unix(), uint64(f.since.UnixNano()))
	}
	if !f.until.IsZero() {
		conds, args = append(conds, "ts <= toDateTime(?)", "ts_ns < ?"), append(args, f.until.Unix()+1, uint64(f.until.UnixNano()))
	}
	if f.principal != "" {
		conds, args = append(conds, "principal = ?"), append(args, f.principal)
	}
	if f.server != "" {
		conds, args = append(conds, "server = ?"), append(args, f.server)
	}
	if f.tool != "" {
		conds, args = append(conds, "target LIKE ?"), append(args, globToLike(f.tool))
	}
	if f.decision != "" {
		conds, args = append(conds, "decision = ?"), append(args, f.decision)
	}
	if f.rule != "" {
		conds, args = append(conds, "rule = ?"), append(args, f.rule)
	}
	if f.role != "" {
		conds, args = append(conds, "has(roles, ?)"), append(args, f.role)
	}
	if f.outcome != "" {
		// toString: an unknown outcome matches nothing instead of failing
		// the Enum8 conversion.
		conds, args = append(conds, "toString(outcome) = ?"), append(args, f.outcome)
	}
	if f.failed {
		conds = append(conds, "outcome != 'ok'")
	}
	return withConds("", conds), args
}

// globToLike turns a shell-style glob (* any run, ? one character) into a
// LIKE pattern, escaping LIKE's own metacharacters.
func globToLike(g string) string {
	var b strings.Builder
	for _, r := range g {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// AuditQuery selects audit rows. Zero fields do not filter.
type AuditQuery struct {
	Principal    string    // exact principal
	Since, Until time.Time // Until exclusive
	Tool         string    // glob on the target, e.g. "crm.*"
	Decision     string    // allowed | denied | none
	Rule         string    // exact rule that decided, e.g. "tools:crm.*"
	Role         string    // only rows whose principal had this role
	// Limit stops after this many rows; 0 streams them all (an export).
	Limit int
}

func (q AuditQuery) filter() auditFilter {
	return auditFilter{since: q.Since, until: q.Until, principal: q.Principal, tool: q.Tool, decision: q.Decision, rule: q.Rule, role: q.Role}
}

// AuditRow is one answered request in the audit trail.
type AuditRow struct {
	Time       time.Time
	Principal  string
	Method     string
	Target     string
	Server     string
	Decision   string
	Rule       string
	Roles      []string // the principal's roles (a JWT's; none for a static token)
	Outcome    recorder.Outcome
	ErrorCode  int32
	RequestID  string
	SessionID  string
	TraceID    string
	ClientName string
	Duration   time.Duration
}

// Audit streams matching rows to emit without holding them in memory,
// grouped by principal (the audit table's sort key) and oldest first within
// each principal. An error from emit stops the stream and is returned as is.
// Rows are read without FINAL, each event once (see readPage). Without a
// limit (an export) the rows are read in chunks of principals: every row
// present when it starts is emitted once, but one written meanwhile shows
// only if its principal's chunk is still to come; give Until for a fixed
// set.
func (s *Store) Audit(ctx context.Context, q AuditQuery, emit func(AuditRow) error) error {
	err := s.auditPage(ctx, q.filter(), q.Limit, true, emit)
	var ee emitError
	if errors.As(err, &ee) {
		return ee.err
	}
	if err != nil {
		return fmt.Errorf("querying audit: %w", err)
	}
	return nil
}

// auditPage emits the first n rows matching f (all when n <= 0). With
// bound, a page (n > 0) of several principals is first read under
// principal <= the principal whose rows, counted in order, reach n (see
// principalBound): ClickHouse 18.16 cannot read in sort-key order, so
// without it the server sorts every row of the window for the first n.
// With bound, all rows (n <= 0) are read a chunk at a time (auditExport).
func (s *Store) auditPage(ctx context.Context, f auditFilter, n int, bound bool, emit func(AuditRow) error) error {
	where, args := filters(f)
	if bound && n <= 0 {
		return s.auditExport(ctx, where, args, emit)
	}
	return s.auditRead(ctx, where, args, f.principal, n, bound, emit)
}

// auditRead is auditPage for where and args (filters' clause, with any
// further conditions); principal is the filter's, if any.
func (s *Store) auditRead(ctx context.Context, where string, args []any, principal string, n int, bound bool, emit func(AuditRow) error) error {
	q := pageQuery{
		sel: "SELECT event_id, ts_ns, principal, method, target, server, decision, rule, roles, toString(outcome), error_code, " +
			"request_id, session_id, trace_id, client_name, duration_us FROM " + s.table("audit"),
		where: where, args: args, order: "principal, ts_ns, event_id", after: principalAfter,
	}
	if bound && n > 0 && principal == "" {
		p, ok, err := s.principalBound(ctx, where, args, n)
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("counting rows per principal: %w", cerr)
		}
		// The bound only saves the server work: if the counts failed (a
		// memory or time limit of the server's), read the page without it.
		if err == nil && ok {
			q.bound, q.boundArgs = "principal <= ?", []any{p}
		}
	}
	var r AuditRow
	return s.readPage(ctx, q, n,
		func(rows driver.Rows) (pageKey, error) {
			var (
				k       pageKey
				outcome string
				dur     int64
			)
			r = AuditRow{}
			if err := rows.Scan(&k.eventID, &k.tsNs, &r.Principal, &r.Method, &r.Target, &r.Server, &r.Decision, &r.Rule, &r.Roles, &outcome, &r.ErrorCode,
				&r.RequestID, &r.SessionID, &r.TraceID, &r.ClientName, &dur); err != nil {
				return k, fmt.Errorf("scanning audit: %w", err)
			}
			k.principal = r.Principal
			r.Time, r.Outcome, r.Duration = time.Unix(0, int64(k.tsNs)).UTC(), recorder.ParseOutcome(outcome), time.Duration(dur)*time.Microsecond
			return k, nil
		}, func() error {
			if err := emit(r); err != nil {
				return emitError{err}
			}
			return nil
		})
}

// principalBound counts the rows matching where per principal, in order,
// and returns the first principal at which the count reaches n; false when
// the rows of all principals together stay under n. Which principal it
// returns changes the cost of the page, never its rows (see
// pageQuery.bound): counts read without FINAL, where copies of a batch
// written twice make them too high, only make the bound too tight. Every
// principal counts at least one row, so the one sought is among the first
// n: the query returns at most n rows, however many principals there are.
func (s *Store) principalBound(ctx context.Context, where string, args []any, n int) (string, bool, error) {
	var counts []principalCount
	if err := s.principalCounts(ctx, where, args, n, func(c principalCount) { counts = append(counts, c) }); err != nil {
		return "", false, err
	}
	p, ok := reachPrincipal(counts, n)
	return p, ok, nil
}

// principalCounts counts the rows matching where per principal and hands
// them to each in principal order, for the first limit principals (all
// when limit <= 0).
func (s *Store) principalCounts(ctx context.Context, where string, args []any, limit int, each func(principalCount)) error {
	q := "SELECT principal, count() FROM " + s.table("audit") + where + " GROUP BY principal ORDER BY principal"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("counting rows per principal: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c principalCount
		if err := rows.Scan(&c.principal, &c.rows); err != nil {
			return fmt.Errorf("scanning rows per principal: %w", err)
		}
		each(c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("counting rows per principal: %w", err)
	}
	return nil
}

// exportChunkRows is about the most rows one query of an export (all the
// rows matching a filter) sorts. ClickHouse 18.16 sorts in memory every
// row a query orders: one query over months of everyone's rows fails on a
// server's memory limit (10 M rows went over 1.86 GiB). A variable for
// tests.
var exportChunkRows uint64 = 500_000

// auditExport emits every row matching where, in the page order, one
// chunk of that order at a time: runs of whole principals of up to
// exportChunkRows rows by a count per principal, and a principal with
// more alone, split by hours by a count per hour (an hour of one
// principal is not split). The chunks' conditions cover every row,
// including those of principals the counts did not see (written since):
// the first chunk has no lower bound and the last no upper one. Copies of
// an event share its principal and time, so they fall in one chunk, where
// readPage drops them. If the counts fail, all is read in one query.
func (s *Store) auditExport(ctx context.Context, where string, args []any, emit func(AuditRow) error) error {
	var p exportPlanner
	err := s.principalCounts(ctx, where, args, 0, func(c principalCount) { p.add(c, exportChunkRows) })
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("counting rows per principal: %w", cerr)
		}
		return s.auditRead(ctx, where, args, "", 0, false, emit)
	}
	return s.exportChunks(ctx, where, args, p.plan, emit)
}

// exportChunks reads the rows matching where chunk by chunk, as plan says
// (see auditExport). Any plan reads every row once: it only decides where
// the chunks end.
func (s *Store) exportChunks(ctx context.Context, where string, args []any, plan []exportChunk, emit func(AuditRow) error) error {
	read := func(conds []string, cargs []any) error {
		return s.auditRead(ctx, withConds(where, conds), append(append([]any(nil), args...), cargs...), "", 0, false, emit)
	}
	if len(plan) == 0 {
		return read(nil, nil)
	}
	var lo *string // the previous chunk's last principal
	for i, c := range plan {
		last := i == len(plan)-1
		var conds []string
		var cargs []any
		if lo != nil {
			conds, cargs = append(conds, "principal > ?"), append(cargs, *lo)
		}
		if !c.heavy {
			if !last {
				conds, cargs = append(conds, "principal <= ?"), append(cargs, c.hi)
			}
			if err := read(conds, cargs); err != nil {
				return err
			}
			lo = &c.hi
			continue
		}
		// Principals between the previous chunk and this one that the
		// counts did not see, then c.hi's rows hour by hour.
		if err := read(append(conds, "principal < ?"), append(cargs, c.hi)); err != nil {
			return err
		}
		hours, err := s.hourCounts(ctx, where, args, c.hi)
		if err != nil && ctx.Err() != nil {
			return err
		}
		// Without the counts per hour (a server limit), the principal's
		// rows are read in one query: nothing of them was emitted yet.
		cuts := cutHours(hours, exportChunkRows)
		for j := 0; j <= len(cuts); j++ {
			conds, cargs := []string{"principal = ?"}, []any{c.hi}
			if j > 0 {
				conds = append(conds, "ts >= toDateTime(?)", "ts_ns >= ?")
				cargs = append(cargs, cuts[j-1], uint64(cuts[j-1])*1e9)
			}
			if j < len(cuts) {
				conds = append(conds, "ts < toDateTime(?)", "ts_ns < ?")
				cargs = append(cargs, cuts[j], uint64(cuts[j])*1e9)
			}
			if err := read(conds, cargs); err != nil {
				return err
			}
		}
		if last {
			if err := read([]string{"principal > ?"}, []any{c.hi}); err != nil {
				return err
			}
		}
		lo = &c.hi
	}
	return nil
}

// exportChunk is a run of principals of an export, up to and including
// hi; heavy when hi alone has more rows than a chunk.
type exportChunk struct {
	hi    string
	heavy bool
}

// exportPlanner groups counts, added in principal order, into chunks of
// at most max rows, a principal with more alone. It keeps the chunks, not
// the counts: one principal per end user makes millions of counts.
type exportPlanner struct {
	plan []exportChunk
	sum  uint64 // rows of the open chunk, the plan's last
}

func (p *exportPlanner) add(c principalCount, max uint64) {
	switch {
	case c.rows > max:
		p.plan, p.sum = append(p.plan, exportChunk{hi: c.principal, heavy: true}), 0
		return
	case p.sum > 0 && p.sum+c.rows > max:
		p.sum = 0
	case p.sum > 0:
		p.plan = p.plan[:len(p.plan)-1] // this principal joins the open chunk
	}
	p.plan, p.sum = append(p.plan, exportChunk{hi: c.principal}), p.sum+c.rows
}

// hourCount is how many rows of a principal an hour has; start is the
// hour's first second (Unix).
type hourCount struct {
	start uint32
	rows  uint64
}

// hourCounts counts principal's rows matching where per hour, in order.
func (s *Store) hourCounts(ctx context.Context, where string, args []any, principal string) ([]hourCount, error) {
	rows, err := s.conn.Query(ctx, "SELECT toUInt32(toStartOfHour(ts)) AS h, count() FROM "+s.table("audit")+withConds(where, []string{"principal = ?"})+
		" GROUP BY h ORDER BY h", append(append([]any(nil), args...), principal)...)
	if err != nil {
		return nil, fmt.Errorf("counting rows per hour: %w", err)
	}
	defer rows.Close()
	var hours []hourCount
	for rows.Next() {
		var h hourCount
		if err := rows.Scan(&h.start, &h.rows); err != nil {
			return nil, fmt.Errorf("scanning rows per hour: %w", err)
		}
		hours = append(hours, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting rows per hour: %w", err)
	}
	return hours, nil
}

// cutHours returns the hours at which to start a new chunk so that none
// has more than max rows, but for one hour alone.
func cutHours(hours []hourCount, max uint64) []uint32 {
	var (
		cuts []uint32
		sum  uint64
	)
	for _, h := range hours {
		if sum > 0 && sum+h.rows > max {
			cuts, sum = append(cuts, h.start), 0
		}
		sum += h.rows
	}
	return cuts
}

// principalCount is how many rows a principal has.
type principalCount struct {
	principal string
	rows      uint64
}

// reachPrincipal returns the first principal of counts (in principal
// order) at which the running total reaches n; false if it never does.
func reachPrincipal(counts []principalCount, n int) (string, bool) {
	var sum uint64
	for _, c := range counts {
		sum += c.rows
		if sum >= uint64(n) {
			return c.principal, true
		}
	}
	return "", false
}

// emitError carries an error of the caller's emit through readPage
// unwrapped.
type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

// Selection picks recorded requests for replay. IDs (RequestIDs, SessionID,
// TraceID) narrow to those requests; the filters apply to their response
// (audit) rows. With no ids, Since is required.
type Selection struct {
	RequestIDs   []string
	SessionID    string
	TraceID      string
	Since, Until time.Time
	Server       string
	Tool         string // glob on the target
	Principal    string
	FailedOnly   bool
	Limit        int // max requests; default 1000
}

// ErrSelectionTooWide is returned by Select when neither ids nor Since bound it.
var ErrSelectionTooWide = errors.New("selection needs request ids, a session, a trace or a since time")

// Select returns every hop, with payloads, of the selected requests,
// ordered like Trace.
func (s *Store) Select(ctx context.Context, sel Selection) ([]recorder.Event, error) {
	limit := sel.Limit
	if limit <= 0 {
		limit = 1000
	}
	ids := append([]string(nil), sel.RequestIDs...)
	if sel.SessionID != "" {
		ids = append(ids, sel.SessionID)
	}
	if sel.TraceID != "" {
		ids = append(ids, sel.TraceID)
	}
	hasFilter := !sel.Since.IsZero() || !sel.Until.IsZero() || sel.Server != "" || sel.Tool != "" || sel.Principal != "" || sel.FailedOnly
	var reqs []reqWindow
	if len(ids) > 0 {
		var err error
		if reqs, err = s.lookupIndex(ctx, ids); err != nil {
			return nil, fmt.Errorf("selecting requests: %w", err)
		}
		if len(reqs) == 0 {
			return nil, nil
		}
	} else if sel.Since.IsZero() {
		return nil, fmt.Errorf("selecting requests: %w", ErrSelectionTooWide)
	}
	if hasFilter || len(ids) == 0 {
		where, args := filters(auditFilter{since: sel.Since, until: sel.Until, principal: sel.Principal, server: sel.Server, tool: sel.Tool, failed: sel.FailedOnly})
		if len(reqs) > 0 {
			rids := make([]string, len(reqs))
			for i, r := range reqs {
				rids[i] = r.id
			}
			if where == "" {
				where = " WHERE "
			} else {
				where += " AND "
			}
			where += "request_id IN ?"
			args = append(args, groupSet(rids))
		}
		// No FINAL: the copies of a batch written twice share request ids.
		rows, err := s.conn.Query(ctx, "SELECT DISTINCT request_id FROM "+s.table("audit")+where+fmt.Sprintf(" LIMIT %d", limit), args...)
		if err != nil {
			return nil, fmt.Errorf("selecting requests from audit: %w", err)
		}
		var matched []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("selecting requests from audit: %w", err)
			}
			matched = append(matched, id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("selecting requests from audit: %w", err)
		}
		if len(matched) == 0 {
			return nil, nil
		}
		if reqs, err = s.lookupIndex(ctx, matched); err != nil {
			return nil, fmt.Errorf("selecting requests: %w", err)
		}
	}
	if len(reqs) > limit {
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].min < reqs[j].min })
		reqs = reqs[:limit]
	}
	evs, err := s.loadEvents(ctx, reqs, true)
	if err != nil {
		return nil, fmt.Errorf("selecting requests: %w", err)
	}
	return evs, nil
}

// AuditDay counts the audit rows of one UTC day by decision.
type AuditDay struct {
	Day                    time.Time // midnight UTC
	Total                  uint64
	Allowed, Denied, Other uint64 // Other: decision none (authentication off or not reached)
}

// AuditDays counts the rows AuditQuery q selects per UTC day, newest day
// first, at most maxDays days (default 400). It reads without FINAL (4x
// faster at 10 M rows on 18.16): a batch written twice despite its write
// token counts twice until ClickHouse merges the parts; Audit's rows are
// exact.
func (s *Store) AuditDays(ctx context.Context, q AuditQuery, maxDays int) ([]AuditDay, error) {
	if maxDays <= 0 {
		maxDays = 400
	}
	where, args := filters(q.filter())
	rows, err := s.conn.Query(ctx, "SELECT toUInt32(toDate(ts)) AS d, count(), countIf(decision = 'allowed'), countIf(decision = 'denied') FROM "+
		s.table("audit")+where+fmt.Sprintf(" GROUP BY d ORDER BY d DESC LIMIT %d", maxDays), args...)
	if err != nil {
		return nil, fmt.Errorf("counting audit rows per day: %w", err)
	}
	defer rows.Close()
	var out []AuditDay
	for rows.Next() {
		var (
			d                      uint32
			total, allowed, denied uint64
		)
		if err := rows.Scan(&d, &total, &allowed, &denied); err != nil {
			return nil, fmt.Errorf("scanning audit days: %w", err)
		}
		out = append(out, AuditDay{Day: time.Unix(int64(d)*86400, 0).UTC(), Total: total, Allowed: allowed, Denied: denied, Other: total - allowed - denied})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting audit rows per day: %w", err)
	}
	return out, nil
}
