package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Options configure the generated dashboards.
type Options struct {
	// DatasourceUID is the uid of the Grafana ClickHouse data source every
	// panel and variable queries. Default "mcptrail-clickhouse", the uid that
	// deploy/grafana provisions.
	DatasourceUID string
	// Database is the ClickHouse database holding mcptrail's tables, as in
	// recorder.clickhouse.database. Default "mcptrail".
	Database string
	// PrometheusUID is the uid of the Grafana Prometheus data source the
	// metrics dashboard queries (Prometheus scraping the gateway's
	// /metrics). Default "mcptrail-prometheus".
	PrometheusUID string
}

// Defaults of Options.
const (
	DefaultDatasourceUID = "mcptrail-clickhouse"
	DefaultDatabase      = "mcptrail"
)

var (
	uidRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

func (o *Options) withDefaults() {
	if o.DatasourceUID == "" {
		o.DatasourceUID = DefaultDatasourceUID
	}
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.PrometheusUID == "" {
		o.PrometheusUID = DefaultPrometheusUID
	}
}

// Validate reports the first invalid option by its flag name.
func (o Options) Validate() error {
	if o.DatasourceUID != "" && !uidRe.MatchString(o.DatasourceUID) {
		return fmt.Errorf("datasource-uid: %q is not a Grafana uid (1-40 of [A-Za-z0-9_-])", o.DatasourceUID)
	}
	if o.PrometheusUID != "" && !uidRe.MatchString(o.PrometheusUID) {
		return fmt.Errorf("prometheus-uid: %q is not a Grafana uid (1-40 of [A-Za-z0-9_-])", o.PrometheusUID)
	}
	if o.Database != "" && !identRe.MatchString(o.Database) {
		return fmt.Errorf("database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", o.Database)
	}
	return nil
}

// Generated is one dashboard, built and serialised.
type Generated struct {
	UID      string // dashboard uid, stable across versions
	Title    string // dashboard title
	Filename string // file name under the output directory, e.g. mcptrail-overview.json
	// Datasource is the data source type every panel queries: PluginID
	// (ClickHouse) or PrometheusType.
	Datasource string
	Model      dashboard.Dashboard // the built model (panels, targets, variables)
	JSON       []byte              // indented JSON ending in a newline, what Write stores
}

// builders lists the dashboards in a fixed order.
var builders = []struct {
	uid        string
	datasource string
	build      func(o Options) *dashboard.DashboardBuilder
}{
	{"mcptrail-overview", PluginID, overview},
	{"mcptrail-audit", PluginID, audit},
	{"mcptrail-replay", PluginID, replayRuns},
	{"mcptrail-metrics", PrometheusType, metricsDashboard},
}

// Generate builds every dashboard for o.
func Generate(o Options) ([]Generated, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("generating dashboards: %w", err)
	}
	o.withDefaults()
	out := make([]Generated, 0, len(builders))
	for _, b := range builders {
		d, err := b.build(o).Uid(b.uid).Build()
		if err != nil {
			return nil, fmt.Errorf("building dashboard %s: %w", b.uid, err)
		}
		raw, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encoding dashboard %s: %w", b.uid, err)
		}
		out = append(out, Generated{
			UID: b.uid, Title: deref(d.Title), Filename: b.uid + ".json", Datasource: b.datasource, Model: d,
			JSON: append(raw, '\n'),
		})
	}
	return out, nil
}

// Write generates every dashboard for o into dir (created if missing) and
// returns the paths written. Files are replaced atomically.
func Write(dir string, o Options) ([]string, error) {
	gen, err := Generate(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating dashboard directory %s: %w", dir, err)
	}
	var paths []string
	for _, g := range gen {
		p := filepath.Join(dir, g.Filename)
		if err := writeFileAtomic(p, g.JSON); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing dashboard %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing dashboard %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing dashboard %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing dashboard %s: %w", path, err)
	}
	return nil
}

// PanelQuery is one SQL query of a generated dashboard: a panel target or a
// template variable's query.
type PanelQuery struct {
	Panel string // panel title, or "variable <name>"
	RefID string
	Type  QueryType
	SQL   string // raw SQL, macros unexpanded
}

// Queries lists every SQL query of a built dashboard, panels first in
// layout order, then variables. A Prometheus dashboard has none.
func Queries(d dashboard.Dashboard) []PanelQuery {
	var out []PanelQuery
	addPanel := func(p *dashboard.Panel) {
		for _, t := range p.Targets {
			if q, ok := t.(Query); ok {
				out = append(out, PanelQuery{Panel: deref(p.Title), RefID: q.RefID, Type: q.QueryType, SQL: q.RawSQL})
			}
		}
	}
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			addPanel(p.Panel)
		case p.RowPanel != nil:
			for i := range p.RowPanel.Panels {
				addPanel(&p.RowPanel.Panels[i])
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Datasource != nil && deref(v.Datasource.Type) != PluginID {
			continue // PromQL, not SQL: see PromExprs
		}
		if v.Query != nil && v.Query.String != nil {
			out = append(out, PanelQuery{Panel: "variable " + v.Name, RefID: v.Name, Type: QueryTable, SQL: *v.Query.String})
		}
	}
	return out
}

// ---- shared building blocks ----

// bucket is the start of the panel's time bucket containing column col, a
// DateTime. Integer arithmetic on Unix seconds instead of
// toStartOfInterval, which 18.16 lacks; toDateTime first so that DateTime64
// columns (modern schema) bucket the same way.
func bucket(col string) string {
	return fmt.Sprintf("toDateTime(intDiv(toUInt32(toDateTime(%s)), $__interval_s) * $__interval_s)", col)
}

// inVar filters column col by multi-value variable v; All filters nothing.
func inVar(col, v string) string {
	return fmt.Sprintf("$__conditionalAll(%s IN (${%s:singlequote}), $%s)", col, v, v)
}

// sqlText joins lines and substitutes {db} with the database name, so that
// the SQL in the Go source reads like the SQL in the JSON.
func sqlText(o Options, lines ...string) string {
	return strings.ReplaceAll(strings.Join(lines, "\n"), "{db}", o.Database)
}

// panelIDs hands out panel ids in layout order so that generated JSON is
// stable and links like ?viewPanel=N keep working across versions.
type panelIDs struct{ next uint32 }

func (p *panelIDs) id() uint32 { p.next++; return p.next }

func sqlQuery(o Options, ref string, t QueryType, sql string) cog.Builder[variants.Dataquery] {
	ds := datasourceRef(o.DatasourceUID)
	return queryBuilder{Query{RefID: ref, Datasource: &ds, EditorType: "sql", QueryType: t, Format: t.format(), RawSQL: sql}}
}

// variable is a multi-value query variable defaulting to All, refreshed
// when the time range changes.
func variable(o Options, name, label, sql string) cog.Builder[dashboard.VariableModel] {
	ds := datasourceRef(o.DatasourceUID)
	all := "All"
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(ds).
		Query(dashboard.StringOrMap{String: &sql}).
		Definition(sql).
		Multi(true).
		IncludeAll(true).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: &all},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

func newDashboard(title, description string, tags ...string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Description(description).
		Tags(append([]string{"mcptrail"}, tags...)).
		Time("now-6h", "now").
		Refresh("1m").
		Timezone("browser").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("mcptrail").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"mcptrail"}).
			AsDropdown(true).
			KeepTime(true).
			IncludeVars(false))
}

// legend shows series in a table with the given reductions.
// stackedBars styles a time-series panel as stacked bars with the shared
// legend (showing calcs) and tooltip.
func stackedBars(p *timeseries.PanelBuilder, calcs ...string) *timeseries.PanelBuilder {
	return p.DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		Legend(legend(calcs...)).Tooltip(tooltip())
}

func legend(calcs ...string) *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeTable).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true).
		Calcs(calcs)
}

// tooltip lists every series at the cursor, largest first.
func tooltip() *common.VizTooltipOptionsBuilder {
	return common.NewVizTooltipOptionsBuilder().
		Mode(common.TooltipDisplayModeMulti).
		Sort(common.SortOrderDescending)
}
