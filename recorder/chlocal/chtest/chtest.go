// Package chtest starts throwaway local ClickHouse servers for tests.
//
// Tests never skip for want of a server: when no binary is installed the
// helpers fail the test with the install hint of chlocal.ErrNoBinary.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
)

// StartForTest starts a server in t.TempDir() and stops it in t.Cleanup.
func StartForTest(t testing.TB) *chlocal.Server {
	t.Helper()
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting local ClickHouse for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stopping local ClickHouse: %v", err)
		}
	})
	return s
}

var shared struct {
	sync.Mutex
	srv *chlocal.Server
	dir string
	err error
}

// Shared returns one server per test binary, started on first use, so that
// a package's tests pay the start-up once. Call StopShared from TestMain
// after m.Run. Tests sharing it must use their own database (Database).
func Shared(tb testing.TB) *chlocal.Server {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "mcptrail-chtest-")
		if shared.err == nil {
			shared.srv, shared.err = chlocal.Start(context.Background(), chlocal.Options{Dir: shared.dir})
		}
	}
	if shared.err != nil {
		tb.Fatalf("starting shared local ClickHouse: %v", shared.err)
	}
	return shared.srv
}

// StopShared stops the shared server, if one was started, and removes its
// directory.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = shared.srv.Stop(ctx)
		cancel()
		shared.srv = nil
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
		shared.dir = ""
	}
}

// Database returns a fresh database name, unique per call, and drops that
// database on addr when the test ends. The database itself is not created.
func Database(tb testing.TB, addr string) string {
	tb.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("t_%s", hex.EncodeToString(b[:]))
	tb.Cleanup(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
		if err != nil {
			tb.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			tb.Errorf("dropping test database %s: %v", name, err)
		}
	})
	return name
}

// Cluster is a local ClickHouse cluster for tests: a standalone ZooKeeper
// and one shard of replicas (see chlocal.StartCluster).
type Cluster struct {
	*chlocal.Cluster
	ZooKeeper *chlocal.ZooKeeper
}

// StartCluster starts ZooKeeper and a cluster named name of replicas
// servers in dirs under t.TempDir(), and stops them in t.Cleanup. Share it
// across subtests: it costs a few seconds.
func StartCluster(t testing.TB, name string, replicas int) *Cluster {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	zk, err := chlocal.StartZooKeeper(ctx, chlocal.ZooKeeperOptions{Dir: dir + "/zookeeper"})
	if err != nil {
		t.Fatalf("starting ZooKeeper for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := zk.Stop(ctx); err != nil {
			t.Errorf("stopping ZooKeeper: %v", err)
		}
	})
	c, err := chlocal.StartCluster(ctx, chlocal.ClusterOptions{Dir: dir, Name: name, Replicas: replicas, ZooKeeper: []string{zk.Addr()}})
	if err != nil {
		t.Fatalf("starting local ClickHouse cluster for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// What the servers said, for the failure's cause.
			logs := []string{filepath.Join(dir, "zookeeper", "zookeeper.log")}
			for _, s := range c.Servers() {
				logs = append(logs, filepath.Join(s.Dir(), "server.err.log"))
			}
			for _, f := range logs {
				if b, err := os.ReadFile(f); err == nil {
					if len(b) > 3000 {
						b = b[len(b)-3000:]
					}
					t.Logf("%s:\n%s", f, b)
				}
			}
		}
		// Killed, not stopped: its data is thrown away, and a graceful
		// 18.16 replica takes ~9 s to shut down.
		for _, s := range c.Servers() {
			if err := s.Kill(); err != nil {
				t.Errorf("killing local ClickHouse replica %s: %v", s.Addr(), err)
			}
		}
	})
	return &Cluster{Cluster: c, ZooKeeper: zk}
}

// SyncReplicas waits (SYSTEM SYNC REPLICA, at most a minute) until every
// replica has fetched every part of db's replicated tables, so that a
// count on one replica is the cluster's.
func (c *Cluster) SyncReplicas(tb testing.TB, db string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range c.Addrs() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
		if err != nil {
			tb.Fatalf("connecting to replica %s: %v", addr, err)
		}
		defer conn.Close()
		// A restarted replica's tables are read-only until it has a
		// ZooKeeper session again (after a kill: once the old one expired).
		for {
			var readonly uint64
			q := "SELECT count() FROM system.replicas WHERE database = ? AND (is_readonly OR is_session_expired)"
			if err := conn.QueryRow(ctx, q, db).Scan(&readonly); err != nil {
				tb.Fatalf("waiting for the replicas of %s on %s to be writable: %v", db, addr, err)
			}
			if readonly == 0 {
				break
			}
			select {
			case <-ctx.Done():
				tb.Fatalf("waiting for the replicas of %s on %s to be writable: %d still read-only: %v", db, addr, readonly, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
		rows, err := conn.Query(ctx, "SELECT table FROM system.replicas WHERE database = ?", db)
		if err != nil {
			tb.Fatalf("listing the replicated tables of %s on %s: %v", db, addr, err)
		}
		var tables []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				tb.Fatal(err)
			}
			tables = append(tables, n)
		}
		rows.Close()
		if len(tables) == 0 {
			tb.Fatalf("no replicated tables in %s on %s", db, addr)
		}
		for _, tbl := range tables {
			if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+tbl); err != nil {
				tb.Fatalf("SYSTEM SYNC REPLICA %s.%s on %s: %v", db, tbl, addr, err)
			}
		}
	}
}
