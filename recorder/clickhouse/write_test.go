package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder"
)

// fakeBatch records what the append functions put in each column, with no
// server. Methods the writer's fill functions do not call panic (nil
// embedded interface).
type fakeBatch struct {
	driver.Batch
	cols    [][]any
	discard bool // benchmarks: count nothing, keep nothing
}

func newFakeBatch(columns int) *fakeBatch { return &fakeBatch{cols: make([][]any, columns)} }

func (b *fakeBatch) Columns() []column.Interface     { return make([]column.Interface, len(b.cols)) }
func (b *fakeBatch) Column(i int) driver.BatchColumn { return fakeColumn{b, i} }

// Append takes one row, like the driver's.
func (b *fakeBatch) Append(v ...any) error {
	if len(v) != len(b.cols) {
		return fmt.Errorf("Append of %d values to %d columns", len(v), len(b.cols))
	}
	if !b.discard {
		for i := range v {
			b.cols[i] = append(b.cols[i], v[i])
		}
	}
	return nil
}

type fakeColumn struct {
	b *fakeBatch
	i int
}

// Append takes a whole column slice and copies it, like the driver's.
func (c fakeColumn) Append(v any) error {
	if c.b.discard {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return fmt.Errorf("column %d: Append(%T), want a slice", c.i, v)
	}
	for k := range rv.Len() {
		e := rv.Index(k)
		if e.Kind() == reflect.Slice {
			// The driver copies an Array row's elements: so does the fake
			// (appendHops reuses its slices once Append returns).
			e = reflect.AppendSlice(reflect.MakeSlice(e.Type(), 0, e.Len()), e)
		}
		c.b.cols[c.i] = append(c.b.cols[c.i], e.Interface())
	}
	return nil
}

func (c fakeColumn) AppendRow(v any) error {
	if !c.b.discard {
		c.b.cols[c.i] = append(c.b.cols[c.i], v)
	}
	return nil
}

// rows reads the recorded columns back as rows of the named columns.
func (b *fakeBatch) rows(t *testing.T, columns string, want ...string) []string {
	t.Helper()
	names := strings.Split(columns, ", ")
	if len(names) != len(b.cols) {
		t.Fatalf("fake batch has %d columns, %q names %d", len(b.cols), columns, len(names))
	}
	idx := make([]int, len(want))
	for k, w := range want {
		idx[k] = -1
		for i, n := range names {
			if n == w {
				idx[k] = i
			}
		}
		if idx[k] < 0 {
			t.Fatalf("no column %q in %q", w, columns)
		}
	}
	n := len(b.cols[0])
	for i, c := range b.cols {
		if len(c) != n {
			t.Fatalf("column %s has %d rows, column %s has %d", names[i], len(c), names[0], n)
		}
	}
	var out []string
	for r := range n {
		var f []string
		for _, i := range idx {
			v := b.cols[i][r]
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			f = append(f, fmt.Sprint(v))
		}
		out = append(out, strings.Join(f, "|"))
	}
	return out
}

func TestAppendAudit(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixNano()
	ev := func(id, req string, hop recorder.Hop, f func(*recorder.Event)) recorder.Event {
		e := recorder.Event{EventID: id, RequestID: req, Hop: hop, TimeNs: at}
		if f != nil {
			f(&e)
		}
		return e
	}
	cols := []string{"event_id", "request_id", "principal", "method", "server", "target", "decision", "rule", "outcome", "client_name"}
	tests := []struct {
		name string
		evs  []recorder.Event
		want []string
	}{
		{"fields from the request's other hops", []recorder.Event{
			ev("a0", "A", recorder.HopInbound, func(e *recorder.Event) { e.Method, e.Target, e.ClientName = "tools/call", "crm.search", "claude" }),
			ev("a1", "A", recorder.HopAuth, func(e *recorder.Event) { e.Principal, e.AuthDecision, e.AuthRule = "alice", "allowed", "token:alice" }),
			ev("a2", "A", recorder.HopResponse, func(e *recorder.Event) { e.Server = "crm" }),
		}, []string{"a2|A|alice|tools/call|crm|crm.search|allowed|token:alice|0|claude"}},
		{"interleaved requests keep apart", []recorder.Event{
			ev("a0", "A", recorder.HopInbound, func(e *recorder.Event) { e.Target = "crm.a" }),
			ev("b0", "B", recorder.HopInbound, func(e *recorder.Event) { e.Target, e.Principal = "crm.b", "bob" }),
			ev("a1", "A", recorder.HopAuth, func(e *recorder.Event) { e.Principal = "alice" }),
			ev("b1", "B", recorder.HopResponse, nil),
			ev("a2", "A", recorder.HopResponse, nil),
		}, []string{"b1|B|bob|||crm.b|||0|", "a2|A|alice|||crm.a|||0|"}},
		{"response's own fields win", []recorder.Event{
			ev("a0", "A", recorder.HopInbound, func(e *recorder.Event) { e.Target, e.Principal = "crm.x", "x" }),
			ev("a1", "A", recorder.HopResponse, func(e *recorder.Event) { e.Target, e.Principal = "crm.y", "y" }),
		}, []string{"a1|A|y|||crm.y|||0|"}},
		{"auth hop's decision wins over the response's", []recorder.Event{
			ev("a0", "A", recorder.HopAuth, func(e *recorder.Event) { e.AuthDecision, e.AuthRule = "denied", "deny:git.*" }),
			ev("a1", "A", recorder.HopResponse, func(e *recorder.Event) {
				e.AuthDecision, e.AuthRule, e.Outcome = "allowed", "stale", recorder.OutcomeDenied
			}),
		}, []string{"a1|A|||||denied|deny:git.*|4|"}},
		{"refused before parsing: the auth hop is the row", []recorder.Event{
			ev("x0", "X", recorder.HopAuth, func(e *recorder.Event) {
				e.AuthDecision, e.AuthRule, e.Outcome = "denied", "unknown bearer token", recorder.OutcomeDenied
			}),
		}, []string{"x0|X|||||denied|unknown bearer token|4|"}},
		{"denied call with a response: audited once", []recorder.Event{
			ev("d0", "D", recorder.HopAuth, func(e *recorder.Event) { e.AuthDecision = "denied" }),
			ev("d1", "D", recorder.HopResponse, nil),
		}, []string{"d1|D|||||denied||0|"}},
		{"no answered request", []recorder.Event{
			ev("a0", "A", recorder.HopInbound, nil), ev("a1", "A", recorder.HopUpstream, nil),
		}, nil},
		{"unknown outcome becomes ok", []recorder.Event{
			ev("a0", "A", recorder.HopResponse, func(e *recorder.Event) { e.Outcome = recorder.Outcome(42) }),
		}, []string{"a0|A|||||||0|"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBatch(len(strings.Split(auditColumns, ", ")))
			n, err := appendAudit(b, tt.evs)
			if err != nil {
				t.Fatalf("appendAudit: %v", err)
			}
			if n != len(tt.want) {
				t.Errorf("appendAudit = %d rows, want %d", n, len(tt.want))
			}
			var got []string
			if n > 0 {
				got = b.rows(t, auditColumns, cols...)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("appendAudit rows (%s) =\n %q\nwant\n %q", strings.Join(cols, "|"), got, tt.want)
			}
		})
	}
}

func TestAppendPayloads(t *testing.T) {
	evs := []recorder.Event{
		{EventID: "e0", RequestID: "r", Params: []byte(`{"a":1}`), ParamsSHA256: "p0"},
		{EventID: "e1", RequestID: "r"},
		{EventID: "e2", RequestID: "r", Result: []byte(`{"b":2}`), ResultSHA256: "r2", PayloadTruncated: true},
	}
	b := newFakeBatch(len(strings.Split(payloadColumns, ", ")))
	n, err := appendPayloads(b, evs)
	if err != nil || n != 2 {
		t.Fatalf("appendPayloads = %d, %v; want 2 rows", n, err)
	}
	got := b.rows(t, payloadColumns, "event_id", "params", "result", "truncated", "params_sha256", "result_sha256")
	want := []string{`e0|{"a":1}||0|p0|`, `e2||{"b":2}|1||r2`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appendPayloads rows = %q, want %q", got, want)
	}
}

func TestAppendHopsAttrs(t *testing.T) {
	evs := []recorder.Event{
		{EventID: "e0", Attrs: []recorder.Attr{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}}},
		{EventID: "e1"},
		{EventID: "e2", Attrs: []recorder.Attr{{Key: "k3", Value: "v3"}}},
	}
	b := newFakeBatch(len(strings.Split(hopsColumns, ", ")))
	if n, err := appendHops(b, evs); err != nil || n != 3 {
		t.Fatalf("appendHops = %d, %v; want 3 rows", n, err)
	}
	got := b.rows(t, hopsColumns, "event_id", "attr_keys", "attr_values")
	want := []string{"e0|[k1 k2]|[v1 v2]", "e1|[]|[]", "e2|[k3]|[v3]"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appendHops attrs = %q, want %q", got, want)
	}
}

// BenchmarkAppend is the client's own work per 10k-event batch, without
// the driver's encoding or a server.
func BenchmarkAppend(b *testing.B) {
	evs := benchEvents("a", 10000, time.Now())
	for _, f := range []struct {
		name    string
		columns string
		fill    appendFunc
	}{
		{"hops", hopsColumns, appendHops},
		{"payloads", payloadColumns, appendPayloads},
		{"audit", auditColumns, appendAudit},
		{"request_index", indexColumns, appendIndex},
	} {
		b.Run(f.name, func(b *testing.B) {
			fb := &fakeBatch{cols: make([][]any, len(strings.Split(f.columns, ", "))), discard: true}
			b.ReportAllocs()
			rows := 0
			for b.Loop() {
				n, err := f.fill(fb, evs)
				if err != nil {
					b.Fatal(err)
				}
				rows = n
			}
			if rows == 0 {
				b.Fatalf("%s wrote no rows", f.name)
			}
		})
	}
}

// TestWriteBatchInBlocks: a batch bigger than insertBlockEvents goes out
// as several blocks of one INSERT per table; every row lands once, and
// the server makes one part of them, not one per block.
func TestWriteBatchInBlocks(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	n := 3*insertBlockEvents + 4 // requests of 4 events: none split across blocks
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Hour)
	evs := benchEvents("blk", n, base)
	if err := s.WriteBatch(ctx, "blk-1", evs); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if err := s.WriteBatch(ctx, "blk-1", evs); err != nil {
		t.Fatalf("WriteBatch again: %v", err)
	}
	db := s.cfg.Database
	for _, c := range []struct {
		table string
		want  int
	}{{"hops", n}, {"payloads", n / 2}, {"audit", n / 4}, {"request_index", n / 4 * 3}} {
		if got := count(t, s, "SELECT count() FROM "+db+"."+c.table); got != uint64(c.want) {
			t.Errorf("%s rows = %d, want %d", c.table, got, c.want)
		}
	}
	// Every block's rows are its own: the client reuses its column slices
	// from block to block.
	for _, i := range []int{0, insertBlockEvents - 1, insertBlockEvents, 2*insertBlockEvents + 1, n - 1} {
		want := evs[i]
		got, err := s.Trace(ctx, want.RequestID)
		if err != nil {
			t.Fatalf("Trace(%s): %v", want.RequestID, err)
		}
		found := false
		for _, e := range got {
			if e.EventID == want.EventID {
				found = true
				if e.SpanID != want.SpanID || e.TimeNs != want.TimeNs || e.Hop != want.Hop || !reflect.DeepEqual(e.Attrs, want.Attrs) {
					t.Errorf("event %d read back as %+v, written %+v", i, e, want)
				}
			}
		}
		if !found {
			t.Errorf("event %d (%s) not read back", i, want.EventID)
		}
	}
	for _, table := range []string{"hops", "payloads", "request_index", "audit"} {
		if parts := count(t, s, "SELECT count() FROM system.parts WHERE database = ? AND table = ? AND active", db, table); parts != 1 {
			t.Errorf("%s: %d active parts after one %d-event batch, want 1 (the server squashes the blocks of an INSERT)", table, parts, n)
		}
	}
}

// TestWriteChunks: a batch read in chunks makes one part per table; its
// token makes a retry a no-op; and a failure of the chunks' source (the
// spool) is not taken for a refusal of the batch.
func TestWriteChunks(t *testing.T) {
	ctx := context.Background()
	s := migratedStore(t)
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Hour)
	evs := benchEvents("chk", 3*1000, base) // requests of 4 events, none split across chunks
	chunks := func(yield func([]recorder.Event) error) error {
		for i := 0; i < len(evs); i += 1000 {
			if err := yield(evs[i : i+1000]); err != nil {
				return err
			}
		}
		return nil
	}
	for range 2 {
		if err := s.WriteChunks(ctx, "chk-1", chunks); err != nil {
			t.Fatalf("WriteChunks: %v", err)
		}
	}
	db := s.cfg.Database
	for _, c := range []struct {
		table string
		want  int
	}{{"hops", len(evs)}, {"payloads", len(evs) / 2}, {"audit", len(evs) / 4}, {"request_index", len(evs) / 4 * 3}, {"write_tokens", 1}} {
		if got := count(t, s, "SELECT count() FROM "+db+"."+c.table); got != uint64(c.want) {
			t.Errorf("%s rows = %d, want %d", c.table, got, c.want)
		}
	}
	if n := count(t, s, "SELECT toUInt64(events) FROM "+db+".write_tokens WHERE token = 'chk-1'"); n != uint64(len(evs)) {
		t.Errorf("write_tokens counts %d events, want %d", n, len(evs))
	}
	for _, table := range []string{"hops", "payloads", "request_index", "audit"} {
		if parts := count(t, s, "SELECT count() FROM system.parts WHERE database = ? AND table = ? AND active", db, table); parts != 1 {
			t.Errorf("%s: %d active parts after one batch of 3 chunks, want 1", table, parts)
		}
	}
	for _, i := range []int{0, 999, 1000, 2999} {
		got, err := s.Trace(ctx, evs[i].RequestID)
		if err != nil || len(got) != 4 {
			t.Fatalf("Trace(%s) = %d events, %v; want 4", evs[i].RequestID, len(got), err)
		}
	}

	// The source fails after a chunk: retry, not quarantine.
	broken := errors.New("spool read failed")
	err := s.WriteChunks(ctx, "chk-2", func(yield func([]recorder.Event) error) error {
		if err := yield(benchEvents("chk2", 8, base)); err != nil {
			return err
		}
		return broken
	})
	if !errors.Is(err, broken) || recorder.IsPermanent(err) {
		t.Fatalf("WriteChunks with a failing source = %v; want the source's error, not permanent", err)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".write_tokens WHERE token = 'chk-2'"); n != 0 {
		t.Errorf("a batch whose source failed has its token written")
	}
}
