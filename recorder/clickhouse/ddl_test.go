package clickhouse

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func TestDDLGolden(t *testing.T) {
	base := DefaultConfig()
	base.Addr = []string{"127.0.0.1:9000"}
	cluster := base
	cluster.Cluster = "mcp"
	tests := []struct {
		name   string
		cfg    Config
		f      Features
		want   []string // must appear
		absent []string // must not appear
	}{
		{"base_18.16", base, BaseFeatures(),
			[]string{"ts DateTime,", "ENGINE = ReplacingMergeTree\n", "PARTITION BY toYYYYMMDD(ts)"},
			[]string{"CODEC", "TTL", "LowCardinality", "INDEX", "DateTime64", "ON CLUSTER", "IF NOT EXISTS redaction"}},
		{"modern_single", base, ModernFeatures(),
			[]string{"DateTime64(6, 'UTC')", "LowCardinality(String)", "CODEC(ZSTD(3))", "TTL toDateTime(ts) + INTERVAL 30 DAY",
				"TTL toDateTime(ts) + INTERVAL 7 DAY", "TTL toDateTime(ts) + INTERVAL 400 DAY",
				"INDEX idx_trace_id trace_id TYPE bloom_filter", "non_replicated_deduplication_window"},
			[]string{"ON CLUSTER", "Replicated", "Distributed"}},
		{"modern_cluster", cluster, ModernFeatures(),
			[]string{"ON CLUSTER 'mcp'", "mcptrail.hops_local", "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/mcptrail/hops_local', '{replica}')",
				"ENGINE = Distributed('mcp', 'mcptrail', 'hops_local', cityHash64(request_id))",
				"-- mcptrail:if-missing-column hops_local redaction_version",
				"DROP TABLE IF EXISTS mcptrail.hops ON CLUSTER 'mcp';\n\nCREATE TABLE IF NOT EXISTS mcptrail.hops ON CLUSTER 'mcp' AS mcptrail.hops_local"},
			[]string{"non_replicated_deduplication_window", "ALTER TABLE mcptrail.hops ON CLUSTER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DDL(tt.cfg, tt.f)
			if err != nil {
				t.Fatalf("DDL: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("DDL(%s) lacks %q", tt.name, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("DDL(%s) contains %q", tt.name, a)
				}
			}
			golden := filepath.Join("testdata", "ddl_"+tt.name+".sql")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run `go test ./recorder/clickhouse -update` to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("DDL(%s) differs from %s; review and run `go test ./recorder/clickhouse -update`\n%s", tt.name, golden, firstDiff(string(want), got))
			}
		})
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + x + "\n  got: " + y
		}
	}
	return ""
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []statement
		wantErr bool
	}{
		{"two", "-- c\nCREATE A;\n\nCREATE B\n  (x);\n", []statement{{SQL: "CREATE A"}, {SQL: "CREATE B\n  (x)"}}, false},
		{"guard", guardPrefix + "hops c\nALTER X;\nY;\n", []statement{{SQL: "ALTER X", IfMissingTable: "hops", IfMissingColumn: "c"}, {SQL: "Y"}}, false},
		{"unterminated", "CREATE A", nil, true},
		{"bad guard", guardPrefix + "hops\nALTER X;\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitStatements(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("splitStatements(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("splitStatements(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("statement %d = %#v, want %#v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMigrationsHaveVersions(t *testing.T) {
	if len(migrations) < 3 || migrations[0].Version != 0 {
		t.Fatalf("migrations = %d, want bootstrap 0000 plus at least two", len(migrations))
	}
}
