package clickhouse

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

//go:embed sql/*.sql
var sqlFS embed.FS

// migration is one embedded .sql template, e.g. sql/0001_base.sql.
type migration struct {
	Version uint32
	Name    string // file name without extension
	text    string
}

// migrations are the embedded files in version order; version 0 is the
// bootstrap (database and schema_migrations) and is never recorded.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	names, err := fs.Glob(sqlFS, "sql/*.sql")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			panic(fmt.Sprintf("migration %s: name must be NNNN_description.sql", n))
		}
		b, err := sqlFS.ReadFile(n)
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{Version: uint32(v), Name: base, text: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			panic(fmt.Sprintf("migrations %s and %s share a version", ms[i-1].Name, ms[i].Name))
		}
	}
	return ms
}

// statement is one rendered DDL statement with its guard, if any.
type statement struct {
	SQL string
	// IfMissingTable/IfMissingColumn: run only when system.columns lacks
	// that column (ADD COLUMN IF NOT EXISTS does not exist on 18.16).
	IfMissingTable, IfMissingColumn string
}

const guardPrefix = "-- mcptrail:if-missing-column "

// render executes a migration template for cfg and f.
func (m migration) render(cfg Config, f Features) (string, error) {
	cfg.withDefaults()
	t, err := template.New(m.Name).Option("missingkey=error").Funcs(templateFuncs(cfg, f)).Parse(m.text)
	if err != nil {
		return "", fmt.Errorf("parsing migration %s: %w", m.Name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, cfg); err != nil {
		return "", fmt.Errorf("rendering migration %s: %w", m.Name, err)
	}
	return buf.String(), nil
}

// checksum identifies the rendered text recorded in schema_migrations.
func checksum(rendered string) string {
	sum := sha256.Sum256([]byte(rendered))
	return hex.EncodeToString(sum[:8])
}

// splitStatements cuts rendered SQL at lines ending in ';'. Comment lines
// are dropped except guard directives, which attach to the next statement.
func splitStatements(rendered string) ([]statement, error) {
	var (
		out []statement
		cur statement
		buf strings.Builder
	)
	for _, line := range strings.Split(rendered, "\n") {
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trim, guardPrefix):
			fields := strings.Fields(strings.TrimPrefix(trim, guardPrefix))
			if len(fields) != 2 {
				return nil, fmt.Errorf("bad guard %q: want table column", trim)
			}
			cur.IfMissingTable, cur.IfMissingColumn = fields[0], fields[1]
			continue
		case strings.HasPrefix(trim, "--"), trim == "" && buf.Len() == 0:
			continue
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		if strings.HasSuffix(trim, ";") {
			cur.SQL = strings.TrimSuffix(strings.TrimSpace(buf.String()), ";")
			out = append(out, cur)
			cur = statement{}
			buf.Reset()
		}
	}
	if strings.TrimSpace(buf.String()) != "" {
		return nil, fmt.Errorf("statement without terminating ';': %.80q", buf.String())
	}
	return out, nil
}

func templateFuncs(cfg Config, f Features) template.FuncMap {
	cluster := cfg.Cluster
	storage := func(name string) string {
		if cluster != "" {
			return name + "_local"
		}
		return name
	}
	return template.FuncMap{
		"db": func() string { return cfg.Database },
		"onCluster": func() string {
			if cluster == "" {
				return ""
			}
			return " ON CLUSTER '" + cluster + "'"
		},
		// name is the storage table's own name, as system.columns knows it.
		"name": storage,
		// tbl is the qualified storage table: where the rows live.
		"tbl": func(name string) string { return cfg.Database + "." + storage(name) },
		"engine": func(kind, name string) string {
			if cluster == "" {
				return kind
			}
			return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s', '{replica}')", kind, cfg.Database, storage(name))
		},
		// dist is the Distributed table under the plain name (cluster only).
		"dist": func(name, shardKey string) string {
			if cluster == "" {
				return ""
			}
			return fmt.Sprintf("\nCREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER '%s' AS %s.%s\nENGINE = Distributed('%s', '%s', '%s', %s);",
				cfg.Database, name, cluster, cfg.Database, storage(name), cluster, cfg.Database, storage(name), shardKey)
		},
		// redist creates the Distributed table again after its storage
		// table gained columns (cluster only): the Distributed table holds
		// no rows (the writer inserts into the storage tables), and
		// ClickHouse 18.16 refuses ALTER ... ON CLUSTER on a table that is
		// not replicated when the cluster's shards are ("Table hops isn't
		// replicated, but shard #1 is replicated"). A storage ALTER ON
		// CLUSTER returns once every active replica applied it, so the new
		// table copies the new structure.
		"redist": func(name, shardKey string) string {
			if cluster == "" {
				return ""
			}
			return fmt.Sprintf("\nDROP TABLE IF EXISTS %s.%s ON CLUSTER '%s';\n", cfg.Database, name, cluster) +
				fmt.Sprintf("\nCREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER '%s' AS %s.%s\nENGINE = Distributed('%s', '%s', '%s', %s);",
					cfg.Database, name, cluster, cfg.Database, storage(name), cluster, cfg.Database, storage(name), shardKey)
		},
		"ts": func() string {
			if f.DateTime64 {
				return "DateTime64(6, 'UTC')"
			}
			return "DateTime"
		},
		"lc": func() string {
			if f.LowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
		},
		"codec": func(c string) string {
			if !f.Codecs {
				return ""
			}
			return " CODEC(" + c + ")"
		},
		"index": func(idx, col string) string {
			if !f.SkipIndexes {
				return ""
			}
			return fmt.Sprintf(",\n    INDEX %s %s TYPE bloom_filter(0.01) GRANULARITY 4", idx, col)
		},
		"ttl": func(col string, d time.Duration) string {
			if !f.TTL || d <= 0 {
				return ""
			}
			_, interval := ttlInterval(d)
			return fmt.Sprintf("\nTTL toDateTime(%s) + %s", col, interval)
		},
		// settings lets retried single-node inserts with the same
		// insert_deduplication_token be dropped by the server (replicated
		// tables deduplicate by default).
		"settings": func() string {
			if cluster == "" && f.NonReplicatedDedup {
				return "\nSETTINGS non_replicated_deduplication_window = 1000"
			}
			return ""
		},
	}
}

// DDL renders the complete schema script for cfg on a server with f, one
// block per migration, for review by a DBA or for applying by hand.
func DDL(cfg Config, f Features) (string, error) {
	var b strings.Builder
	for _, m := range migrations {
		text, err := m.render(cfg, f)
		if err != nil {
			return "", err
		}
		stmts, err := splitStatements(text)
		if err != nil {
			return "", fmt.Errorf("splitting migration %s: %w", m.Name, err)
		}
		fmt.Fprintf(&b, "-- migration %s\n", m.Name)
		for _, s := range stmts {
			if s.IfMissingColumn != "" {
				fmt.Fprintf(&b, "%s%s %s\n", guardPrefix, s.IfMissingTable, s.IfMissingColumn)
			}
			b.WriteString(s.SQL)
			b.WriteString(";\n\n")
		}
	}
	return b.String(), nil
}
