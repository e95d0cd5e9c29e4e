package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// seriesName names long-format series by their "series" label column.
const seriesName = "${__field.labels.series}"

// overview is "mcptrail — gateway overview": traffic, errors and latency
// from the hops table, one row per hop of every request.
func overview(o Options) *dashboard.DashboardBuilder {
	var ids panelIDs
	ds := datasourceRef(o.DatasourceUID)
	// Every panel honours the three variables.
	filters := "$__timeFilter(ts) AND " + inVar("server", "server") + " AND " + inVar("target", "tool") + " AND " + inVar("principal", "principal")

	calls := timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Calls/s by server").
		Description("Requests answered per second (response hops), by backend server. (gateway) counts requests the gateway answers itself: initialize, tools/list and other aggregated methods.").
		Span(12).Height(8).Unit("reqps").DisplayName(seriesName).
		Legend(legend("mean", "max")).Tooltip(tooltip()).
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("ts")+" AS t,",
			"    if(server = '', '(gateway)', server) AS series,",
			"    count() / $__interval_s AS calls_per_s",
			"FROM {db}.hops",
			"WHERE hop = 'response' AND "+filters,
			"GROUP BY t, series",
			"ORDER BY t")))

	errorRatio := timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Error ratio by outcome").
		Description("Share of answered requests per failure level. tool_error: the tool ran and reported isError; jsonrpc_error: a JSON-RPC error object; transport_error: no answer from the backend; denied: refused by policy.").
		Span(12).Height(8).Unit("percentunit").Min(0).
		Legend(legend("mean", "max")).Tooltip(tooltip()).
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("ts")+" AS t,",
			"    countIf(outcome = 'tool_error') / count() AS tool_error,",
			"    countIf(outcome = 'jsonrpc_error') / count() AS jsonrpc_error,",
			"    countIf(outcome = 'transport_error') / count() AS transport_error,",
			"    countIf(outcome = 'denied') / count() AS denied",
			"FROM {db}.hops",
			"WHERE hop = 'response' AND "+filters,
			"GROUP BY t",
			"ORDER BY t")))

	latency := func(hop, label, title, desc string) *timeseries.PanelBuilder {
		p := timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
			Title(title).Description(desc).
			Span(12).Height(9).Unit("ms").DisplayName(seriesName).
			Legend(legend("mean", "max")).Tooltip(tooltip())
		extra := ""
		if hop == "response" {
			extra = " AND method = 'tools/call'"
		}
		for _, q := range []struct{ ref, name, level string }{{"A", "p50", "0.5"}, {"B", "p99", "0.99"}} {
			p.WithTarget(sqlQuery(o, q.ref, QueryTimeSeries, sqlText(o,
				"SELECT",
				"    "+bucket("ts")+" AS t,",
				"    concat("+label+", ' "+q.name+"') AS series,",
				"    quantile("+q.level+")(duration_us) / 1000 AS latency_ms",
				"FROM {db}.hops",
				"WHERE hop = '"+hop+"'"+extra+" AND "+filters,
				"GROUP BY t, series",
				"ORDER BY t")))
		}
		return p
	}
	toolLatency := latency("response", "target", "Latency by tool (p50, p99)",
		"What the client waited for a tools/call, from request received to response sent (response hop duration), by tool.")
	upstreamLatency := latency("upstream", "backend", "Upstream latency by backend (p50, p99)",
		"Duration of each upstream attempt (upstream hops, retries and fallbacks counted separately), by the backend that served it.")

	topFailing := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Top failing tools").
		Description("tools/call requests that did not succeed, by tool, worst first; last_error is the most recent failure's (redacted) message.").
		Span(14).Height(9).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    target AS tool,",
			"    count() AS calls,",
			"    countIf(outcome != 'ok') AS failed,",
			"    round(failed / calls, 4) AS failure_ratio,",
			"    countIf(outcome = 'tool_error') AS tool_errors,",
			"    countIf(outcome = 'jsonrpc_error') AS jsonrpc_errors,",
			"    countIf(outcome = 'transport_error') AS transport_errors,",
			"    countIf(outcome = 'denied') AS denials,",
			"    argMaxIf(error_message, ts_ns, outcome != 'ok') AS last_error",
			"FROM {db}.hops",
			"WHERE hop = 'response' AND method = 'tools/call' AND "+filters,
			"GROUP BY tool",
			"HAVING failed > 0",
			"ORDER BY failed DESC, tool",
			"LIMIT 20"))).
		OverrideByName("failure_ratio", []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}})

	denials := stackedBars(timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Auth denials by principal").
		Description("Requests refused by authentication or a tool allowlist (auth hops with decision denied). (unknown) is a caller whose token matched no principal.").
		Span(10).Height(9).DisplayName(seriesName), "sum").
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("ts")+" AS t,",
			"    if(principal = '', '(unknown)', principal) AS series,",
			"    count() AS denials",
			"FROM {db}.hops",
			"WHERE hop = 'auth' AND auth_decision = 'denied' AND "+filters,
			"GROUP BY t, series",
			"ORDER BY t")))

	recentFailed := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Recent failed calls").
		Description("The latest 100 requests that did not succeed. Every hop of one of them: mcptrail trace <request_id>.").
		Span(24).Height(10).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    ts AS time,",
			"    request_id,",
			"    principal,",
			"    if(server = '', '(gateway)', server) AS server_name,",
			"    method,",
			"    target AS tool,",
			"    outcome,",
			"    error_code,",
			"    error_message,",
			"    duration_us / 1000 AS duration_ms,",
			"    trace_id",
			"FROM {db}.hops",
			"WHERE hop = 'response' AND outcome != 'ok' AND "+filters,
			"ORDER BY ts_ns DESC",
			"LIMIT 100"))).
		OverrideByName("duration_ms", []dashboard.DynamicConfigValue{{Id: "unit", Value: "ms"}})

	return newDashboard("mcptrail — gateway overview",
		"Traffic, errors and latency of the mcptrail gateway, from the hops recorded in ClickHouse.", "gateway").
		WithVariable(variable(o, "server", "Server", sqlText(o,
			"SELECT DISTINCT server FROM {db}.audit WHERE $__timeFilter(ts) AND server != '' ORDER BY server"))).
		WithVariable(variable(o, "tool", "Tool", sqlText(o,
			"SELECT DISTINCT target FROM {db}.audit WHERE $__timeFilter(ts) AND method = 'tools/call' AND target != '' AND "+inVar("server", "server")+" ORDER BY target"))).
		WithVariable(variable(o, "principal", "Principal", sqlText(o,
			"SELECT DISTINCT principal FROM {db}.audit WHERE $__timeFilter(ts) AND principal != '' ORDER BY principal"))).
		WithPanel(calls).
		WithPanel(errorRatio).
		WithPanel(toolLatency).
		WithPanel(upstreamLatency).
		WithPanel(topFailing).
		WithPanel(denials).
		WithPanel(recentFailed)
}
