package proxy

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// BenchmarkObserveCall is what metrics add to a call: one counter and one
// histogram measurement with cached attribute sets.
func BenchmarkObserveCall(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()), sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	g, err := New(Options{Config: &config.Config{}, MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	c := &call{g: g, ps: g.ps(), msg: jsonrpc.Message{Method: "tools/call"}, server: "crm", target: "crm.search", outcome: recorder.OutcomeOK}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g.metrics.observeCall(ctx, c, time.Millisecond)
	}
}
