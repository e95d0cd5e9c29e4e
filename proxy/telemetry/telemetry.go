// Package telemetry builds mcptrail's OpenTelemetry tracer provider from the
// standard OTEL_* environment variables, and the propagator used to carry
// trace context through HTTP headers and MCP params._meta.
//
// The provider is returned to the caller and injected where needed; this
// package never installs a global provider. When tracing is not configured,
// the provider is a no-op and costs nothing.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	// The semconv version must be the one the SDK's resource package uses,
	// or merging with resource.Default() fails with "conflicting Schema URL".
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Protocols of OTEL_EXPORTER_OTLP_PROTOCOL.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Propagator returns the W3C Trace Context + Baggage propagator.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// NewTracerProvider builds a TracerProvider from the standard OTEL_*
// environment, read through getenv (os.Getenv when nil):
//
//   - OTEL_SDK_DISABLED=true: tracing off.
//   - OTEL_TRACES_EXPORTER: a comma-separated list of otlp, console, none.
//     Default: otlp when an OTLP endpoint is set, otherwise none, so an
//     unconfigured gateway does not try to reach localhost:4318.
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
//     OTEL_EXPORTER_OTLP_ENDPOINT (a base URL; "/v1/traces" is appended for
//     HTTP). Default http://localhost:4318 (HTTP) or localhost:4317 (gRPC).
//   - OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL: http/protobuf (default) or grpc.
//   - OTEL_EXPORTER_OTLP_[TRACES_]HEADERS ("k=v,k2=v2", values URL-encoded),
//     _TIMEOUT (milliseconds), _COMPRESSION (gzip|none), and for gRPC
//     endpoints without a scheme _INSECURE=true.
//   - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: resource attributes; they
//     override service and version.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: always_on,
//     always_off, traceidratio, parentbased_always_on (default),
//     parentbased_always_off, parentbased_traceidratio.
//
// Invalid values are errors naming the variable. With tracing off it
// returns a no-op provider (never the global one) and a no-op shutdown.
// Otherwise shutdown flushes and stops the exporters, and its error says how
// many spans the OTLP exporter failed to deliver over the process's life;
// call it once, at exit.
// TLS certificates, span limits and batch settings (OTEL_BSP_*) are read by
// the SDK from the process environment. WithRedaction redacts every span
// before any exporter sees it.
func NewTracerProvider(ctx context.Context, service, version string, getenv func(string) string, opt ...Option) (trace.TracerProvider, func(context.Context) error, error) {
	var o options
	for _, f := range opt {
		f(&o)
	}
	wrap := func(exp sdktrace.SpanExporter) sdktrace.SpanExporter {
		if o.redact == nil {
			return exp
		}
		return RedactingExporter(exp, o.redact)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	noopShutdown := func(context.Context) error { return nil }
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return nil, nil, fmt.Errorf("reading OTEL_SDK_DISABLED=%q: %w", v, err)
		}
		if disabled {
			return noop.NewTracerProvider(), noopShutdown, nil
		}
	}
	exporters, err := exporterNames(getenv)
	if err != nil {
		return nil, nil, err
	}
	if len(exporters) == 0 {
		return noop.NewTracerProvider(), noopShutdown, nil
	}
	sampler, err := Sampler(getenv)
	if err != nil {
		return nil, nil, err
	}
	res, err := Resource(ctx, service, version, getenv)
	if err != nil {
		return nil, nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	var counters []*countingExporter
	for _, name := range exporters {
		switch name {
		case "otlp":
			exp, err := newOTLPExporter(ctx, getenv)
			if err != nil {
				return nil, nil, err
			}
			c := &countingExporter{next: wrap(exp)}
			counters = append(counters, c)
			opts = append(opts, sdktrace.WithBatcher(c))
		case "console":
			opts = append(opts, sdktrace.WithSyncer(wrap(NewConsoleExporter(os.Stderr))))
		}
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return tp, shutdownReporting(tp, counters), nil
}

// exporterNames returns the exporters to build, without "none".
func exporterNames(getenv func(string) string) ([]string, error) {
	raw := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if raw == "" {
		if getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
			return []string{"otlp"}, nil
		}
		return nil, nil
	}
	var names []string
	seen := map[string]bool{}
	for _, n := range strings.Split(raw, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		switch n {
		case "none":
			return nil, nil // "none" turns tracing off whatever else is listed
		case "otlp", "console":
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		default:
			return nil, fmt.Errorf("reading OTEL_TRACES_EXPORTER=%q: unknown exporter %q (want otlp, console or none)", raw, n)
		}
	}
	return names, nil
}

// otlpEnv reads the traces-specific variable, falling back to the generic
// one: OTEL_EXPORTER_OTLP_TRACES_X, then OTEL_EXPORTER_OTLP_X.
func otlpEnv(getenv func(string) string, suffix string) (name, value string) {
	name = "OTEL_EXPORTER_OTLP_TRACES_" + suffix
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return name, v
	}
	name = "OTEL_EXPORTER_OTLP_" + suffix
	return name, strings.TrimSpace(getenv(name))
}

func newOTLPExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	pname, protocol := otlpEnv(getenv, "PROTOCOL")
	if protocol == "" {
		protocol = ProtocolHTTPProtobuf
	}
	if protocol != ProtocolGRPC && protocol != ProtocolHTTPProtobuf {
		return nil, fmt.Errorf("reading %s=%q: want %s or %s", pname, protocol, ProtocolHTTPProtobuf, ProtocolGRPC)
	}
	// The endpoint: the traces-specific one is a full URL; the generic one is
	// a base to which HTTP appends the signal path.
	endpoint, full, ename := "", false, ""
	if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); v != "" {
		endpoint, full, ename = v, true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	} else if v := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		endpoint, ename = v, "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	hname, hraw := otlpEnv(getenv, "HEADERS")
	headers, err := parseHeaders(hraw)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", hname, err)
	}
	var timeout time.Duration
	tname, traw := otlpEnv(getenv, "TIMEOUT")
	if traw != "" {
		ms, err := strconv.ParseUint(traw, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("reading %s=%q: want milliseconds: %w", tname, traw, err)
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	cname, compression := otlpEnv(getenv, "COMPRESSION")
	if compression != "" && compression != "gzip" && compression != "none" {
		return nil, fmt.Errorf("reading %s=%q: want gzip or none", cname, compression)
	}
	iname, iraw := otlpEnv(getenv, "INSECURE")
	insecure := false
	if iraw != "" {
		if insecure, err = strconv.ParseBool(iraw); err != nil {
			return nil, fmt.Errorf("reading %s=%q: %w", iname, iraw, err)
		}
	}

	if protocol == ProtocolGRPC {
		var opts []otlptracegrpc.Option
		switch {
		case endpoint == "":
		case strings.Contains(endpoint, "://"):
			if err := checkURL(endpoint); err != nil {
				return nil, fmt.Errorf("reading %s: %w", ename, err)
			}
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		default: // host:port, TLS unless _INSECURE=true
			opts = append(opts, otlptracegrpc.WithEndpoint(endpoint))
		}
		if insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		if timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(timeout))
		}
		if compression == "gzip" {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("creating OTLP gRPC trace exporter: %w", err)
		}
		return exp, nil
	}

	var opts []otlptracehttp.Option
	if endpoint != "" {
		if err := checkURL(endpoint); err != nil {
			return nil, fmt.Errorf("reading %s: %w", ename, err)
		}
		if !full {
			endpoint = strings.TrimRight(endpoint, "/") + "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
	}
	if headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(headers))
	}
	if timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(timeout))
	}
	switch compression {
	case "gzip":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	case "none":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating OTLP HTTP trace exporter: %w", err)
	}
	return exp, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want http(s)://host:port[/path]", s)
	}
	return nil
}

// parseHeaders parses the W3C-baggage-like "k=v,k2=v2" list of OTLP header
// variables; values are URL-decoded.
func parseHeaders(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	h := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("header %q is not key=value", kv)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		h[k] = dv
	}
	return h, nil
}

// Sampler builds the root sampler from OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on).
func Sampler(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("reading OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("reading OTEL_TRACES_SAMPLER=%q: unknown sampler (want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)", name)
	}
}

// Resource describes this process: service name and version (overridden by
// OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME), the SDK, host and
// process. It uses the SDK's own semconv schema, so it merges with
// resource.Default().
func Resource(ctx context.Context, service, version string, getenv func(string) string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(service)}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	envAttrs, err := parseResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	attrs = append(attrs, envAttrs...)
	if name := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); name != "" {
		attrs = append(attrs, semconv.ServiceName(name))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithAttributes(attrs...), // later duplicates win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("building trace resource: %w", err)
	}
	return res, nil
}

// parseResourceAttributes parses "k=v,k2=v2" with URL-encoded values.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	h, err := parseHeaders(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	attrs := make([]attribute.KeyValue, 0, len(h))
	// Keep the variable's order so that a later duplicate wins, as written.
	for _, kv := range strings.Split(s, ",") {
		k, _, _ := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if v, ok := h[k]; ok {
			attrs = append(attrs, attribute.String(k, v))
			delete(h, k)
		}
	}
	return attrs, nil
}
