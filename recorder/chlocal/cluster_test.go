package chlocal_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
)

// TestClusterStartsOnTakenPorts: ZooKeeper and a two-replica cluster start
// although a port picked for each was taken before it could bind it (they
// pick again), and the replicas replicate through ZooKeeper: a table
// created ON CLUSTER on one replica exists on both, and rows inserted on
// one are fetched by the other.
func TestClusterStartsOnTakenPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	var calls int
	restore := chlocal.SetFreePort(func(real func() (int, error)) (int, error) {
		calls++
		// 1: ZooKeeper's first pick; 5: the first replica's interserver
		// port in the cluster's first set (ZooKeeper's second pick is 2).
		if calls == 1 || calls == 5 {
			return takenPort, nil
		}
		return real()
	})
	defer restore()
	ctx := context.Background()
	dir := t.TempDir()
	zk, err := chlocal.StartZooKeeper(ctx, chlocal.ZooKeeperOptions{Dir: dir + "/zk"})
	if err != nil {
		t.Fatalf("StartZooKeeper with a taken first port: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := zk.Stop(ctx); err != nil {
			t.Errorf("stopping ZooKeeper: %v", err)
		}
	}()
	if strings.HasSuffix(zk.Addr(), ":"+strconv.Itoa(takenPort)) {
		t.Fatalf("ZooKeeper claims the taken port %d", takenPort)
	}
	c, err := chlocal.StartCluster(ctx, chlocal.ClusterOptions{Dir: dir, Name: "pt", ZooKeeper: []string{zk.Addr()}})
	if err != nil {
		t.Fatalf("StartCluster with a taken port: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	}()
	if calls < 8+2 {
		t.Fatalf("port picker called %d times, want a second set of cluster ports after the taken one", calls)
	}
	addrs := c.Addrs()
	if len(addrs) != 2 || c.Name() != "pt" {
		t.Fatalf("cluster %s addrs %v, want 2 replicas of pt", c.Name(), addrs)
	}
	exec(t, addrs[0], "CREATE DATABASE IF NOT EXISTS pt ON CLUSTER pt")
	exec(t, addrs[0], "CREATE TABLE pt.t ON CLUSTER pt (x UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/pt/t', '{replica}') ORDER BY x")
	exec(t, addrs[0], "INSERT INTO pt.t (x) SELECT number FROM system.numbers LIMIT 10")
	exec(t, addrs[1], "SYSTEM SYNC REPLICA pt.t")
	if got := query(t, addrs[1], "SELECT count() FROM pt.t"); got != 10 {
		t.Fatalf("rows on the second replica = %d, want the 10 inserted on the first", got)
	}
	if got := query(t, addrs[1], "SELECT count() FROM system.clusters WHERE cluster = 'pt'"); got != 2 {
		t.Fatalf("system.clusters on the second replica lists %d replicas of pt, want 2", got)
	}
}

// TestZooKeeperMissing: without java or the ZooKeeper jar, StartZooKeeper
// fails at once with the install hint, and starts nothing.
func TestZooKeeperMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    chlocal.ZooKeeperOptions
	}{
		{"no java", chlocal.ZooKeeperOptions{Dir: t.TempDir(), Java: "no-such-java-binary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chlocal.StartZooKeeper(context.Background(), tc.o)
			if !errors.Is(err, chlocal.ErrNoZooKeeper) || !strings.Contains(err.Error(), "apt-get install") {
				t.Fatalf("StartZooKeeper(%+v) err = %v, want ErrNoZooKeeper with the install hint", tc.o, err)
			}
		})
	}
	if _, err := chlocal.StartCluster(context.Background(), chlocal.ClusterOptions{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "ZooKeeper is empty") {
		t.Fatalf("StartCluster without ZooKeeper: err = %v, want it named", err)
	}
}
