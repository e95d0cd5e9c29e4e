package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestTracingOff(t *testing.T) {
	tests := []struct {
		name string
		env  []string
	}{
		{"nothing configured", nil},
		{"only a service name", []string{"OTEL_SERVICE_NAME", "x"}},
		{"sdk disabled", []string{"OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}},
		{"exporter none", []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}},
		{"none wins in a list", []string{"OTEL_TRACES_EXPORTER", "otlp, none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, shutdown, err := NewTracerProvider(t.Context(), "mcptrail", "v1", envOf(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(noop.TracerProvider); !ok {
				t.Errorf("provider = %T, want noop.TracerProvider", tp)
			}
			_, span := tp.Tracer("t").Start(t.Context(), "s")
			if span.IsRecording() {
				t.Error("a span of the off provider records")
			}
			span.End()
			if err := shutdown(t.Context()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}

func TestInvalidEnvironment(t *testing.T) {
	ep := []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"}
	tests := []struct {
		name string
		env  []string
		want string // the variable the error must name
	}{
		{"sdk disabled", []string{"OTEL_SDK_DISABLED", "maybe"}, "OTEL_SDK_DISABLED"},
		{"exporter", []string{"OTEL_TRACES_EXPORTER", "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"protocol", append([]string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, ep...), "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"traces protocol", append([]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"}, ep...), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{"endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"traces endpoint", []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{"grpc endpoint", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT", "tcp://x:1"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"headers", append([]string{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}, ep...), "OTEL_EXPORTER_OTLP_HEADERS"},
		{"timeout", append([]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s"}, ep...), "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"},
		{"compression", append([]string{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"}, ep...), "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{"insecure", append([]string{"OTEL_EXPORTER_OTLP_INSECURE", "sure"}, ep...), "OTEL_EXPORTER_OTLP_INSECURE"},
		{"sampler", append([]string{"OTEL_TRACES_SAMPLER", "sometimes"}, ep...), "OTEL_TRACES_SAMPLER"},
		{"sampler arg", append([]string{"OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"}, ep...), "OTEL_TRACES_SAMPLER_ARG"},
		{"resource attributes", append([]string{"OTEL_RESOURCE_ATTRIBUTES", "a=%zz"}, ep...), "OTEL_RESOURCE_ATTRIBUTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, _, err := NewTracerProvider(t.Context(), "mcptrail", "v1", envOf(tt.env...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewTracerProvider = %v, %v; want an error naming %s", tp, err, tt.want)
			}
		})
	}
}

func TestSampler(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{nil, "ParentBased{root:AlwaysOnSampler"},
		{[]string{"OTEL_TRACES_SAMPLER", "always_on"}, "AlwaysOnSampler"},
		{[]string{"OTEL_TRACES_SAMPLER", "ALWAYS_OFF"}, "AlwaysOffSampler"},
		{[]string{"OTEL_TRACES_SAMPLER", "parentbased_always_off"}, "ParentBased{root:AlwaysOffSampler"},
		{[]string{"OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"}, "TraceIDRatioBased{0.25}"},
		{[]string{"OTEL_TRACES_SAMPLER", "traceidratio"}, "TraceIDRatioBased{1}"},
		{[]string{"OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.5"}, "ParentBased{root:TraceIDRatioBased{0.5}"},
	}
	for _, tt := range tests {
		s, err := Sampler(envOf(tt.env...))
		if err != nil {
			t.Errorf("Sampler(%q): %v", tt.env, err)
			continue
		}
		if got := s.Description(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("Sampler(%q) = %s, want prefix %s", tt.env, got, tt.want)
		}
	}
}

func TestResource(t *testing.T) {
	tests := []struct {
		name                  string
		env                   []string
		wantService, wantVers string
		wantExtra             map[string]string
	}{
		{"code values", nil, "mcptrail", "v1.2.3", nil},
		{"resource attributes override", []string{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment.name=prod,team=a%20b,team=c"}, "from-attrs", "v1.2.3",
			map[string]string{"deployment.environment.name": "prod", "team": "c"}},
		{"service name wins", []string{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,service.version=9", "OTEL_SERVICE_NAME", "gw"}, "gw", "9", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Resource(t.Context(), "mcptrail", "v1.2.3", envOf(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			get := func(k string) string { v, _ := res.Set().Value(attribute.Key(k)); return v.String() }
			if get("service.name") != tt.wantService || get("service.version") != tt.wantVers {
				t.Errorf("service = %s %s, want %s %s", get("service.name"), get("service.version"), tt.wantService, tt.wantVers)
			}
			for k, v := range tt.wantExtra {
				if get(k) != v {
					t.Errorf("%s = %q, want %q", k, get(k), v)
				}
			}
			if get("telemetry.sdk.name") != "opentelemetry" {
				t.Errorf("telemetry.sdk.name = %q", get("telemetry.sdk.name"))
			}
			// The trap this package avoids: a different semconv schema fails to merge.
			if _, err := resource.Merge(resource.Default(), res); err != nil {
				t.Errorf("merging with resource.Default(): %v", err)
			}
		})
	}
}

func TestPropagator(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("t").Start(context.Background(), "parent")
	defer span.End()
	m, _ := baggage.NewMember("tenant", "acme")
	bg, _ := baggage.New(m)
	ctx = baggage.ContextWithBaggage(ctx, bg)

	carrier := propagation.MapCarrier{} // the shape of params._meta
	Propagator().Inject(ctx, carrier)
	if carrier["traceparent"] == "" || carrier["baggage"] != "tenant=acme" {
		t.Fatalf("injected %v", carrier)
	}
	got := Propagator().Extract(context.Background(), carrier)
	if sc := trace.SpanContextFromContext(got); sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("extracted %v, want %v", sc, span.SpanContext())
	}
	if v := baggage.FromContext(got).Member("tenant").Value(); v != "acme" {
		t.Errorf("baggage tenant = %q", v)
	}
}

// receiver is a fake OTLP collector that records what it is sent.
type receiver struct {
	mu       sync.Mutex
	requests int
	paths    []string
	headers  []string // value of the "x-test" header per request
	spans    []string // span names
	services []string // resource service.name per resource span
	attrs    map[string]string
}

func (r *receiver) record(req *collectorpb.ExportTraceServiceRequest, path, header string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.paths = append(r.paths, path)
	r.headers = append(r.headers, header)
	if r.attrs == nil {
		r.attrs = map[string]string{}
	}
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			r.attrs[kv.GetKey()] = anyString(kv.GetValue())
			if kv.GetKey() == "service.name" {
				r.services = append(r.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s.GetName())
			}
		}
	}
}

func anyString(v *commonpb.AnyValue) string { return v.GetStringValue() }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var msg collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.record(&msg, req.URL.Path, req.Header.Get("X-Test")+"|"+req.Header.Get("Content-Encoding"))
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func emitSpans(t *testing.T, tp trace.TracerProvider, names ...string) {
	t.Helper()
	tr := tp.Tracer("github.com/mcptrail/mcptrail/proxy")
	for _, n := range names {
		_, span := tr.Start(t.Context(), n)
		if !span.IsRecording() {
			t.Fatalf("span %s is not recording", n)
		}
		span.End()
	}
}

func TestOTLPHTTP(t *testing.T) {
	tests := []struct {
		name       string
		env        func(url string) []string
		wantPath   string
		wantHeader string
	}{
		{
			name: "base endpoint gets the signal path",
			env: func(u string) []string {
				return []string{"OTEL_EXPORTER_OTLP_ENDPOINT", u + "/", "OTEL_EXPORTER_OTLP_HEADERS", "x-test=a%20b,other=1",
					"OTEL_SERVICE_NAME", "gw-test", "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci"}
			},
			wantPath: "/v1/traces", wantHeader: "a b|",
		},
		{
			name: "traces endpoint used as is, gzip, explicit exporter list",
			env: func(u string) []string {
				return []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", u + "/custom/traces",
					"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-test=traces",
					"OTEL_EXPORTER_OTLP_HEADERS", "x-test=generic", "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
					"OTEL_EXPORTER_OTLP_TIMEOUT", "5000", "OTEL_SERVICE_NAME", "gw-test", "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci"}
			},
			wantPath: "/custom/traces", wantHeader: "traces|gzip",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &receiver{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			tp, shutdown, err := NewTracerProvider(t.Context(), "mcptrail", "v0.1.0", envOf(tt.env(srv.URL)...))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tp.(*sdktrace.TracerProvider); !ok {
				t.Fatalf("provider = %T, want the SDK provider", tp)
			}
			emitSpans(t, tp, "tools/call crm.search", "initialize")
			if err := shutdown(t.Context()); err != nil { // flushes the batcher
				t.Fatalf("shutdown: %v", err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.requests == 0 {
				t.Fatal("the receiver got no export request")
			}
			if rec.paths[0] != tt.wantPath || rec.headers[0] != tt.wantHeader {
				t.Errorf("export to %s with x-test|encoding %q, want %s, %q", rec.paths[0], rec.headers[0], tt.wantPath, tt.wantHeader)
			}
			if got := strings.Join(rec.spans, ","); got != "tools/call crm.search,initialize" {
				t.Errorf("exported spans %q", got)
			}
			if rec.services[0] != "gw-test" || rec.attrs["service.version"] != "v0.1.0" || rec.attrs["deployment.environment.name"] != "ci" {
				t.Errorf("resource %v", rec.attrs)
			}
		})
	}
}

type grpcReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	rec *receiver
}

func (g *grpcReceiver) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.rec.record(req, "grpc", strings.Join(md.Get("x-test"), ","))
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func TestOTLPGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &receiver{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, &grpcReceiver{rec: rec})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()

	for _, endpoint := range []string{"http://" + lis.Addr().String(), lis.Addr().String()} {
		env := envOf("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT", endpoint,
			"OTEL_EXPORTER_OTLP_INSECURE", "true", "OTEL_EXPORTER_OTLP_HEADERS", "x-test=grpc")
		tp, shutdown, err := NewTracerProvider(t.Context(), "mcptrail", "v1", env)
		if err != nil {
			t.Fatal(err)
		}
		emitSpans(t, tp, "tools/list")
		if err := shutdown(t.Context()); err != nil {
			t.Fatalf("shutdown (endpoint %s): %v", endpoint, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.requests != 2 || strings.Join(rec.spans, ",") != "tools/list,tools/list" || rec.headers[0] != "grpc" || rec.services[0] != "mcptrail" {
		t.Errorf("grpc receiver got %d requests, spans %q, headers %q, services %q", rec.requests, rec.spans, rec.headers, rec.services)
	}
}

func TestConsoleExporter(t *testing.T) {
	var buf bytes.Buffer
	exp := NewConsoleExporter(&buf)
	res, err := Resource(t.Context(), "mcptrail", "v1", envOf())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	ctx, parent := tp.Tracer("scope").Start(t.Context(), "parent")
	_, child := tp.Tracer("scope").Start(ctx, "tools/call a.b", trace.WithAttributes(attribute.String("mcp.method.name", "tools/call")))
	child.AddEvent("retry")
	child.End()
	parent.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(t.Context()); err != nil { // twice is fine
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("console wrote %d lines: %s", len(lines), buf.String())
	}
	var got consoleSpan
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "tools/call a.b" || got.ParentID != parent.SpanContext().SpanID().String() || got.Attributes["mcp.method.name"] != "tools/call" ||
		got.Service != "mcptrail" || got.Scope != "scope" || len(got.Events) != 1 || got.Kind != "internal" {
		t.Errorf("console span = %+v", got)
	}
	// After shutdown nothing is written.
	n := buf.Len()
	if err := exp.ExportSpans(t.Context(), nil); err != nil || buf.Len() != n {
		t.Errorf("export after shutdown wrote %d bytes, err %v", buf.Len()-n, err)
	}
}

func TestConsoleFromEnvironment(t *testing.T) {
	tp, shutdown, err := NewTracerProvider(t.Context(), "mcptrail", "v1", envOf("OTEL_TRACES_EXPORTER", "console,console", "OTEL_TRACES_SAMPLER", "always_off"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(t.Context()) }()
	if _, ok := tp.(*sdktrace.TracerProvider); !ok {
		t.Fatalf("provider = %T", tp)
	}
	// always_off: nothing is recorded (and nothing is written to stderr).
	if _, span := tp.Tracer("t").Start(t.Context(), "s"); span.IsRecording() {
		t.Error("always_off sampler records")
	}
}

func BenchmarkNoopSpan(b *testing.B) {
	tp, _, err := NewTracerProvider(b.Context(), "mcptrail", "v1", envOf())
	if err != nil {
		b.Fatal(err)
	}
	tr := tp.Tracer("bench")
	ctx := b.Context()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, "tools/call")
		if !span.IsRecording() {
			n++
		}
		span.End()
	}
	if n != b.N {
		b.Fatalf("%d of %d spans not recording", n, b.N)
	}
}

// TestLostSpansReported: with the collector down, shutdown says how many
// spans were lost, and OpenTelemetry's own errors reach the slog logger
// (LogErrors), not Go's standard logger.
func TestLostSpansReported(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	LogErrors(slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)))
	t.Cleanup(func() { LogErrors(slog.New(slog.DiscardHandler)) })
	tp, shutdown, err := NewTracerProvider(t.Context(), "mcptrail", "v0", envOf("OTEL_EXPORTER_OTLP_ENDPOINT", dead, "OTEL_EXPORTER_OTLP_TIMEOUT", "300"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 20)
	for i := range names {
		names[i] = "tools/call"
	}
	emitSpans(t, tp, names...)
	err = shutdown(t.Context())
	if err == nil || !strings.Contains(err.Error(), "20 spans could not be exported") {
		t.Errorf("shutdown error = %v, want it to report 20 lost spans", err)
	}
	otel.Handle(errors.New("probe error"))
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `"msg":"OpenTelemetry"`) || !strings.Contains(logs.String(), "probe error") {
		t.Errorf("slog output = %q, want OpenTelemetry errors as JSON lines", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
