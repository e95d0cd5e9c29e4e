package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Metrics is a MeterProvider whose measurements are served in the
// Prometheus exposition format.
type Metrics struct {
	// Provider is what components take as their MeterProvider.
	Provider metric.MeterProvider
	// Handler serves /metrics: the Provider's metrics, Go runtime and
	// process metrics, and mcptrail_build_info.
	Handler http.Handler

	sdk      *sdkmetric.MeterProvider
	shutOnce sync.Once
	shutErr  error
}

// NewPrometheusMetrics builds a MeterProvider read by a Prometheus exporter
// into its own registry (never the global one). OTel instrument names map to
// Prometheus names the standard way: mcptrail.request.duration with unit s
// becomes mcptrail_request_duration_seconds, counters get _total.
// Instrumentation-scope labels are left out; the resource is exported once
// as target_info.
func NewPrometheusMetrics(service, version string) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mcptrail_build_info",
		Help:        "Always 1; the version label is the running build.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering Prometheus collector: %w", err)
		}
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("building the metrics resource: %w", err)
	}
	// No exemplars: the text exposition does not carry them, and offering
	// each measurement to a reservoir costs time on the request path.
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	return &Metrics{
		Provider: sdk,
		Handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		sdk:      sdk,
	}, nil
}

// Shutdown stops the MeterProvider; safe to call more than once.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil || m.sdk == nil {
		return nil
	}
	m.shutOnce.Do(func() { m.shutErr = m.sdk.Shutdown(ctx) })
	return m.shutErr
}
