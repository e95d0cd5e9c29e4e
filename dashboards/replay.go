package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// runs is one row per replay run. replay_runs is a ReplacingMergeTree that
// may still hold an unmerged older copy of a rewritten run: take the newest
// copy per run instead of FINAL, which Distributed tables handle poorly.
// Aliases differ from column names so that ClickHouse does not substitute
// them inside the aggregates.
const runs = "(\n" +
	"    SELECT\n" +
	"        replay_run_id,\n" +
	"        argMax(started, finished) AS run_started,\n" +
	"        max(finished) AS run_finished,\n" +
	"        argMax(mode, finished) AS run_mode,\n" +
	"        argMax(target, finished) AS run_target,\n" +
	"        argMax(total, finished) AS run_total,\n" +
	"        argMax(identical, finished) AS run_identical,\n" +
	"        argMax(changed, finished) AS run_changed,\n" +
	"        argMax(failed, finished) AS run_failed,\n" +
	"        argMax(skipped, finished) AS run_skipped\n" +
	"    FROM {db}.replay_runs\n" +
	"    WHERE $__timeFilter(started)\n" +
	"    GROUP BY replay_run_id\n" +
	")"

// results is one row per replayed request: a rewritten run may leave an
// unmerged older copy of its results behind.
const results = "(\n" +
	"    SELECT *\n" +
	"    FROM {db}.replay_results\n" +
	"    WHERE $__timeFilter(started)\n" +
	"    LIMIT 1 BY replay_run_id, request_id\n" +
	")"

// replayRuns is "mcptrail — replay runs": replays of recorded traffic
// against a target and the requests whose answers changed.
func replayRuns(o Options) *dashboard.DashboardBuilder {
	var ids panelIDs
	ds := datasourceRef(o.DatasourceUID)

	perTime := stackedBars(timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Replay runs").
		Description("Replay runs started per time bucket, by mode.").
		Span(12).Height(8).DisplayName(seriesName), "sum").
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    "+bucket("run_started")+" AS t,",
			"    if(run_mode = '', '(unset)', run_mode) AS series,",
			"    count() AS runs",
			"FROM "+runs,
			"GROUP BY t, series",
			"ORDER BY t")))

	regressions := stackedBars(timeseries.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Regressions per run").
		Description("Per run, at its start time: requests whose replayed answer differed from the recorded one (changed) or could not be replayed (failed).").
		Span(12).Height(8), "sum", "max").
		WithTarget(sqlQuery(o, "A", QueryTimeSeries, sqlText(o,
			"SELECT",
			"    run_started AS t,",
			"    run_changed AS changed,",
			"    run_failed AS failed",
			"FROM "+runs,
			"ORDER BY t")))

	runTable := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Runs").
		Description("The latest 100 replay runs. regression_ratio = (changed + failed) / total. Re-render a run: mcptrail replay report <replay_run_id>.").
		Span(24).Height(9).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    run_started AS started,",
			"    replay_run_id,",
			"    run_mode AS mode,",
			"    run_target AS target,",
			"    if(run_finished > run_started, toUInt32(toDateTime(run_finished)) - toUInt32(toDateTime(run_started)), 0) AS duration_s,",
			"    run_total AS total,",
			"    run_identical AS identical,",
			"    run_changed AS changed,",
			"    run_failed AS failed,",
			"    run_skipped AS skipped,",
			"    if(run_total = 0, 0, round((run_changed + run_failed) / run_total, 4)) AS regression_ratio",
			"FROM "+runs,
			"ORDER BY run_started DESC, replay_run_id",
			"LIMIT 100"))).
		OverrideByName("regression_ratio", []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}}).
		OverrideByName("duration_s", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}})

	tools := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Most regressed tools").
		Description("Tools whose replays changed or failed in the range, with the mean latency change (replayed minus recorded).").
		Span(10).Height(10).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    tool,",
			"    count() AS replayed,",
			"    countIf(status = 'changed') AS changed,",
			"    countIf(status = 'failed') AS failed,",
			"    uniqExact(replay_run_id) AS runs,",
			"    round(avg(replay_us - original_us) / 1000, 3) AS mean_latency_delta_ms",
			"FROM "+results,
			"GROUP BY tool",
			"HAVING changed + failed > 0",
			"ORDER BY changed + failed DESC, tool",
			"LIMIT 20"))).
		OverrideByName("mean_latency_delta_ms", []dashboard.DynamicConfigValue{{Id: "unit", Value: "ms"}})

	requests := table.NewPanelBuilder().Id(ids.id()).Datasource(ds).
		Title("Regressed requests").
		Description("The latest 100 replayed requests that changed or failed, with the start of their diff. The original: mcptrail trace <request_id>.").
		Span(14).Height(10).
		WithTarget(sqlQuery(o, "A", QueryTable, sqlText(o,
			"SELECT",
			"    started,",
			"    replay_run_id,",
			"    request_id,",
			"    tool,",
			"    status,",
			"    error,",
			"    substring(diff, 1, 500) AS diff_head",
			"FROM {db}.replay_results",
			"WHERE $__timeFilter(started) AND status IN ('changed', 'failed')",
			"ORDER BY started DESC, replay_run_id, request_id",
			"LIMIT 1 BY replay_run_id, request_id",
			"LIMIT 100")))

	return newDashboard("mcptrail — replay runs",
		"Replays of recorded MCP traffic and the requests whose answers changed.", "replay").
		WithPanel(perTime).
		WithPanel(regressions).
		WithPanel(runTable).
		WithPanel(tools).
		WithPanel(requests)
}
