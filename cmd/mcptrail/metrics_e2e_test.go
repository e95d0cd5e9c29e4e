package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcptrail/mcptrail/dashboards"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// TestE2EMetrics scrapes /metrics of `mcptrail serve` after real calls (an
// answer, a tool error, a denial, an unknown token, a dead backend), with an
// open standalone stream and a corrupt spool segment left by "a previous
// run" (its events are lost: nothing is quarantined, the spool goes on), and
// checks every family with the value the traffic implies.
func TestE2EMetrics(t *testing.T) {
	srv := chtest.Shared(t)
	env := newEnv(t, srv.Addr())
	// A segment with an unreadable header: the recorder quarantines it.
	if err := os.WriteFile(filepath.Join(env.SpoolDir, "01JAAAAAAAAAAAAAAAAAAAAAAA.seg"), []byte("not a segment"), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, env)
	full := dial(t, gw.url, env.FullToken)
	limited := dial(t, gw.url, env.LimitedToken)

	for range 3 {
		if resp, _ := full.callTool(t, "tb.echo", map[string]any{"message": "hi"}); resp.Error != nil {
			t.Fatalf("tb.echo: %+v", resp.Error)
		}
	}
	full.callTool(t, "tb.fail", map[string]any{})
	if resp, _ := limited.callTool(t, "tb.fail", map[string]any{}); resp.Error == nil {
		t.Fatal("limited token calling tb.fail: want a denial")
	}
	if resp, _ := full.callTool(t, "dead.anything", map[string]any{}); resp.Error == nil {
		t.Fatal("dead.anything: want an error")
	}
	stranger := &mcpClient{base: gw.url, token: "not-a-configured-token"}
	if _, status, _, err := stranger.post(context.Background(), map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}); err == nil && status != http.StatusUnauthorized {
		t.Fatalf("unknown token: HTTP %d, want 401", status)
	}

	// A standalone stream, open while we scrape.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.url+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", full.sid)
	req.Header.Set("Authorization", "Bearer "+full.token)
	stream, err := httpc.Do(req)
	if err != nil || stream.StatusCode != http.StatusOK {
		t.Fatalf("GET /mcp stream: %v %v", err, stream)
	}
	defer stream.Body.Close()

	rec := gw.waitWritten(t)
	fams := scrape(t, gw.admin+"/metrics")

	tests := []struct {
		family string
		labels map[string]string
		check  func(v float64) bool
		want   string
	}{
		{"mcptrail_requests_total", map[string]string{"server": "tb", "method": "tools/call", "tool": "tb.echo", "outcome": "ok"}, eq(3), "3"},
		{"mcptrail_requests_total", map[string]string{"server": "tb", "method": "tools/call", "tool": "tb.fail", "outcome": "tool_error"}, eq(1), "1"},
		{"mcptrail_requests_total", map[string]string{"server": "", "method": "tools/call", "tool": "tb.fail", "outcome": "denied"}, eq(1), "1"},
		{"mcptrail_requests_total", map[string]string{"server": "dead", "method": "tools/call", "tool": "", "outcome": "transport_error"}, eq(1), "1"},
		{"mcptrail_requests_total", map[string]string{"server": "", "method": "initialize", "outcome": "ok"}, eq(2), "2"},
		{"mcptrail_request_duration_seconds", map[string]string{"server": "tb", "method": "tools/call", "tool": "tb.echo"}, eq(3), "3 observations"},
		{"mcptrail_policy_decisions_total", map[string]string{"check": "tokens", "decision": "denied", "rule": "tools:default-deny"}, eq(1), "1"},
		{"mcptrail_policy_decisions_total", map[string]string{"check": "tokens", "decision": "allowed", "rule": "tools:*"}, eq(5), "5"},
		{"mcptrail_policy_decisions_total", map[string]string{"check": "bearer_token", "decision": "denied", "rule": "unknown bearer token"}, eq(1), "1"},
		{"mcptrail_policy_decisions_total", map[string]string{"check": "bearer_token", "decision": "allowed", "rule": "limited"}, gt(0), "> 0"},
		{"mcptrail_limit_refusals_total", map[string]string{"limit": "max_sessions_per_principal"}, eq(0), "0"},
		{"mcptrail_sessions", nil, eq(2), "2"},
		{"mcptrail_streams", nil, eq(1), "1"},
		{"mcptrail_stream_messages_dropped_total", nil, eq(0), "0"},
		{"mcptrail_backend_up", map[string]string{"server": "tb"}, eq(1), "1"},
		{"mcptrail_backend_up", map[string]string{"server": "dead"}, eq(0), "0"},
		{"mcptrail_recorder_events_enqueued_total", nil, atLeast(float64(rec.Enqueued)), "≥ enqueued in /statusz"},
		{"mcptrail_recorder_events_spooled_total", nil, atLeast(float64(rec.Spooled)), "≥ spooled in /statusz"},
		{"mcptrail_recorder_events_written_total", nil, atLeast(float64(rec.Written)), "≥ written in /statusz"},
		{"mcptrail_recorder_events_dropped_total", nil, eq(0), "0"},
		{"mcptrail_recorder_batches_retried_total", nil, eq(0), "0"},
		{"mcptrail_recorder_events_quarantined_total", nil, eq(0), "0"},
		{"mcptrail_recorder_events_unacknowledged_total", nil, eq(0), "0"},
		{"mcptrail_recorder_quarantine_size_bytes", nil, eq(0), "0"},
		{"mcptrail_recorder_queue_events", nil, ge(0), "present"},
		{"mcptrail_recorder_spool_size_bytes", nil, ge(0), "present"},
		{"mcptrail_recorder_spool_segments", nil, ge(0), "present"},
		{"mcptrail_recorder_writes_total", nil, gt(0), "> 0"},
		{"mcptrail_recorder_write_time_seconds_total", nil, gt(0), "> 0"},
		{"mcptrail_recorder_write_last_duration_seconds", nil, gt(0), "> 0"},
		{"mcptrail_build_info", map[string]string{"version": version}, eq(1), "1"},
		{"go_goroutines", nil, gt(0), "> 0"},
		{"process_resident_memory_bytes", nil, gt(0), "> 0"},
	}
	for _, tt := range tests {
		v, ok := metricValue(fams, tt.family, tt.labels)
		if !ok {
			t.Errorf("%s%v: not exposed", tt.family, tt.labels)
			continue
		}
		if !tt.check(v) {
			t.Errorf("%s%v = %v, want %s", tt.family, tt.labels, v, tt.want)
		}
	}
	// Every family the generated metrics dashboard reads is exposed.
	gen, err := dashboards.Generate(dashboards.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gen {
		for _, name := range dashboards.MetricNames(dashboards.PromExprs(g.Model)) {
			if _, ok := fams[name]; !ok {
				t.Errorf("dashboard %s reads %s, which /metrics does not expose", g.UID, name)
			}
		}
	}
	if t.Failed() {
		t.Logf("families: %s", strings.Join(familyNames(fams), " "))
	}

	t.Run("dashboard queries in Prometheus", func(t *testing.T) {
		prom := startPrometheus(t, strings.TrimPrefix(gw.admin, "http://"))
		// Two scrapes before and after more traffic: rates are real.
		waitFor(t, "Prometheus to scrape the gateway twice", 60*time.Second, prom.proc, func() (bool, error) {
			n, err := prom.scalar("count_over_time(mcptrail_build_info[1m])")
			return n >= 2, err
		})
		for range 5 {
			full.callTool(t, "tb.echo", map[string]any{"message": "again"})
		}
		waitFor(t, "Prometheus to see the new calls", 60*time.Second, prom.proc, func() (bool, error) {
			n, err := prom.scalar(`sum(rate(mcptrail_requests_total{tool="tb.echo"}[1m]))`)
			return n > 0, err
		})
		// Every PromQL expression of the generated dashboards parses and
		// evaluates to at least one series, with Grafana's variables as
		// "All" would set them.
		vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*", "$server", ".*")
		for _, g := range gen {
			for _, e := range dashboards.PromExprs(g.Model) {
				q := vars.Replace(e.Expr)
				n, err := prom.series(q)
				if err != nil {
					t.Errorf("%s / %s %s: %v\n%s", g.UID, e.Panel, e.RefID, err, q)
				} else if n == 0 {
					t.Errorf("%s / %s %s: no series\n%s", g.UID, e.Panel, e.RefID, q)
				}
			}
		}
		if n, err := prom.scalar(`sum(rate(mcptrail_requests_total{instance=~".*",server=~".*"}[1m]))`); err != nil || n <= 0 {
			t.Errorf("the Requests/s panel reads %v (%v), want > 0 after the calls", n, err)
		}
	})
}

// prometheus is a Prometheus server (Debian's package, installed by
// scripts/setup.sh) scraping one target every second.
type prometheus struct {
	proc *proc
	url  string
}

func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (Debian package prometheus): run scripts/setup.sh")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := "global: {scrape_interval: 1s, evaluation_interval: 1s}\n" +
		"scrape_configs:\n  - job_name: mcptrail\n    metrics_path: /metrics\n    static_configs: [{targets: [\"" + target + "\"]}]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	logPath := filepath.Join(dir, "prometheus.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	p := &proc{name: "prometheus", cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return &prometheus{proc: p, url: "http://" + addr}
}

// query runs an instant query and returns its vector or scalar result.
func (p *prometheus) query(q string) ([]float64, error) {
	resp, err := httpc.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding the answer to %s: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	parse := func(v []any) float64 {
		s, _ := v[1].(string)
		f, _ := strconv.ParseFloat(s, 64)
		return f
	}
	switch r.Data.ResultType {
	case "vector":
		var vec []struct{ Value []any }
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]float64, 0, len(vec))
		for _, v := range vec {
			out = append(out, parse(v.Value))
		}
		return out, nil
	case "scalar":
		var v []any
		if err := json.Unmarshal(r.Data.Result, &v); err != nil {
			return nil, err
		}
		return []float64{parse(v)}, nil
	}
	return nil, fmt.Errorf("query %s: result type %s", q, r.Data.ResultType)
}

// series is the number of series q returns.
func (p *prometheus) series(q string) (int, error) {
	v, err := p.query(q)
	return len(v), err
}

// scalar is the first value q returns (0 when none).
func (p *prometheus) scalar(q string) (float64, error) {
	v, err := p.query(q)
	if err != nil || len(v) == 0 {
		return 0, err
	}
	return v[0], nil
}

func eq(w float64) func(float64) bool      { return func(v float64) bool { return v == w } }
func gt(w float64) func(float64) bool      { return func(v float64) bool { return v > w } }
func ge(w float64) func(float64) bool      { return func(v float64) bool { return v >= w } }
func atLeast(w float64) func(float64) bool { return func(v float64) bool { return v >= w && v > 0 } }

// scrape reads a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// metricValue is the value of the series of family whose labels include
// want (a histogram's value is its sample count). Labels absent from a
// series read as "".
func metricValue(fams map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f, ok := fams[family]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	return out
}
