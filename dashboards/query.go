package dashboards

import (
	"errors"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// PluginID is the Grafana ClickHouse data source plugin the panels query.
const PluginID = "grafana-clickhouse-datasource"

// QueryType is the plugin's display format for a SQL query.
type QueryType string

// Query types of the ClickHouse plugin (src/types/sql.ts: QueryType).
const (
	QueryTable      QueryType = "table"
	QueryTimeSeries QueryType = "timeSeries"
)

// format maps a QueryType to the sqlds format number the plugin's backend
// reads (0 time series, 1 table); the plugin's editor sets both fields.
func (t QueryType) format() int {
	if t == QueryTimeSeries {
		return 0
	}
	return 1
}

// Query is a ClickHouse plugin query in SQL editor mode. The SDK ships no
// ClickHouse query type, so this one carries the plugin's own field names.
type Query struct {
	RefID      string                `json:"refId"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	EditorType string                `json:"editorType"`
	QueryType  QueryType             `json:"queryType"`
	Format     int                   `json:"format"`
	RawSQL     string                `json:"rawSql"`
}

var _ variants.Dataquery = Query{}

// ImplementsDataqueryVariant marks Query as a panel target.
func (Query) ImplementsDataqueryVariant() {}

// DataqueryType names the plugin the query belongs to.
func (Query) DataqueryType() string { return PluginID }

// Validate reports a query the plugin could not run.
func (q Query) Validate() error {
	switch {
	case q.RefID == "":
		return errors.New("refId is empty")
	case q.RawSQL == "":
		return errors.New("rawSql is empty")
	case q.QueryType != QueryTable && q.QueryType != QueryTimeSeries:
		return errors.New("queryType must be table or timeSeries")
	}
	return nil
}

// Equals compares two queries field by field.
func (q Query) Equals(other variants.Dataquery) bool {
	o, ok := other.(Query)
	if !ok {
		return false
	}
	same := q.RefID == o.RefID && q.EditorType == o.EditorType && q.QueryType == o.QueryType &&
		q.Format == o.Format && q.RawSQL == o.RawSQL
	if !same || (q.Datasource == nil) != (o.Datasource == nil) {
		return false
	}
	if q.Datasource == nil {
		return true
	}
	return deref(q.Datasource.Type) == deref(o.Datasource.Type) && deref(q.Datasource.Uid) == deref(o.Datasource.Uid)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// queryBuilder adapts a Query to the SDK's builder interface.
type queryBuilder struct{ q Query }

var _ cog.Builder[variants.Dataquery] = queryBuilder{}

func (b queryBuilder) Build() (variants.Dataquery, error) {
	if err := b.q.Validate(); err != nil {
		return nil, cog.MakeBuildErrors("clickhouse.query", err)
	}
	return b.q, nil
}

// datasourceRef points at the ClickHouse data source with uid.
func datasourceRef(uid string) common.DataSourceRef {
	t := PluginID
	return common.DataSourceRef{Type: &t, Uid: &uid}
}
