package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/dashboards"
)

// newDashboardsCmd writes mcptrail's Grafana dashboards as JSON files.
func newDashboardsCmd() *cobra.Command {
	var (
		out  string
		opts dashboards.Options
	)
	cmd := &cobra.Command{
		Use:   "dashboards",
		Short: "Write mcptrail's Grafana dashboards (JSON) for the ClickHouse and Prometheus data sources",
		Long: "Writes the gateway overview, audit and replay dashboards and the metrics dashboard as\n" +
			"Grafana JSON into --out. Import them in Grafana, or provision the directory (see\n" +
			"deploy/grafana). The first three query mcptrail's ClickHouse tables through the\n" +
			"grafana-clickhouse-datasource plugin; mcptrail-metrics queries a Prometheus that\n" +
			"scrapes the gateway's /metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := dashboards.Write(out, opts)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "dashboards", "directory to write the dashboard JSON files into (created if missing)")
	f.StringVar(&opts.DatasourceUID, "datasource-uid", dashboards.DefaultDatasourceUID, "uid of the Grafana ClickHouse data source the panels query")
	f.StringVar(&opts.PrometheusUID, "prometheus-uid", dashboards.DefaultPrometheusUID, "uid of the Grafana Prometheus data source the metrics dashboard queries")
	f.StringVar(&opts.Database, "database", dashboards.DefaultDatabase, "ClickHouse database holding mcptrail's tables (recorder.clickhouse.database)")
	return cmd
}
