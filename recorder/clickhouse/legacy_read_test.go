package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// legacyReader reads calls and audit rows as the Store did before issue 10
// (FINAL over the whole window, per-day counts from the audit table), so
// that BenchmarkReadShapes compares both on the same data in the same run.
type legacyReader struct{ *Store }

func (l legacyReader) Calls(ctx context.Context, q CallsQuery) ([]Call, error) {
	s := l.Store
	where, args := filters(auditFilter{since: q.Since, until: q.Until, principal: q.Principal, server: q.Server, tool: q.Tool,
		decision: q.Decision, outcome: q.Outcome, failed: q.FailedOnly})
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxCallsLimit)
	rows, err := s.conn.Query(ctx, "SELECT ts_ns, request_id, session_id, trace_id, principal, method, server, target, toString(outcome), "+
		"error_code, error_message, duration_us FROM "+s.table("audit")+" FINAL"+where+
		fmt.Sprintf(" ORDER BY ts_ns DESC, event_id LIMIT %d", limit), args...)
	if err != nil {
		return nil, fmt.Errorf("querying calls: %w", err)
	}
	defer rows.Close()
	var out []Call
	for rows.Next() {
		var (
			c       Call
			ts      uint64
			outcome string
			dur     int64
		)
		if err := rows.Scan(&ts, &c.RequestID, &c.SessionID, &c.TraceID, &c.Principal, &c.Method, &c.Server, &c.Target,
			&outcome, &c.ErrorCode, &c.ErrorMessage, &dur); err != nil {
			return nil, fmt.Errorf("scanning calls: %w", err)
		}
		c.Time, c.Outcome, c.Duration = time.Unix(0, int64(ts)).UTC(), recorder.ParseOutcome(outcome), time.Duration(dur)*time.Microsecond
		out = append(out, c)
	}
	return out, rows.Err()
}

func (l legacyReader) Audit(ctx context.Context, q AuditQuery, emit func(AuditRow) error) error {
	s := l.Store
	where, args := filters(q.filter())
	limit := ""
	if q.Limit > 0 {
		limit = fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.conn.Query(ctx, "SELECT ts_ns, principal, method, target, server, decision, rule, roles, toString(outcome), error_code, "+
		"request_id, session_id, trace_id, client_name, duration_us FROM "+s.table("audit")+" FINAL"+where+
		" ORDER BY principal, ts_ns, event_id"+limit, args...)
	if err != nil {
		return fmt.Errorf("querying audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r       AuditRow
			ts      uint64
			outcome string
			dur     int64
		)
		if err := rows.Scan(&ts, &r.Principal, &r.Method, &r.Target, &r.Server, &r.Decision, &r.Rule, &r.Roles, &outcome, &r.ErrorCode,
			&r.RequestID, &r.SessionID, &r.TraceID, &r.ClientName, &dur); err != nil {
			return fmt.Errorf("scanning audit: %w", err)
		}
		r.Time, r.Outcome, r.Duration = time.Unix(0, int64(ts)).UTC(), recorder.ParseOutcome(outcome), time.Duration(dur)*time.Microsecond
		if err := emit(r); err != nil {
			return err
		}
	}
	return rows.Err()
}
