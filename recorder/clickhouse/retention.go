package clickhouse

import (
	"context"
	"fmt"
	"time"
)

// DropExpiredPartitions enforces Config.Retention on servers without TTL
// (ClickHouse 18.16) by dropping whole partitions that lie entirely before
// now minus the retention: days for hops, payloads, request_index and
// write_tokens, months for audit. Zero retention keeps a table forever.
// It returns how many partitions were dropped. Safe to call on servers with
// TTL too (it then usually finds nothing), and safe to call concurrently
// with writes.
func (s *Store) DropExpiredPartitions(ctx context.Context) (int, error) {
	return s.dropExpiredPartitions(ctx, time.Now())
}

func (s *Store) dropExpiredPartitions(ctx context.Context, now time.Time) (int, error) {
	r := s.cfg.Retention
	plan := []struct {
		table   string
		keep    time.Duration
		monthly bool
	}{
		{"hops", r.Hops, false},
		{"request_index", r.Hops, false},
		{"write_tokens", r.Hops, false},
		{"payloads", r.Payloads, false},
		{"audit", r.Audit, true},
	}
	dropped := 0
	for _, p := range plan {
		if p.keep <= 0 {
			continue
		}
		cutoff := now.Add(-p.keep).UTC()
		table := s.storageTable(p.table)
		_, name, _ := cutStorage(table)
		rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active",
			s.cfg.Database, name)
		if err != nil {
			return dropped, fmt.Errorf("listing partitions of %s: %w", table, err)
		}
		var expired []string
		for rows.Next() {
			var part string
			if err := rows.Scan(&part); err != nil {
				rows.Close()
				return dropped, fmt.Errorf("listing partitions of %s: %w", table, err)
			}
			if partitionExpired(part, p.monthly, cutoff) {
				expired = append(expired, part)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return dropped, fmt.Errorf("listing partitions of %s: %w", table, err)
		}
		for _, part := range expired {
			q := "ALTER TABLE " + table + s.onCluster() + " DROP PARTITION " + part
			if err := s.conn.Exec(ctx, q); err != nil {
				return dropped, fmt.Errorf("dropping partition %s of %s: %w", part, table, err)
			}
			dropped++
			s.log.Info("dropped expired partition", "table", table, "partition", part, "cutoff", cutoff)
		}
	}
	return dropped, nil
}

func (s *Store) onCluster() string {
	if s.cfg.Cluster == "" {
		return ""
	}
	return " ON CLUSTER '" + s.cfg.Cluster + "'"
}

func cutStorage(qualified string) (db, name string, ok bool) {
	for i := range len(qualified) {
		if qualified[i] == '.' {
			return qualified[:i], qualified[i+1:], true
		}
	}
	return "", qualified, false
}

// partitionExpired reports whether partition part (toYYYYMMDD or toYYYYMM
// as text) ends at or before cutoff. Partitions it cannot parse are kept.
func partitionExpired(part string, monthly bool, cutoff time.Time) bool {
	layout := "20060102"
	if monthly {
		layout = "200601"
	}
	start, err := time.Parse(layout, part)
	if err != nil || len(part) != len(layout) {
		return false
	}
	end := start.AddDate(0, 0, 1)
	if monthly {
		end = start.AddDate(0, 1, 0)
	}
	return !end.After(cutoff)
}
