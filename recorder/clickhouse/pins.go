package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// Tool pins (migration 0006): the gateway's pin store and what `mcptrail
// tools approve|drift` read and write.

const pinColumns = "ts, ts_ns, server, tool, kind, hash, prev_hash, definition, diff, action, actor"

// AppendPins writes pin history rows; nil once the server acknowledged
// them. A batch written twice collapses (ReplacingMergeTree on every key
// column).
func (s *Store) AppendPins(ctx context.Context, evs []recorder.PinEvent) error {
	if len(evs) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("tool_pins")+" ("+pinColumns+")")
	if err != nil {
		return fmt.Errorf("writing tool pins: %w", err)
	}
	defer b.Abort()
	for _, e := range evs {
		ts := e.TimeNs
		if ts == 0 {
			ts = time.Now().UnixNano()
		}
		if err := b.Append(time.Unix(0, ts), uint64(ts), e.Server, e.Tool, e.Kind, e.Hash, e.PrevHash, e.Definition, e.Diff, e.Action, e.Actor); err != nil {
			return fmt.Errorf("writing tool pins: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("writing tool pins: %w", err)
	}
	return nil
}

// LoadPins returns, per server and tool, its pin (the newest pinned or
// approved row) and its newest changed row, if any.
func (s *Store) LoadPins(ctx context.Context) ([]recorder.PinEvent, error) {
	return s.pinRows(ctx, "SELECT max(ts_ns), server, tool, toString(argMax(kind, ts_ns)), argMax(hash, ts_ns), argMax(prev_hash, ts_ns), "+
		"argMax(definition, ts_ns), argMax(diff, ts_ns), argMax(action, ts_ns), argMax(actor, ts_ns) FROM "+s.table("tool_pins")+
		" GROUP BY server, tool, kind = 'changed' ORDER BY server, tool")
}

// PinHistory returns every pin row since the given time (zero: all), of
// one server (empty: all), oldest first per tool.
func (s *Store) PinHistory(ctx context.Context, since time.Time, server string) ([]recorder.PinEvent, error) {
	q := "SELECT ts_ns, server, tool, toString(kind), hash, prev_hash, definition, diff, action, actor FROM " + s.table("tool_pins") +
		" WHERE ts_ns >= ?"
	args := []any{uint64(max(since.UnixNano(), 0))}
	if since.IsZero() {
		args[0] = uint64(0)
	}
	if server != "" {
		q += " AND server = ?"
		args = append(args, server)
	}
	// Collapse a batch written twice before ReplacingMergeTree merges it.
	q += " ORDER BY server, tool, ts_ns LIMIT 1 BY server, tool, ts_ns, kind, hash"
	return s.pinRows(ctx, q, args...)
}

func (s *Store) pinRows(ctx context.Context, q string, args ...any) ([]recorder.PinEvent, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading tool pins: %w", err)
	}
	defer rows.Close()
	var out []recorder.PinEvent
	for rows.Next() {
		var e recorder.PinEvent
		var ts uint64
		if err := rows.Scan(&ts, &e.Server, &e.Tool, &e.Kind, &e.Hash, &e.PrevHash, &e.Definition, &e.Diff, &e.Action, &e.Actor); err != nil {
			return nil, fmt.Errorf("reading tool pins: %w", err)
		}
		e.TimeNs = int64(ts)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading tool pins: %w", err)
	}
	return out, nil
}

// AppendPins implements the gateway's pin store: it connects when needed.
func (l *Lazy) AppendPins(ctx context.Context, evs []recorder.PinEvent) error {
	s, err := l.Store(ctx)
	if err != nil {
		return err
	}
	return s.AppendPins(ctx, evs)
}

// LoadPins implements the gateway's pin store: it connects when needed.
func (l *Lazy) LoadPins(ctx context.Context) ([]recorder.PinEvent, error) {
	s, err := l.Store(ctx)
	if err != nil {
		return nil, err
	}
	return s.LoadPins(ctx)
}
