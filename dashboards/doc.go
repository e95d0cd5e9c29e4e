// Package dashboards generates mcptrail's Grafana dashboards as code.
//
// Four dashboards are built with grafana-foundation-sdk and serialised to
// JSON: the gateway overview (traffic, errors, latency, failures, auth
// denials), the audit view (who called what, and what policy decided) and the
// replay view (runs and their regressions). Every panel of these queries
// mcptrail's ClickHouse tables (see recorder/clickhouse) through the Grafana
// ClickHouse data source plugin (grafana-clickhouse-datasource) in SQL mode.
// A fourth, mcptrail-metrics, queries a Prometheus data source scraping the
// gateway's /metrics (PromQL; PromExprs and MetricNames list what it reads).
//
// The SQL is written to run unchanged on ClickHouse 18.16 (the only server
// the test machines have) and on 24.x/25.x (what users run): no
// toStartOfInterval, JSONExtract, ILIKE or WITH subqueries. Time buckets are
// built from the plugin's $__interval_s macro with integer arithmetic, and
// only the plugin macros listed in Macros are used; Expand mirrors how the
// plugin and Grafana expand them, so that tests can run every panel's SQL
// against a real server.
//
// The generated JSON lives in dashboards/generated (rewrite it with
// `go test ./dashboards -update` or `mcptrail dashboards --out dir`) and is
// provisioned into Grafana by docker-compose.yml through deploy/grafana.
package dashboards
