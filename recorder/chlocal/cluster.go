package chlocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// ClusterMember is what one server's config says about the cluster it
// belongs to: the remote_servers entry (one shard of replicas with
// internal_replication, so that Replicated tables replicate themselves),
// the ZooKeeper ensemble, the {shard} and {replica} macros, the
// interserver HTTP port replicas fetch parts through, and distributed_ddl
// so that ON CLUSTER queries run (ClickHouse 18.16 refuses them without it).
type ClusterMember struct {
	// Name is the cluster's name in remote_servers (Config.Cluster of the
	// store).
	Name string
	// Shard and Replica are the {shard} and {replica} macros.
	Shard, Replica string
	// Replicas are the native-protocol addresses of every replica of the
	// shard, this server's own included.
	Replicas []HostPort
	// ZooKeeper lists the ZooKeeper servers.
	ZooKeeper []HostPort
	// InterserverPort is the interserver HTTP port on 127.0.0.1; 0 picks one.
	InterserverPort int
	// SessionTimeout is the ZooKeeper session timeout. Default 5s: a
	// replica stopped without closing its session is seen as inactive
	// that soon.
	SessionTimeout time.Duration
}

// HostPort is a host and a TCP port.
type HostPort struct {
	Host string
	Port int
}

func (h HostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// ParseHostPort splits "host:port".
func ParseHostPort(s string) (HostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return HostPort{}, fmt.Errorf("parsing address %q: %w", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return HostPort{}, fmt.Errorf("parsing address %q: bad port", s)
	}
	return HostPort{host, p}, nil
}

// SessionTimeoutMs is SessionTimeout in milliseconds for the config file.
func (m ClusterMember) SessionTimeoutMs() int64 {
	if m.SessionTimeout <= 0 {
		return 5000
	}
	return m.SessionTimeout.Milliseconds()
}

// ClusterOptions configure a local cluster: one shard of Replicas servers
// on 127.0.0.1 coordinating through an already running ZooKeeper.
type ClusterOptions struct {
	// Dir holds one directory per replica (replica1, replica2, ...). Required.
	Dir string
	// Name is the cluster's name. Default "mcptrail".
	Name string
	// Replicas is the number of servers. Default 2.
	Replicas int
	// ZooKeeper lists host:port of the ZooKeeper servers. Required.
	ZooKeeper []string
	// Binary, User, StartTimeout and Logger are passed to every server's
	// Options.
	Binary, User string
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Cluster is a set of local servers forming one shard of replicas.
type Cluster struct {
	name    string
	servers []*Server
}

// StartCluster starts o.Replicas servers in parallel, each with a config
// naming all of them, and returns once every one answers a ping. When a
// picked port was taken before its server bound it, every server is
// stopped and the cluster is started again on new ports (the remote_servers
// of each names the others' ports), a few times.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("starting local ClickHouse cluster: ClusterOptions.Dir is empty")
	}
	if len(o.ZooKeeper) == 0 {
		return nil, errors.New("starting local ClickHouse cluster: ClusterOptions.ZooKeeper is empty")
	}
	if o.Name == "" {
		o.Name = "mcptrail"
	}
	if o.Replicas <= 0 {
		o.Replicas = 2
	}
	var zk []HostPort
	for _, a := range o.ZooKeeper {
		hp, err := ParseHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("starting local ClickHouse cluster: ZooKeeper: %w", err)
		}
		zk = append(zk, hp)
	}
	for attempt := 1; ; attempt++ {
		c, err := startClusterOnce(ctx, o, zk)
		if err == nil {
			return c, nil
		}
		if attempt == maxPortAttempts || !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
}

func startClusterOnce(ctx context.Context, o ClusterOptions, zk []HostPort) (*Cluster, error) {
	n := o.Replicas
	opts := make([]Options, n)
	replicas := make([]HostPort, n)
	for i := range opts {
		var ports [3]int
		for j := range ports {
			p, err := freePort()
			if err != nil {
				return nil, fmt.Errorf("picking ports for local ClickHouse cluster: %w", err)
			}
			ports[j] = p
		}
		replicas[i] = HostPort{"127.0.0.1", ports[0]}
		opts[i] = Options{
			Dir: filepath.Join(o.Dir, "replica"+strconv.Itoa(i+1)), Binary: o.Binary, User: o.User,
			StartTimeout: o.StartTimeout, Logger: o.Logger, TCPPort: ports[0], HTTPPort: ports[1],
			Cluster: &ClusterMember{Name: o.Name, Shard: "01", Replica: "replica" + strconv.Itoa(i+1),
				ZooKeeper: zk, InterserverPort: ports[2]},
		}
	}
	for i := range opts {
		opts[i].Cluster.Replicas = replicas
	}
	c := &Cluster{name: o.Name, servers: make([]*Server, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.servers[i], errs[i] = Start(ctx, opts[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, s := range c.servers {
			if s != nil {
				_ = s.Stop(stopCtx)
			}
		}
		return nil, fmt.Errorf("starting local ClickHouse cluster %s: %w", o.Name, err)
	}
	return c, nil
}

// Name is the cluster's name in remote_servers.
func (c *Cluster) Name() string { return c.name }

// Servers are the replicas, in remote_servers order.
func (c *Cluster) Servers() []*Server { return c.servers }

// Addrs are the replicas' native-protocol addresses, in remote_servers order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.Addr()
	}
	return out
}

// Stop stops every replica (see Server.Stop).
func (c *Cluster) Stop(ctx context.Context) error {
	errs := make([]error, len(c.servers))
	var wg sync.WaitGroup
	for i, s := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
