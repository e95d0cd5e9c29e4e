package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrNotFound is returned by Trace when no event matches the id.
var ErrNotFound = errors.New("not found")

// Store reads and writes mcptrail's tables. It is safe for concurrent use.
type Store struct {
	cfg      Config
	conn     driver.Conn
	features Features
	log      *slog.Logger

	// indexView caches whether the server derives request_index from hops
	// (migration 0003's view exists); see serverDerivesIndex.
	indexView schemaFact
	// auditRoles caches whether audit has migration 0007's roles column.
	auditRoles schemaFact
}

// Open connects, pings and detects the server's features. It does not
// create anything; call Migrate.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("opening ClickHouse store: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        cfg.Addr,
		Auth:        clickhouse.Auth{Username: cfg.Username, Password: cfg.Password},
		DialTimeout: cfg.DialTimeout,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:  clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "mcptrail", Version: "1"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("opening ClickHouse connection to %v: %w", cfg.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("pinging ClickHouse at %v: %w", cfg.Addr, err)
	}
	f, err := detectFeatures(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Store{cfg: cfg, conn: conn, features: f, log: logger.With("component", "recorder.clickhouse")}
	s.log.Info("connected to ClickHouse", "addr", cfg.Addr, "version", f.Version, "database", cfg.Database, "cluster", cfg.Cluster,
		"ttl", f.TTL, "datetime64", f.DateTime64, "low_cardinality", f.LowCardinality, "dedup_token", f.DedupToken)
	return s, nil
}

// Features returns what was detected on the server at Open.
func (s *Store) Features() Features { return s.features }

// Close closes the connection pool.
func (s *Store) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("closing ClickHouse connection: %w", err)
	}
	return nil
}

// table returns the qualified name the Go code reads and writes: in cluster
// mode the Distributed table, else the table itself.
func (s *Store) table(name string) string { return s.cfg.Database + "." + name }

// storageTable is where the rows physically live (partitions, ALTERs).
func (s *Store) storageTable(name string) string {
	if s.cfg.Cluster != "" {
		return s.cfg.Database + "." + name + "_local"
	}
	return s.cfg.Database + "." + name
}

// Ping checks that the server answers; for health checks.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("pinging ClickHouse at %v: %w", s.cfg.Addr, err)
	}
	return nil
}
