package clickhouse

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
)

// clusterReplicas opens one connection per replica of c.
func clusterReplicas(t *testing.T, c *chtest.Cluster) []driver.Conn {
	t.Helper()
	var conns []driver.Conn
	for _, addr := range c.Addrs() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns = append(conns, conn)
	}
	return conns
}

func connCount(t *testing.T, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestCluster runs the schema, the writer and the readers on a real
// two-replica cluster (one shard, ZooKeeper, ON CLUSTER DDL), shared by the
// subtests.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	c := chtest.StartCluster(t, "mcp", 2)
	conns := clusterReplicas(t, c)
	cfg := DefaultConfig()
	cfg.Addr, cfg.Cluster, cfg.Database = c.Addrs(), "mcp", "clx"
	s, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// second reaches the second replica only: a gateway whose first
	// address is down.
	cfg2 := cfg
	cfg2.Addr = c.Addrs()[1:]
	second, err := Open(ctx, cfg2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	db := cfg.Database

	t.Run("migrate creates every table on every replica", func(t *testing.T) {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate on the cluster: %v", err)
		}
		latest := migrations[len(migrations)-1].Version
		for i, conn := range conns {
			engines := map[string]string{}
			rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", db)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n, e string
				if err := rows.Scan(&n, &e); err != nil {
					t.Fatal(err)
				}
				engines[n] = e
			}
			rows.Close()
			dists := 0
			for name, engine := range engines {
				base, local := strings.CutSuffix(name, "_local")
				switch {
				case strings.HasSuffix(name, "_mv_local"):
					if engine != "MaterializedView" {
						t.Errorf("replica %d: %s engine %s, want MaterializedView", i+1, name, engine)
					}
				case local:
					if !strings.HasPrefix(engine, "Replicated") {
						t.Errorf("replica %d: %s engine %s, want Replicated*", i+1, name, engine)
					}
					if engines[base] != "Distributed" {
						t.Errorf("replica %d: %s has no Distributed table %s (engine %q)", i+1, name, base, engines[base])
					}
				default:
					if engine != "Distributed" {
						t.Errorf("replica %d: %s engine %s, want Distributed", i+1, name, engine)
					}
					dists++
					// Every column of the storage table reads through the
					// Distributed one, in the same order.
					if got, want := columns(t, conn, db, name), columns(t, conn, db, name+"_local"); !reflect.DeepEqual(got, want) {
						t.Errorf("replica %d: columns of %s = %v, want those of %s_local %v", i+1, name, got, name, want)
					}
				}
			}
			if dists < 8 {
				t.Errorf("replica %d: %d Distributed tables (%v), want every table", i+1, dists, engines)
			}
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != latest {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, latest)
		}
		c.SyncReplicas(t, db)
		before := connCount(t, conns[1], "SELECT count() FROM "+db+".schema_migrations_local")
		if err := second.Migrate(ctx); err != nil {
			t.Fatalf("Migrate again through the second replica: %v", err)
		}
		if after := connCount(t, conns[1], "SELECT count() FROM "+db+".schema_migrations_local"); after != before || before != uint64(len(migrations)-1) {
			t.Errorf("schema_migrations rows %d -> %d after a no-op Migrate, want %d", before, after, len(migrations)-1)
		}
	})

	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	evs := fixture(base)
	t.Run("an acknowledged batch is stored on the replica that took it", func(t *testing.T) {
		if err := s.WriteBatch(ctx, "batch-1", evs); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		// No waiting: the writer's contract is that rows are durable when
		// WriteBatch returns nil, so they are in the replicated storage
		// table of the replica it wrote to, not queued by a Distributed
		// table for later.
		for _, q := range []struct {
			table string
			want  int
		}{{"hops_local", len(evs)}, {"audit_local", 3}, {"payloads_local", 2}, {"write_tokens_local", 1}} {
			if got := connCount(t, conns[0], "SELECT count() FROM "+db+"."+q.table); got != uint64(q.want) {
				t.Errorf("%s on the first replica right after WriteBatch = %d rows, want %d", q.table, got, q.want)
			}
		}
		c.SyncReplicas(t, db)
		for _, q := range []string{"hops_local", "audit_local", "payloads_local", "request_index_local"} {
			a, b := connCount(t, conns[0], "SELECT count() FROM "+db+"."+q), connCount(t, conns[1], "SELECT count() FROM "+db+"."+q)
			if a != b || a == 0 {
				t.Errorf("%s: %d rows on the first replica, %d on the second, want the same, not 0", q, a, b)
			}
		}
	})

	t.Run("a retry through the other replica is deduplicated", func(t *testing.T) {
		// The first replica wrote the rows but the writer did not hear the
		// answer; the retry reaches the second replica and, the token
		// check not seeing the token yet (empty token here), sends the
		// same rows again. The replicated tables drop the identical blocks.
		if err := second.WriteBatch(ctx, "", evs); err != nil {
			t.Fatalf("WriteBatch through the second replica: %v", err)
		}
		c.SyncReplicas(t, db)
		for i, conn := range conns {
			for _, q := range []struct {
				table string
				want  int
			}{{"hops_local", len(evs)}, {"audit_local", 3}, {"payloads_local", 2}} {
				if got := connCount(t, conn, "SELECT count() FROM "+db+"."+q.table); got != uint64(q.want) {
					t.Errorf("replica %d: %s after the retry = %d raw rows, want %d", i+1, q.table, got, q.want)
				}
			}
		}
	})

	t.Run("reads go through the Distributed tables from either replica", func(t *testing.T) {
		for name, st := range map[string]*Store{"first": s, "second": second} {
			got, err := st.Trace(ctx, "r1", WithPayloads())
			if err != nil {
				t.Fatalf("%s: Trace: %v", name, err)
			}
			diffEvents(t, name+": Trace(r1)", got, eventsOf(evs, "r1"))
			calls, err := st.Calls(ctx, CallsQuery{})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range calls {
				ids = append(ids, c.RequestID)
			}
			if want := []string{"r3", "r2", "r1"}; !reflect.DeepEqual(ids, want) {
				t.Errorf("%s: Calls = %v, want %v", name, ids, want)
			}
			var audited []string
			if err := st.Audit(ctx, AuditQuery{Principal: "alice"}, func(r AuditRow) error { audited = append(audited, r.RequestID); return nil }); err != nil {
				t.Fatal(err)
			}
			sort.Strings(audited)
			if want := []string{"r1", "r2"}; !reflect.DeepEqual(audited, want) {
				t.Errorf("%s: Audit(alice) = %v, want %v", name, audited, want)
			}
			sel, err := st.Select(ctx, Selection{Tool: "crm.search", Since: base.Add(-time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			if len(sel) == 0 || sel[0].RequestID != "r1" {
				t.Errorf("%s: Select(crm.search) = %+v, want r1's events", name, sel)
			}
		}
	})

	t.Run("replay runs", func(t *testing.T) {
		run := ReplayRun{ID: "run-c", Started: time.Now().UTC(), Finished: time.Now().UTC(), Mode: "dry-run", Target: "staging"}
		if err := s.WriteReplayRun(ctx, run, []ReplayResult{{RequestID: "r1", Tool: "crm.search", Status: ReplayIdentical}}); err != nil {
			t.Fatalf("WriteReplayRun: %v", err)
		}
		c.SyncReplicas(t, db)
		for i, conn := range conns {
			if n := connCount(t, conn, "SELECT count() FROM "+db+".replay_results WHERE replay_run_id = 'run-c'"); n != 1 {
				t.Errorf("replica %d: replay_results of run-c = %d, want 1", i+1, n)
			}
			if n := connCount(t, conn, "SELECT count() FROM "+db+".replay_runs WHERE replay_run_id = 'run-c' AND total = 1"); n != 1 {
				t.Errorf("replica %d: replay_runs of run-c = %d, want 1", i+1, n)
			}
		}
	})

	t.Run("tool pins written on one replica are read from the other", func(t *testing.T) {
		t0 := time.Now().Add(-time.Hour).UnixNano()
		pins := []recorder.PinEvent{
			{TimeNs: t0, Server: "tb", Tool: "echo", Kind: recorder.PinPinned, Hash: "h1", Definition: `{"description":"a"}`, Actor: "gw"},
			{TimeNs: t0 + 1, Server: "tb", Tool: "echo", Kind: recorder.PinApproved, Hash: "h2", PrevHash: "h1", Definition: `{"description":"b"}`, Actor: "alice"},
		}
		if err := s.AppendPins(ctx, pins); err != nil {
			t.Fatalf("AppendPins: %v", err)
		}
		c.SyncReplicas(t, db)
		got, err := second.LoadPins(ctx)
		if err != nil {
			t.Fatalf("LoadPins through the second replica: %v", err)
		}
		if len(got) != 1 || got[0].Hash != "h2" || got[0].Actor != "alice" {
			t.Errorf("LoadPins through the second replica = %+v, want echo's approval of h2", got)
		}
	})

	t.Run("retention drops partitions on every replica", func(t *testing.T) {
		old := fixture(time.Now().UTC().AddDate(0, 0, -40))
		for i := range old {
			old[i].EventID, old[i].RequestID = "old-"+old[i].EventID, "old-"+old[i].RequestID
		}
		if err := s.WriteBatch(ctx, "old", old); err != nil {
			t.Fatal(err)
		}
		if n, err := s.DropExpiredPartitions(ctx); err != nil || n == 0 {
			t.Fatalf("DropExpiredPartitions = %d, %v; want some dropped", n, err)
		}
		c.SyncReplicas(t, db)
		for i, conn := range conns {
			if n := connCount(t, conn, "SELECT count() FROM "+db+".hops_local WHERE request_id LIKE 'old-%'"); n != 0 {
				t.Errorf("replica %d: %d expired hops left", i+1, n)
			}
			if n := connCount(t, conn, "SELECT count() FROM "+db+".hops_local"); n != uint64(len(evs)) {
				t.Errorf("replica %d: %d hops, want the %d recent ones", i+1, n, len(evs))
			}
		}
	})

	t.Run("a replica killed and restarted catches up", func(t *testing.T) {
		killed := c.Servers()[0]
		if err := killed.Kill(); err != nil {
			t.Fatal(err)
		}
		more := fixture(base.Add(time.Minute))
		for i := range more {
			more[i].EventID, more[i].RequestID = "k-"+more[i].EventID, "k-"+more[i].RequestID
		}
		// The store's connections to the killed replica fail; the
		// pipeline retries the batch, which reaches the other replica.
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = s.WriteBatch(ctx, "batch-k", more); err == nil {
				break
			}
			t.Logf("attempt %d with the first replica killed: %v", attempt+1, err)
		}
		if err != nil {
			t.Fatalf("WriteBatch with the first replica killed: %v", err)
		}
		if err := killed.Restart(ctx); err != nil {
			t.Fatalf("restarting the killed replica: %v", err)
		}
		c.SyncReplicas(t, db) // also waits for its tables to leave read-only
		for i, conn := range clusterReplicas(t, c) {
			if n := connCount(t, conn, "SELECT count() FROM "+db+".hops_local"); n != uint64(len(evs)+len(more)) {
				t.Errorf("replica %d after the kill and restart: %d hops, want %d", i+1, n, len(evs)+len(more))
			}
		}
		got, err := s.Trace(ctx, "k-r1")
		if err != nil || len(got) != len(eventsOf(more, "k-r1")) {
			t.Errorf("Trace(k-r1) after the restart = %d events, %v; want %d", len(got), err, len(eventsOf(more, "k-r1")))
		}
	})
}

func columns(t *testing.T, conn driver.Conn, db, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name, type FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n, typ string
		if err := rows.Scan(&n, &typ); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s", n, typ))
	}
	return out
}
