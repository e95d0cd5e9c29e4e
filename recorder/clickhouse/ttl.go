package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ttlTables are the tables whose TTL follows Config.Retention.
var ttlTables = []struct {
	name string
	keep func(Retention) time.Duration
}{
	{"hops", func(r Retention) time.Duration { return r.Hops }},
	{"request_index", func(r Retention) time.Duration { return r.Hops }},
	{"write_tokens", func(r Retention) time.Duration { return r.Hops }},
	{"payloads", func(r Retention) time.Duration { return r.Payloads }},
	{"audit", func(r Retention) time.Duration { return r.Audit }},
}

// ttlInterval is the retention as ClickHouse prints it back in
// system.tables.engine_full, and as we write it.
func ttlInterval(d time.Duration) (normalized, written string) {
	if d%(24*time.Hour) == 0 {
		n := int64(d / (24 * time.Hour))
		return fmt.Sprintf("toIntervalDay(%d)", n), fmt.Sprintf("INTERVAL %d DAY", n)
	}
	n := int64(d / time.Second)
	return fmt.Sprintf("toIntervalSecond(%d)", n), fmt.Sprintf("INTERVAL %d SECOND", n)
}

// ttlChange returns the ALTER clause that brings a table whose engine_full
// is engineFull to retention d, or "" when it already matches. Tables are
// created with the TTL of the configuration at that time; this keeps them
// in step when the retention changes later.
func ttlChange(engineFull string, d time.Duration) string {
	has := strings.Contains(engineFull, " TTL ")
	if d <= 0 {
		if has {
			return "REMOVE TTL"
		}
		return ""
	}
	norm, written := ttlInterval(d)
	if has && strings.Contains(engineFull, "toDateTime(ts) + "+norm) {
		return ""
	}
	return "MODIFY TTL toDateTime(ts) + " + written
}

// syncTTL applies retention changes to existing tables on servers with TTL.
func (s *Store) syncTTL(ctx context.Context) error {
	if !s.features.TTL {
		return nil
	}
	for _, t := range ttlTables {
		table := s.storageTable(t.name)
		_, name, _ := cutStorage(table)
		var engineFull string
		err := s.conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, name).Scan(&engineFull)
		if err != nil {
			return fmt.Errorf("reading TTL of %s: %w", table, err)
		}
		change := ttlChange(engineFull, t.keep(s.cfg.Retention))
		if change == "" {
			continue
		}
		if err := s.conn.Exec(ctx, "ALTER TABLE "+table+s.onCluster()+" "+change); err != nil {
			return fmt.Errorf("changing TTL of %s (%s): %w", table, change, err)
		}
		s.log.Info("changed table TTL to match retention", "table", table, "change", change)
	}
	return nil
}
