package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// audit is "mcptrail — audit": who called what and what policy decided,
// from the audit table (one row per answered or refused request, kept
// longer than hops).
func audit(o Options) *dashboard.DashboardBuilder {
	var ids panelIDs
	ds := datasourceRef(o.DatasourceUID)
	filters := "$__timeFilter(ts) AND " + inVar("principal", "principal") + " AND " + inVar("server", "server")

	activity := stackedBars(timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Activity by principal").
		Description("Requests per time bucket by the principal that made them. (none) is traffic without authentication.").
		Span(12).Height(8).DisplayName(seriesName), "sum").
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("ts")+" AS t,",
			"    if(principal = '', '(none)', principal) AS series,",
			"    count() AS requests",
			"FROM {db}.audit",
			"WHERE "+filters,
			"GROUP BY t, series",
			"ORDER BY t")))

	decisions := stackedBars(timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Decisions").
		Description("Authorization decisions per time bucket: allowed, denied, or none (authentication off).").
		Span(12).Height(8).DisplayName(seriesName), "sum").
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("ts")+" AS t,",
			"    if(decision = '', 'none', decision) AS series,",
			"    count() AS requests",
			"FROM {db}.audit",
			"WHERE "+filters,
			"GROUP BY t, series",
			"ORDER BY t")))

	byPrincipal := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Calls by principal").
		Description("Per principal: requests, how many policy denied, how many failed, distinct tools and sessions, first and last seen in the range.").
		Span(24).Height(8).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    if(principal = '', '(none)', principal) AS principal_name,",
			"    count() AS requests,",
			"    countIf(decision = 'denied') AS denied,",
			"    countIf(outcome != 'ok') AS failed,",
			"    uniqExact(target) AS tools,",
			"    uniqExact(session_id) AS sessions,",
			"    min(ts) AS first_seen,",
			"    max(ts) AS last_seen",
			"FROM {db}.audit",
			"WHERE "+filters,
			"GROUP BY principal_name",
			"ORDER BY requests DESC, principal_name",
			"LIMIT 200")))

	byTool := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Calls by principal and tool").
		Description("tools/call requests per principal and tool, with denials, failures and the p99 latency the caller saw.").
		Span(12).Height(10).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    principal,",
			"    target AS tool,",
			"    count() AS calls,",
			"    countIf(decision = 'denied') AS denied,",
			"    countIf(outcome != 'ok') AS failed,",
			"    quantile(0.99)(duration_us) / 1000 AS p99_ms",
			"FROM {db}.audit",
			"WHERE method = 'tools/call' AND "+filters,
			"GROUP BY principal, tool",
			"ORDER BY calls DESC, principal, tool",
			"LIMIT 500"))).
		OverrideByName("p99_ms", []dashboard.DynamicConfigValue{{Id: "unit", Value: "ms"}})

	denied := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Recent denials").
		Description("The latest 100 requests refused by policy, with the rule that decided. Details: mcptrail trace <request_id>.").
		Span(12).Height(10).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    ts AS time,",
			"    principal,",
			"    method,",
			"    target AS tool,",
			"    rule,",
			"    error_message,",
			"    client_name,",
			"    request_id",
			"FROM {db}.audit",
			"WHERE decision = 'denied' AND "+filters,
			"ORDER BY ts_ns DESC",
			"LIMIT 100")))

	return newDashboard("mcptrail — audit",
		"Who called which MCP tools through the gateway and what the policy decided, from the audit table.", "audit").
		WithVariable(variable(o, "principal", "Principal", sqlText(o,
			"SELECT DISTINCT principal FROM {db}.audit WHERE $__timeFilter(ts) AND principal != '' ORDER BY principal"))).
		WithVariable(variable(o, "server", "Server", sqlText(o,
			"SELECT DISTINCT server FROM {db}.audit WHERE $__timeFilter(ts) AND server != '' ORDER BY server"))).
		WithPanel(activity).
		WithPanel(decisions).
		WithPanel(byPrincipal).
		WithPanel(byTool).
		WithPanel(denied)
}
