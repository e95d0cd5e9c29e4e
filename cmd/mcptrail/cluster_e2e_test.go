package main

// End-to-end test of recording into a ClickHouse cluster: ZooKeeper and two
// replicas of one shard on loopback, the schema created by `mcptrail
// migrate` ON CLUSTER, the gateway writing through it while one replica is
// stopped and restarted, and the CLI reading through it.

import (
	"context"
	"encoding/csv"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// TestE2EClickHouseCluster: `mcptrail migrate` creates the schema ON
// CLUSTER; the gateway records through the cluster while the replica it
// writes to is stopped and restarted under load; afterwards every replica
// holds each acknowledged event and each answered call exactly once, and
// trace, calls, audit and replay read through the Distributed tables.
func TestE2EClickHouseCluster(t *testing.T) {
	mcptrailBin(t)
	start := time.Now()
	c := chtest.StartCluster(t, "mcptrail", 2)
	t.Logf("ZooKeeper and 2 ClickHouse replicas up in %s", time.Since(start).Round(time.Millisecond))
	srv := c.Servers()
	_, tbURL := startTestBackend(t)
	cfg, err := filepath.Abs("../../testdata/e2e/gateway-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const db = "e2e_cluster"
	env := e2eEnv{Config: cfg, CHAddr: srv[0].Addr(), CHDB: db, SpoolDir: t.TempDir(), TBURL: tbURL,
		FullToken: "tok-full-" + randAlnum(24),
		Extra:     []string{"E2E_CH_ADDR2=" + srv[1].Addr(), "E2E_CH_CLUSTER=" + c.Name()}}
	conns := []driver.Conn{chConn(t, srv[0].Addr()), chConn(t, srv[1].Addr())}

	began := time.Now()
	out, stderr, code := runCLIEnv(t, env.list(), "migrate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "migrated from version 0") {
		t.Fatalf("migrate --config (cluster): exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("mcptrail migrate ON CLUSTER: %s", time.Since(began).Round(time.Millisecond))
	for i, conn := range conns {
		if n := queryUint(t, conn, "SELECT count() FROM system.tables WHERE database = ? AND engine = 'Distributed'", db); n < 8 {
			t.Fatalf("replica %d after migrate: %d Distributed tables, want one per table", i+1, n)
		}
		if n := queryUint(t, conn, "SELECT count() FROM system.replicas WHERE database = ?", db); n < 8 {
			t.Fatalf("replica %d after migrate: %d replicated tables, want one per table", i+1, n)
		}
	}
	gw := startGateway(t, env)
	clients := []*mcpClient{dial(t, gw.url, env.FullToken), dial(t, gw.url, env.FullToken), dial(t, gw.url, env.FullToken)}
	first := load(t, clients, 30)
	_, traced := clients[0].callTool(t, "tb.echo", map[string]any{"message": "before the restart"})
	gw.waitWritten(t)

	// Under load: stop the replica the writer is connected to (the first
	// address), let the writer go on through the other, start it again and
	// let the writer go on; the clients call all the while.
	var answered, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ci, cl := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, _, err := cl.request(ctx, "tools/call", map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": fmt.Sprintf("c%d-%d", ci, i)}})
				cancel()
				if err == nil && resp.Error == nil {
					answered.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	progress := func(what string, from func() uint64, by uint64) {
		t.Helper()
		ref, began := from(), time.Now()
		waitFor(t, what, 60*time.Second, gw.proc, func() (bool, error) {
			n := from()
			return n >= ref+by, fmt.Errorf("%d, want %d", n, ref+by)
		})
		t.Logf("%s: %s", what, time.Since(began).Round(time.Millisecond))
	}
	written := func() uint64 { return gw.stats(t).Written }
	progress("load to be recorded", written, 200)
	began = time.Now()
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = srv[0].Stop(stopCtx)
	cancel()
	t.Logf("stopping the first replica: %s", time.Since(began).Round(time.Millisecond))
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	atStop := gw.stats(t)
	// A gateway (re)starting now migrates an up-to-date schema: that must
	// not wait for the stopped replica (ON CLUSTER DDL would, 180 s).
	began = time.Now()
	out, stderr, code = runCLIEnv(t, env.list(), "migrate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("migrate with the first replica stopped: exit %d after %s\n%s%s", code, time.Since(began).Round(time.Millisecond), out, stderr)
	}
	t.Logf("migrate of the up-to-date schema with the first replica stopped: %s", time.Since(began).Round(time.Millisecond))
	progress("the writer to go on through the second replica", written, 300)
	began = time.Now()
	if err := srv[0].Restart(context.Background()); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("restarting the first replica: %v", err)
	}
	t.Logf("restarting the first replica: %s", time.Since(began).Round(time.Millisecond))
	atRestart := gw.stats(t)
	progress("the writer to go on after the restart", written, 300)
	close(stop)
	wg.Wait()
	last := load(t, clients, 30)
	calls := uint64(first+1+last) + uint64(answered.Load())
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d calls failed while a replica was stopped: the hot path must not depend on ClickHouse", f)
	}
	st := gw.waitWritten(t)
	if st.Dropped != 0 {
		t.Errorf("dropped %d events", st.Dropped)
	}
	t.Logf("%d calls, %d events acknowledged and written, %d retried batches; the first replica stopped after %d written events, restarted after %d",
		calls, st.Spooled, st.Retried, atStop.Written, atRestart.Written)

	// Exactly once: every replica has as many distinct event ids as
	// acknowledged events, and the parts the replicas created by inserts
	// (system.part_log, whatever merges did since) hold exactly that many
	// hop rows; one audit row per answered call.
	c.SyncReplicas(t, db)
	var inserted, deduplicated uint64
	for i, conn := range conns {
		if err := conn.Exec(context.Background(), "SYSTEM FLUSH LOGS"); err != nil {
			t.Fatalf("SYSTEM FLUSH LOGS: %v", err)
		}
		distinct := queryUint(t, conn, "SELECT uniqExact(event_id) FROM "+db+".hops_local")
		if distinct != st.Spooled {
			t.Errorf("replica %d: %d distinct event ids, want %d acknowledged events", i+1, distinct, st.Spooled)
		}
		reqs := queryUint(t, conn, "SELECT uniqExact(request_id) FROM "+db+".audit_local WHERE method = 'tools/call'")
		if reqs != calls {
			t.Errorf("replica %d: audit has %d distinct tools/call requests, want %d answered calls", i+1, reqs, calls)
		}
		// A part whose blocks were already in ZooKeeper is logged as
		// NEW_PART with error INSERT_WAS_DEDUPLICATED (389) and not kept.
		inserted += queryUint(t, conn, "SELECT sum(rows) FROM system.part_log WHERE database = ? AND table = 'hops_local' AND toInt8(event_type) = 1 AND error = 0", db)
		deduplicated += queryUint(t, conn, "SELECT sum(rows) FROM system.part_log WHERE database = ? AND table = 'hops_local' AND toInt8(event_type) = 1 AND error = 389", db)
	}
	if inserted != st.Spooled {
		t.Errorf("the replicas created parts holding %d hop rows by inserts, want exactly the %d acknowledged events", inserted, st.Spooled)
	}
	t.Logf("%d hop rows inserted once; %d hop rows of retried blocks dropped by the replicated tables' deduplication", inserted, deduplicated)

	// The CLI reads through the Distributed tables.
	out, stderr, code = runCLIEnv(t, env.list(), "trace", traced, "--config", cfg)
	if code != 0 || !strings.Contains(out, "request "+traced) || !strings.Contains(out, "outcome ok") {
		t.Errorf("trace %s through the cluster: exit %d\n%s%s", traced, code, out, stderr)
	}
	out, stderr, code = runCLIEnv(t, env.list(), "calls", "--config", cfg, "--since", "1h", "--tool", "tb.echo", "--json", "--limit", "1000000")
	if got := len(requestIDs(t, out)); code != 0 || uint64(got) != calls {
		t.Errorf("calls through the cluster: exit %d, %d tools/call requests, want %d\n%s", code, got, calls, stderr)
	}
	out, stderr, code = runCLIEnv(t, env.list(), "audit", "--config", cfg, "--principal", "alice", "--since", "1h", "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || uint64(len(recs)-1) < calls {
		t.Errorf("audit through the cluster: exit %d, %d rows (%v), want at least %d\n%s", code, len(recs)-1, err, calls, stderr)
	}
	out, stderr, code = runCLIEnv(t, env.list(), "replay", "mock", "--store-config", cfg, "--request-id", traced)
	m := regexp.MustCompile(`(\d+) requests, (\d+) replayed: (\d+) identical, (\d+) changed, (\d+) failed`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[3] != "1" || m[4] != "0" || m[5] != "0" {
		t.Errorf("replay mock of %s through the cluster: exit %d, want 1 identical\n%s%s", traced, code, out, stderr)
	}
	out, stderr, code = runCLIEnv(t, env.list(), "migrate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("migrate again: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("whole cluster test: %s", time.Since(start).Round(time.Millisecond))
}
