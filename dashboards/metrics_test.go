package dashboards

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

var promVarRe = regexp.MustCompile(`\$\{?(\w+)`)

// TestMetricsDashboard: the Prometheus dashboard queries only its data
// source, lays out in the grid, declares the variables it uses, and reads
// the families the gateway exposes (cmd/mcptrail TestE2EMetrics checks the
// same list against a real scrape).
func TestMetricsDashboard(t *testing.T) {
	gen, err := Generate(Options{PrometheusUID: "prom-1"})
	if err != nil {
		t.Fatal(err)
	}
	var g *Generated
	for i := range gen {
		if gen[i].UID == "mcptrail-metrics" {
			g = &gen[i]
		}
	}
	if g == nil || g.Datasource != PrometheusType || g.Title != "mcptrail — metrics" {
		t.Fatalf("no Prometheus dashboard mcptrail-metrics in %d generated", len(gen))
	}
	var doc struct {
		Panels []struct {
			ID         int                        `json:"id"`
			Title      string                     `json:"title"`
			Datasource struct{ Type, UID string } `json:"datasource"`
			GridPos    struct{ X, W, H int }      `json:"gridPos"`
			Targets    []struct {
				Datasource struct{ Type, UID string } `json:"datasource"`
				Expr       string                     `json:"expr"`
				RefID      string                     `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string                     `json:"name"`
				Query      string                     `json:"query"`
				Datasource struct{ Type, UID string } `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(g.JSON, &doc); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{"__rate_interval": true}
	for _, v := range doc.Templating.List {
		declared[v.Name] = true
		if v.Datasource.Type != PrometheusType || v.Datasource.UID != "prom-1" {
			t.Errorf("variable %s datasource = %+v, want prometheus/prom-1", v.Name, v.Datasource)
		}
	}
	ids := map[int]bool{}
	for _, p := range doc.Panels {
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q id %d is zero or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Datasource.Type != PrometheusType || p.Datasource.UID != "prom-1" {
			t.Errorf("panel %q datasource = %+v, want prometheus/prom-1", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource.Type != PrometheusType || tg.Datasource.UID != "prom-1" {
				t.Errorf("panel %q target %s datasource = %+v", p.Title, tg.RefID, tg.Datasource)
			}
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, "mcptrail_") || strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") ||
				strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: expression %q reads no mcptrail metric or is unbalanced", p.Title, tg.Expr)
			}
			for _, m := range promVarRe.FindAllStringSubmatch(tg.Expr, -1) {
				if !declared[m[1]] {
					t.Errorf("panel %q uses undeclared variable %s", p.Title, m[1])
				}
			}
		}
	}
	got := strings.Join(MetricNames(PromExprs(g.Model)), " ")
	want := strings.Join([]string{
		"mcptrail_backend_up",
		"mcptrail_limit_refusals_total",
		"mcptrail_policy_decisions_total",
		"mcptrail_recorder_batches_retried_total",
		"mcptrail_recorder_events_dropped_total",
		"mcptrail_recorder_events_enqueued_total",
		"mcptrail_recorder_events_quarantined_total",
		"mcptrail_recorder_events_spooled_total",
		"mcptrail_recorder_events_unacknowledged_total",
		"mcptrail_recorder_events_written_total",
		"mcptrail_recorder_quarantine_size_bytes",
		"mcptrail_recorder_queue_events",
		"mcptrail_recorder_spool_size_bytes",
		"mcptrail_recorder_write_last_duration_seconds",
		"mcptrail_recorder_write_time_seconds_total",
		"mcptrail_recorder_writes_total",
		"mcptrail_request_duration_seconds",
		"mcptrail_requests_total",
		"mcptrail_sessions",
		"mcptrail_stream_messages_dropped_total",
		"mcptrail_streams",
	}, " ")
	if got != want {
		t.Errorf("MetricNames = %s\nwant          %s", got, want)
	}
}
