package clickhouse

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// indexRows reads request_index as sorted text rows, one per stored row.
func indexRows(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.conn.Query(context.Background(), "SELECT id, toString(kind), request_id, toUnixTimestamp(ts), min_ts_ns, max_ts_ns FROM "+
		s.table("request_index")+" ORDER BY id, kind, request_id, min_ts_ns, max_ts_ns")
	if err != nil {
		t.Fatalf("reading request_index: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var (
			id, kind, req string
			ts            uint32
			lo, hi        uint64
		)
		if err := rows.Scan(&id, &kind, &req, &ts, &lo, &hi); err != nil {
			t.Fatalf("scanning request_index: %v", err)
		}
		out = append(out, fmt.Sprintf("%s %s %s %d %d %d", id, kind, req, ts, lo, hi))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading request_index: %v", err)
	}
	return out
}

// indexFixture has what the index must get right: hops without a request
// id, requests without trace or session, a request whose hops are not
// adjacent in the batch, and a request spread over two days.
func indexFixture(base time.Time) []recorder.Event {
	evs := fixture(base)
	day := base.Truncate(24 * time.Hour).Add(24*time.Hour - time.Millisecond)
	evs = append(evs,
		recorder.Event{EventID: "n1", Hop: recorder.HopNotification, TimeNs: base.UnixNano(), SessionID: "S1"},
		recorder.Event{EventID: "split-0", RequestID: "split", TraceID: "T2", Hop: recorder.HopInbound, TimeNs: day.UnixNano()},
		recorder.Event{EventID: "split-1", RequestID: "split", TraceID: "T2", SessionID: "S3", Hop: recorder.HopResponse,
			TimeNs: day.Add(2 * time.Millisecond).UnixNano()},
	)
	// Interleave r1's last hop after r2 and r3.
	r1last := evs[3]
	evs = append(append(evs[:3:3], evs[4:]...), r1last)
	return evs
}

// TestIndexViewMatchesClient: the rows the server derives (migration 0003)
// are the rows the writer of v2 sent, batch for batch.
func TestIndexViewMatchesClient(t *testing.T) {
	ctx := context.Background()
	base := time.Now().UTC().Add(-48 * time.Hour)
	evs := indexFixture(base)

	client := openStore(t, DefaultRetention())
	if err := client.migrateTo(ctx, 2); err != nil {
		t.Fatalf("migrating to v2: %v", err)
	}
	server := migratedStore(t)
	for _, s := range []*Store{client, server} {
		if err := s.WriteBatch(ctx, "b1", evs); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		// A second batch with the tail of r1 again: a second row per id.
		if err := s.WriteBatch(ctx, "b2", evs[len(evs)-1:]); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
	}
	if v, err := server.serverDerivesIndex(ctx); err != nil || !v {
		t.Fatalf("latest schema: serverDerivesIndex = %v, %v; want true", v, err)
	}
	if v, err := client.serverDerivesIndex(ctx); err != nil || v {
		t.Fatalf("v2 schema: serverDerivesIndex = %v, %v; want false", v, err)
	}
	want, got := indexRows(t, client), indexRows(t, server)
	// r1, r2 and split: request, trace, session; r3: request, session;
	// the second batch: r1's three again.
	if len(want) != 14 {
		t.Fatalf("client-written request_index has %d rows, want 14:\n%q", len(want), want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("server-derived request_index differs from the client's:\n got %q\nwant %q", got, want)
	}
	for _, s := range []*Store{client, server} {
		tr, err := s.Trace(ctx, "T2")
		if err != nil || len(tr) != 2 {
			t.Fatalf("Trace(T2) = %d events, %v; want the 2 hops of split", len(tr), err)
		}
	}
}

// TestIndexViewUpgrade: a store opened on a v2 schema sends index rows
// itself; after Migrate adds the view it stops, so no row is doubled.
func TestIndexViewUpgrade(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, DefaultRetention())
	if err := s.migrateTo(ctx, 2); err != nil {
		t.Fatalf("migrating to v2: %v", err)
	}
	base := time.Now().UTC().Add(-time.Hour)
	if err := s.WriteBatch(ctx, "old", fixture(base)); err != nil {
		t.Fatalf("WriteBatch on v2: %v", err)
	}
	before := count(t, s, "SELECT count() FROM "+s.table("request_index"))
	if before != 8 { // r1, r2: request, trace, session; r3: request, session
		t.Fatalf("request_index rows on v2 = %d, want 8", before)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	evs := fixture(base.Add(time.Minute))
	for i := range evs {
		evs[i].EventID, evs[i].RequestID = "new-"+evs[i].EventID, "new-"+evs[i].RequestID
	}
	if err := s.WriteBatch(ctx, "new", evs); err != nil {
		t.Fatalf("WriteBatch after Migrate: %v", err)
	}
	if n := count(t, s, "SELECT count() FROM "+s.table("request_index")+" WHERE request_id LIKE 'new-%'"); n != 8 {
		t.Fatalf("request_index rows of the batch after the upgrade = %d, want 8 (once each)", n)
	}
	for _, id := range []string{"r1", "new-r1"} {
		if _, err := s.Trace(ctx, id); err != nil {
			t.Fatalf("Trace(%s) after upgrade: %v", id, err)
		}
	}
}
