package dashboards

import (
	"regexp"
	"sort"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// PrometheusType is the Grafana data source type of the metrics dashboard.
const PrometheusType = "prometheus"

// DefaultPrometheusUID is the uid of the Prometheus data source the metrics
// dashboard queries; deploy/grafana provisions it under this uid.
const DefaultPrometheusUID = "mcptrail-prometheus"

func promRef(uid string) common.DataSourceRef {
	t := PrometheusType
	return common.DataSourceRef{Type: &t, Uid: &uid}
}

// promQuery is a range query; legend names the series.
func promQuery(o Options, ref, expr, legend string) cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().
		Datasource(promRef(o.PrometheusUID)).
		RefId(ref).
		Expr(expr).
		LegendFormat(legend).
		Range().
		EditorMode(prometheus.QueryEditorModeCode)
}

// sel is the label selector every gateway series is filtered by; withServer
// adds the server variable for families that carry a server label.
func sel(withServer bool, extra ...string) string {
	m := []string{`instance=~"$instance"`}
	if withServer {
		m = append(m, `server=~"$server"`)
	}
	return "{" + strings.Join(append(m, extra...), ",") + "}"
}

const rateWindow = "[$__rate_interval]"

// metricsDashboard is "mcptrail — metrics": the gateway's /metrics through
// a Prometheus data source — what Prometheus can answer without ClickHouse
// (live traffic, policy, sessions, backends, the recorder's own health).
func metricsDashboard(o Options) *dashboard.DashboardBuilder {
	var ids panelIDs
	ds := promRef(o.PrometheusUID)
	ts := func(title, desc, unit string, span uint32) *timeseries.PanelBuilder {
		return timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
			Title(title).Description(desc).Unit(unit).Span(span).Height(8).
			Legend(legend("mean", "max")).Tooltip(tooltip())
	}

	requests := ts("Requests/s by server",
		"Client requests answered per second, by the backend that served them; (gateway) is what the gateway answers itself (initialize, lists).",
		"reqps", 12).
		WithTarget(promQuery(o, "A", `sum by (server) (rate(mcptrail_requests_total`+sel(true)+rateWindow+`))`, "{{server}}"))

	errorRatio := ts("Error ratio by outcome",
		"Share of requests per failure level: tool_error (isError), jsonrpc_error, transport_error (no answer from the backend), denied (policy).",
		"percentunit", 12).Min(0).
		WithTarget(promQuery(o, "A", `sum by (outcome) (rate(mcptrail_requests_total`+sel(true, `outcome!="ok"`)+rateWindow+`)) / scalar(sum(rate(mcptrail_requests_total`+sel(true)+rateWindow+`)))`, "{{outcome}}"))

	latency := ts("Latency by tool (p50, p99)",
		"Request received to answer sent, for tools/call, by tool, from the mcptrail_request_duration_seconds histogram.",
		"s", 12)
	for _, q := range []struct{ ref, name, level string }{{"A", "p50", "0.5"}, {"B", "p99", "0.99"}} {
		latency.WithTarget(promQuery(o, q.ref,
			`histogram_quantile(`+q.level+`, sum by (le, tool) (rate(mcptrail_request_duration_seconds_bucket`+sel(true, `method="tools/call"`)+rateWindow+`)))`,
			"{{tool}} "+q.name))
	}

	decisions := stackedBars(ts("Policy decisions and limit refusals/s",
		"Decisions of each policy check (bearer_token, tokens, …) by result and the rule that decided, and requests refused at a configured limit (limits.max_sessions, limits.max_sessions_per_principal).",
		"ops", 12), "sum").
		WithTarget(promQuery(o, "A", `sum by (check, decision, rule) (rate(mcptrail_policy_decisions_total`+sel(false)+rateWindow+`))`, "{{check}} {{decision}} {{rule}}")).
		WithTarget(promQuery(o, "B", `sum by (limit) (rate(mcptrail_limit_refusals_total`+sel(false)+rateWindow+`))`, "refused at {{limit}}"))

	sessions := ts("Sessions and streams",
		"Client sessions the gateway holds and the open standalone server→client streams (GET /mcp, legacy /sse), per gateway instance.",
		"short", 8).
		WithTarget(promQuery(o, "A", `sum by (instance) (mcptrail_sessions`+sel(false)+`)`, "sessions {{instance}}")).
		WithTarget(promQuery(o, "B", `sum by (instance) (mcptrail_streams`+sel(false)+`)`, "streams {{instance}}")).
		WithTarget(promQuery(o, "C", `sum by (instance) (rate(mcptrail_stream_messages_dropped_total`+sel(false)+rateWindow+`))`, "dropped msg/s {{instance}}"))

	backends := ts("Backends up",
		"1 while a backend is connected and initialized, per gateway instance.",
		"short", 8).Min(0).Max(1).
		WithTarget(promQuery(o, "A", `mcptrail_backend_up`+sel(true), "{{server}} {{instance}}"))

	recorderEvents := ts("Recorder events/s",
		"Hop events through the recorder: enqueued (hot path), spooled (durable on disk), written (confirmed by ClickHouse); dropped and quarantined should stay at 0.",
		"ops", 8)
	for i, s := range []string{"enqueued", "spooled", "written", "dropped", "quarantined", "unacknowledged"} {
		recorderEvents.WithTarget(promQuery(o, string(rune('A'+i)),
			`sum(rate(mcptrail_recorder_events_`+s+`_total`+sel(false)+rateWindow+`))`, s))
	}

	spool := ts("Spool and queue",
		"Bytes of spool segments and of the quarantine on disk (they grow while ClickHouse is unreachable), and events waiting in the in-memory queue.",
		"bytes", 12).
		WithTarget(promQuery(o, "A", `sum by (instance) (mcptrail_recorder_spool_size_bytes`+sel(false)+`)`, "spool {{instance}}")).
		WithTarget(promQuery(o, "B", `sum by (instance) (mcptrail_recorder_quarantine_size_bytes`+sel(false)+`)`, "quarantine {{instance}}")).
		WithTarget(promQuery(o, "C", `sum by (instance) (mcptrail_recorder_queue_events`+sel(false)+`)`, "queued events {{instance}}")).
		OverrideByName("queued events", []dashboard.DynamicConfigValue{{Id: "unit", Value: "short"}})

	writes := ts("ClickHouse write latency",
		"Mean duration of a batch write over the interval (write time / writes), the last write's duration, and failed writes retried per second.",
		"s", 12).
		WithTarget(promQuery(o, "A", `sum by (instance) (rate(mcptrail_recorder_write_time_seconds_total`+sel(false)+rateWindow+`)) / sum by (instance) (rate(mcptrail_recorder_writes_total`+sel(false)+rateWindow+`))`, "mean {{instance}}")).
		WithTarget(promQuery(o, "B", `mcptrail_recorder_write_last_duration_seconds`+sel(false), "last {{instance}}")).
		WithTarget(promQuery(o, "C", `sum by (instance) (rate(mcptrail_recorder_batches_retried_total`+sel(false)+rateWindow+`))`, "retries/s {{instance}}"))

	return newDashboard("mcptrail — metrics",
		"The gateway's Prometheus metrics (/metrics): traffic, errors, latency, policy decisions, sessions, backends and the recorder's pipeline, per instance.", "gateway", "prometheus").
		WithVariable(promVariable(o, "instance", "Instance", "label_values(mcptrail_build_info, instance)")).
		WithVariable(promVariable(o, "server", "Server", `label_values(mcptrail_backend_up{instance=~"$instance"}, server)`)).
		WithPanel(requests).
		WithPanel(errorRatio).
		WithPanel(latency).
		WithPanel(decisions).
		WithPanel(sessions).
		WithPanel(backends).
		WithPanel(recorderEvents).
		WithPanel(spool).
		WithPanel(writes)
}

// promVariable is a multi-value label variable defaulting to All. Its All
// value is ".*" so that series without the label (the gateway's own
// answers have server="") still match.
func promVariable(o Options, name, label, query string) cog.Builder[dashboard.VariableModel] {
	all, allValue := "All", ".*"
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(promRef(o.PrometheusUID)).
		Query(dashboard.StringOrMap{String: &query}).
		Definition(query).
		Multi(true).
		IncludeAll(true).
		AllValue(allValue).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: &all},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// PromExpr is one PromQL expression of a generated dashboard.
type PromExpr struct {
	Panel string
	RefID string
	Expr  string
}

// PromExprs lists every PromQL expression of a built dashboard, panels in
// layout order.
func PromExprs(d dashboard.Dashboard) []PromExpr {
	var out []PromExpr
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		for _, t := range p.Panel.Targets {
			if q, ok := t.(prometheus.Dataquery); ok {
				out = append(out, PromExpr{Panel: deref(p.Panel.Title), RefID: deref(q.RefId), Expr: q.Expr})
			}
		}
	}
	return out
}

var promMetricRe = regexp.MustCompile(`\b((?:mcptrail|go|process)_[a-z0-9_]+)\b`)

// MetricNames returns the metric names the expressions read, sorted, with
// histogram _bucket/_sum/_count suffixes folded into the family name.
func MetricNames(exprs []PromExpr) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, m := range promMetricRe.FindAllString(e.Expr, -1) {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(m, "_seconds"+suf) {
					m = strings.TrimSuffix(m, suf)
				}
			}
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
