package dashboards

import (
	"strings"
	"testing"
	"time"
)

var expandTests = []struct {
	name    string
	sql     string
	vars    map[string][]string
	want    string
	wantErr string
}{
	{name: "time filter", sql: "WHERE $__timeFilter(ts)", want: "WHERE ts >= toDateTime(1000) AND ts <= toDateTime(4600)"},
	{name: "time filter spaces", sql: "$__timeFilter( ts )", want: "ts >= toDateTime(1000) AND ts <= toDateTime(4600)"},
	{name: "from to", sql: "$__fromTime, $__toTime", want: "toDateTime(1000), toDateTime(4600)"},
	{name: "interval", sql: "intDiv(x, $__interval_s) * $__interval_s", want: "intDiv(x, 60) * 60"},
	{name: "all", sql: "a AND $__conditionalAll(server IN (${server:singlequote}), $server) AND b", want: "a AND 1=1 AND b"},
	{name: "empty selection is all", sql: "$__conditionalAll(server IN (${server:singlequote}), $server)", vars: map[string][]string{"server": {}}, want: "1=1"},
	{name: "one value", sql: "$__conditionalAll(server IN (${server:singlequote}), $server)", vars: map[string][]string{"server": {"crm"}}, want: "server IN ('crm')"},
	{name: "values quoted", sql: "$__conditionalAll(p IN (${p:singlequote}), $p)", vars: map[string][]string{"p": {"o'neil", "bob"}}, want: `p IN ('o\'neil','bob')`},
	{name: "nested conditionals", sql: "$__conditionalAll(a IN (${a:singlequote}), $a) AND $__conditionalAll(b IN (${b:singlequote}), ${b})", vars: map[string][]string{"b": {"x"}}, want: "1=1 AND b IN ('x')"},
	{name: "timeInterval refused", sql: "$__timeInterval(ts)", wantErr: "not one the dashboards may use"},
	{name: "bare variable refused", sql: "server = $server", wantErr: "unexpanded"},
	{name: "all outside conditional", sql: "server IN (${server:singlequote})", wantErr: "All but used"},
	{name: "unclosed", sql: "$__conditionalAll(a IN (1), $a", wantErr: "not closed"},
	{name: "wrong arity", sql: "$__conditionalAll(a)", wantErr: "want 2"},
	{name: "time filter without column", sql: "$__timeFilter", wantErr: "without a column"},
	{name: "time filter two columns", sql: "$__timeFilter(a, b)", wantErr: "want 1"},
}

func TestExpand(t *testing.T) {
	w := Window{From: time.Unix(1000, 0), To: time.Unix(4600, 0), Interval: time.Minute}
	for _, tt := range expandTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.sql, w, tt.vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand(%q) = %q, %v; want error containing %q", tt.sql, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Expand(%q) = %q, %v; want %q", tt.sql, got, err, tt.want)
			}
		})
	}
}

func TestExpandIntervalFloor(t *testing.T) {
	got, err := Expand("$__interval_s", Window{Interval: 10 * time.Millisecond}, nil)
	if err != nil || got != "1" {
		t.Fatalf("Expand($__interval_s) with a 10ms interval = %q, %v; want 1", got, err)
	}
}

// FuzzExpand: Expand must never panic, and what it returns carries no
// unexpanded reference.
func FuzzExpand(f *testing.F) {
	for _, tt := range expandTests {
		f.Add(tt.sql, "crm")
	}
	f.Fuzz(func(t *testing.T, sql, value string) {
		w := Window{From: time.Unix(1000, 0), To: time.Unix(4600, 0), Interval: time.Minute}
		for _, vars := range []map[string][]string{nil, {"server": {value}, "a": {value}, "p": {value}}} {
			got, err := Expand(sql, w, vars)
			if err == nil && strings.Contains(got, "$") && !strings.Contains(value, "$") {
				t.Fatalf("Expand(%q) = %q: unexpanded reference without error", sql, got)
			}
		}
	})
}
