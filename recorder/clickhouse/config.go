package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config configures the ClickHouse store.
type Config struct {
	// Addr lists native-protocol endpoints, host:port (default port 9000).
	// Required. The HTTP interface is not supported.
	Addr []string
	// Database holds every mcptrail table. Created by Migrate. Default "mcptrail".
	Database string
	// Username and Password authenticate to ClickHouse. Default user "default",
	// empty password. Take the password from the environment or a file.
	Username, Password string
	// Cluster, when set, is the name of a cluster from the servers'
	// remote_servers config: DDL runs ON CLUSTER, tables are
	// Replicated*MergeTree named <table>_local (replica paths use the {shard}
	// and {replica} macros) and Distributed tables take the plain names.
	// Empty means a single node.
	Cluster string
	// Retention says how long rows are kept, per table group.
	Retention Retention
	// DialTimeout bounds each connection attempt. Default 10s.
	DialTimeout time.Duration
}

// Retention is how long rows are kept. 0 keeps them forever. On servers with
// TTL support it becomes table TTLs at migration time; otherwise call
// Store.DropExpiredPartitions periodically (daily is enough: partitions are
// days for hops and payloads, months for audit).
type Retention struct {
	Hops     time.Duration // hops, request_index and write_tokens; default 30 days
	Payloads time.Duration // request/response bodies; default 7 days
	Audit    time.Duration // the audit trail; default 400 days
}

// DefaultRetention returns the documented retention defaults.
func DefaultRetention() Retention {
	return Retention{Hops: 30 * 24 * time.Hour, Payloads: 7 * 24 * time.Hour, Audit: 400 * 24 * time.Hour}
}

// DefaultConfig returns a Config with every default filled in except Addr.
// Decode user configuration on top of it: a zero Retention field then
// really means "keep forever".
func DefaultConfig() Config {
	return Config{Database: "mcptrail", Username: "default", Retention: DefaultRetention(), DialTimeout: 10 * time.Second}
}

var (
	identRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	clusterRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)
)

func (c *Config) withDefaults() {
	if c.Database == "" {
		c.Database = "mcptrail"
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
}

// Validate reports the first invalid field, named by its config key.
func (c Config) Validate() error {
	if len(c.Addr) == 0 {
		return errors.New("recorder.clickhouse.addr: at least one host:port is required")
	}
	if c.Database != "" && !identRe.MatchString(c.Database) {
		return fmt.Errorf("recorder.clickhouse.database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Database)
	}
	if c.Cluster != "" && !clusterRe.MatchString(c.Cluster) {
		return fmt.Errorf("recorder.clickhouse.cluster: %q is not a valid cluster name", c.Cluster)
	}
	for key, d := range map[string]time.Duration{"hops": c.Retention.Hops, "payloads": c.Retention.Payloads, "audit": c.Retention.Audit} {
		if d < 0 {
			return fmt.Errorf("recorder.clickhouse.retention.%s: %s is negative (0 keeps forever)", key, d)
		}
	}
	return nil
}
