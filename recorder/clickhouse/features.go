package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Features are the server capabilities the schema and writer adapt to,
// detected from the server's own system tables and version().
type Features struct {
	Version string // version(), e.g. "18.16.1"

	DateTime64     bool // DateTime64 type (ts gets microseconds)
	LowCardinality bool // LowCardinality(String), not behind an experimental flag
	Codecs         bool // per-column CODEC(...)
	TTL            bool // table TTL; otherwise DropExpiredPartitions
	SkipIndexes    bool // bloom_filter data-skipping indexes
	DedupToken     bool // insert_deduplication_token setting
	// NonReplicatedDedup is the non_replicated_deduplication_window MergeTree
	// setting, which makes DedupToken work on single-node tables.
	NonReplicatedDedup bool
	AsyncInsert        bool // async_insert setting (detected, not used yet)
}

// BaseFeatures are those of ClickHouse 18.16: nothing optional.
func BaseFeatures() Features { return Features{Version: "18.16.1"} }

// ModernFeatures are those of a 24.x/25.x server.
func ModernFeatures() Features {
	return Features{Version: "25.8.1.1", DateTime64: true, LowCardinality: true, Codecs: true, TTL: true,
		SkipIndexes: true, DedupToken: true, NonReplicatedDedup: true, AsyncInsert: true}
}

// versionAtLeast reports whether v ("major.minor[.patch...]") is >= major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

func detectFeatures(ctx context.Context, conn driver.Conn) (Features, error) {
	var f Features
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&f.Version); err != nil {
		return f, fmt.Errorf("detecting ClickHouse features: reading version(): %w", err)
	}
	types, err := nameSet(ctx, conn, "SELECT name FROM system.data_type_families WHERE name IN ('DateTime64', 'LowCardinality')")
	if err != nil {
		return f, err
	}
	settings, err := nameSet(ctx, conn, "SELECT name FROM system.settings WHERE name IN ('allow_experimental_low_cardinality_type', 'insert_deduplication_token', 'async_insert')")
	if err != nil {
		return f, err
	}
	mtSettings, err := nameSet(ctx, conn, "SELECT name FROM system.merge_tree_settings WHERE name IN ('merge_with_ttl_timeout', 'non_replicated_deduplication_window')")
	if err != nil {
		return f, err
	}
	cols, err := nameSet(ctx, conn, "SELECT name FROM system.columns WHERE database = 'system' AND table = 'columns' AND name = 'compression_codec'")
	if err != nil {
		return f, err
	}
	f.DateTime64 = types["DateTime64"]
	// On 18.x/19.x LowCardinality exists behind allow_experimental_*; the
	// flag disappeared when the type became production ready.
	f.LowCardinality = types["LowCardinality"] && !settings["allow_experimental_low_cardinality_type"]
	f.DedupToken = settings["insert_deduplication_token"]
	f.AsyncInsert = settings["async_insert"]
	f.TTL = mtSettings["merge_with_ttl_timeout"]
	f.NonReplicatedDedup = mtSettings["non_replicated_deduplication_window"]
	f.Codecs = cols["compression_codec"]
	// bloom_filter indexes left the experimental flag in 20.1; no system
	// table lists index types before that, so the version decides.
	f.SkipIndexes = versionAtLeast(f.Version, 20, 1)
	return f, nil
}

func nameSet(ctx context.Context, conn driver.Conn, q string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("detecting ClickHouse features: %s: %w", q, err)
	}
	defer rows.Close()
	set := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("detecting ClickHouse features: scanning %s: %w", q, err)
		}
		set[n] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("detecting ClickHouse features: %s: %w", q, err)
	}
	return set, nil
}
