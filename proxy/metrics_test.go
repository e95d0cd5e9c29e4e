package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/mcptrail/mcptrail/proxy"
)

// collect reads every data point of the named instrument as "label=value,…"
// → value (a histogram's value is its count).
func collect(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	key := func(s attribute.Set) string {
		var parts []string
		for _, kv := range s.ToSlice() {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		return strings.Join(parts, ",")
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = float64(p.Count)
				}
			}
		}
	}
	return out
}

// TestMetricLabelsAreBounded: a client cannot mint label values. Unknown
// methods are counted as "other" and tools outside the catalog with an empty
// tool label, so the number of series stays bounded by the config.
func TestMetricLabelsAreBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg, func(o *proxy.Options) { o.MeterProvider = mp })
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha.minted-9f8e7d","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"minted/9f8e7d","params":{}}`,
	} {
		post(t, e.url, body, hdr)
	}

	tests := []struct {
		name, series string
		want         float64
	}{
		{"known tool", "method=tools/call,outcome=ok,server=alpha,tool=alpha.echo", 1},
		{"unknown tool", "method=tools/call,outcome=jsonrpc_error,server=alpha,tool=", 1},
		{"unknown method", "method=other,outcome=jsonrpc_error,server=,tool=", 1},
		{"initialize", "method=initialize,outcome=ok,server=,tool=", 1},
	}
	got := collect(t, reader, "mcptrail.requests")
	for _, tt := range tests {
		if got[tt.series] != tt.want {
			t.Errorf("%s: mcptrail.requests{%s} = %v, want %v", tt.name, tt.series, got[tt.series], tt.want)
		}
	}
	for series := range got {
		if strings.Contains(series, "minted") {
			t.Errorf("a client-chosen name became a label value: %s", series)
		}
	}
	if len(got) != len(tests) {
		t.Errorf("mcptrail.requests has %d series, want %d: %v", len(got), len(tests), got)
	}
	if d := collect(t, reader, "mcptrail.request.duration"); d["method=tools/call,server=alpha,tool=alpha.echo"] != 1 {
		t.Errorf("mcptrail.request.duration = %v, want one observation for alpha.echo", d)
	}
	if up := collect(t, reader, "mcptrail.backend.up"); up["server=alpha"] != 1 || up["server=beta"] != 1 {
		t.Errorf("mcptrail.backend.up = %v, want both backends up", up)
	}
	if s := collect(t, reader, "mcptrail.sessions"); s[""] != 1 {
		t.Errorf("mcptrail.sessions = %v, want 1", s)
	}
}

// TestLimitRefusalsCounted: a session refused at limits.* is counted under
// that limit; every limit is exported from the start.
func TestLimitRefusalsCounted(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	cfg, _ := twoBackends(t)
	cfg.Limits.MaxSessionsPerPrincipal = 1
	e := startGateway(t, cfg, func(o *proxy.Options) { o.MeterProvider = mp })
	if got := collect(t, reader, "mcptrail.limit.refusals"); len(got) != 11 || got["limit=max_revoked"] != 0 || got["limit=max_revoked_per_principal"] != 0 || got["limit=max_held_per_principal"] != 0 || got["limit=max_inflight_per_session"] != 0 || got["limit=max_sessions"] != 0 || got["limit=max_sessions_per_principal"] != 0 ||
		got["limit=rate_per_principal"] != 0 || got["limit=rate_per_tool"] != 0 || got["limit=tool_queue"] != 0 ||
		got["limit=max_upstream_subscriptions_per_principal"] != 0 || got["limit=max_upstream_subscriptions_per_server"] != 0 {
		t.Errorf("before any refusal: mcptrail.limit.refusals = %v, want every limit at 0", got)
	}
	initSession(t, e.url, nil)
	resp, body := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second session: HTTP %d %s, want 429", resp.StatusCode, body)
	}
	got := collect(t, reader, "mcptrail.limit.refusals")
	if got["limit=max_sessions_per_principal"] != 1 || got["limit=max_sessions"] != 0 {
		t.Errorf("mcptrail.limit.refusals = %v, want max_sessions_per_principal 1, max_sessions 0", got)
	}
}
