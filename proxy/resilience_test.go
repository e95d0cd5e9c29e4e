package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// flakyBackend is the test backend behind a switch: while failing > 0, each
// tools/call is refused with HTTP 503 (and failing counted down); hits
// counts the tools/call requests that reached it.
type flakyBackend struct {
	failing atomic.Int64
	hits    atomic.Int64
	srv     *httptest.Server
}

func newFlakyBackend(t *testing.T) *flakyBackend {
	f := &flakyBackend{}
	inner := testbackend.New(testbackend.Options{}).HTTPHandler()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			if bytes.Contains(b, []byte(`"tools/call"`)) {
				f.hits.Add(1)
				if f.failing.Add(-1) >= 0 {
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return
				}
				f.failing.Store(0)
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func echoCall(id int, msg string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":%q}}}`, id, msg)
}

func hopAttr(evs []recorder.Event, hop recorder.Hop, key string) string {
	for _, e := range evs {
		if e.Hop != hop {
			continue
		}
		for _, a := range e.Attrs {
			if a.Key == key {
				return a.Value
			}
		}
	}
	return ""
}

func upstreamHops(evs []recorder.Event) []recorder.Event {
	var out []recorder.Event
	for _, e := range evs {
		if e.Hop == recorder.HopUpstream {
			out = append(out, e)
		}
	}
	return out
}

// TestCircuitBreakerOpensFailsFastAndCloses: three refused calls open
// alpha's circuit; the next call fails at once with the request ID,
// reaches no backend, is recorded circuit_open, and alpha is not ready;
// after open_for (on the injected clock) one call probes, succeeds and
// closes the circuit.
func TestCircuitBreakerOpensFailsFastAndCloses(t *testing.T) {
	f := newFlakyBackend(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	reader := sdkmetric.NewManualReader()
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: f.srv.URL + "/mcp",
		Timeout: 5 * time.Second, Breaker: config.Breaker{Failures: 3, OpenFor: time.Minute}}}},
		func(o *proxy.Options) {
			o.Now = clock.now
			o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		})
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}

	f.failing.Store(1 << 30)
	start := time.Now()
	for i := range 3 {
		_, b := post(t, e.url, echoCall(10+i, "down"), hdr)
		if r := decodeResp(t, b); r.Error == nil || strings.Contains(r.Error.Message, "circuit open") {
			t.Fatalf("failing call %d answered %s, want the backend's failure", i+1, b)
		}
	}
	toOpen := time.Since(start)
	if got := e.gw.Backend("alpha").CircuitState(); got != "open" {
		t.Fatalf("after 3 failures the circuit is %s, want open", got)
	}
	hits := f.hits.Load()
	t0 := time.Now()
	resp, b := post(t, e.url, echoCall(20, "fast"), hdr)
	fastFail := time.Since(t0)
	reqID := resp.Header.Get("X-Request-Id")
	r := decodeResp(t, b)
	if r.Error == nil || r.Error.Code != -32001 || !strings.Contains(r.Error.Message, "circuit open") ||
		!strings.Contains(string(r.Error.Data), reqID) || !strings.Contains(string(r.Error.Data), "circuit_open") {
		t.Fatalf("call with the circuit open answered %s; want -32001 circuit open carrying request ID %s", b, reqID)
	}
	if f.hits.Load() != hits {
		t.Errorf("the call with the circuit open reached the backend")
	}
	evs := e.rec.byRequest(reqID)
	if got := hopAttr(evs, recorder.HopResponse, proxy.AttrResilience); got != "circuit_open" {
		t.Errorf("recorded %s = %q, want circuit_open", proxy.AttrResilience, got)
	}
	if n := len(upstreamHops(evs)); n != 0 {
		t.Errorf("%d upstream hops recorded for a call refused by the circuit", n)
	}
	if e.gw.Backend("alpha").Ready() {
		t.Error("alpha is ready with its circuit open")
	}
	for name, want := range map[string]float64{"mcptrail.backend.circuit.state": 1, "mcptrail.backend.circuit.opens": 1,
		"mcptrail.backend.circuit.rejected": 1, "mcptrail.backend.circuit.tools_open": 0} {
		if got := collect(t, reader, name)["server=alpha"]; got != want {
			t.Errorf("%s{server=alpha} = %v with the circuit open, want %v", name, got, want)
		}
	}
	if code, _ := get(t, e.url+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the only backend's circuit open, want 503", code)
	}
	if st := e.gw.Status(); len(st.Backends) != 1 || st.Backends[0].Circuit != "open" || st.Backends[0].CircuitOpens != 1 {
		t.Errorf("/statusz backends = %+v with the circuit open, want alpha's circuit open, opened once", st.Backends)
	}

	f.failing.Store(0)
	clock.add(time.Minute)
	t1 := time.Now()
	_, b = post(t, e.url, echoCall(30, "probe"), hdr)
	toClose := time.Since(t1)
	if !strings.Contains(string(b), "probe") || strings.Contains(string(b), `"error"`) {
		t.Fatalf("the probe after open_for answered %s", b)
	}
	if got := e.gw.Backend("alpha").CircuitState(); got != "closed" {
		t.Errorf("after a successful probe the circuit is %s, want closed", got)
	}
	if got := collect(t, reader, "mcptrail.backend.circuit.state")["server=alpha"]; got != 0 {
		t.Errorf("mcptrail.backend.circuit.state{server=alpha} = %v after the probe, want 0", got)
	}
	t.Logf("breaker: opened after 3 failed calls in %v; a call with it open failed in %v; closed by one probe call in %v after open_for (1m on the test clock)", toOpen, fastFail, toClose)
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestRetriesRecordedAsAttempts: a read-only tool whose first two
// attempts are refused is answered by the third; each attempt is its own
// upstream hop with attempt 1, 2, 3. A tool that is not read-only is not
// retried.
func TestRetriesRecordedAsAttempts(t *testing.T) {
	f := newFlakyBackend(t)
	reader := sdkmetric.NewManualReader()
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: f.srv.URL + "/mcp",
		Timeout: 5 * time.Second, Retries: 2, RetryBackoff: time.Millisecond}}},
		func(o *proxy.Options) { o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)) })
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}

	f.failing.Store(2)
	resp, b := post(t, e.url, echoCall(2, "third time"), hdr)
	if !strings.Contains(string(b), "third time") || strings.Contains(string(b), `"error"`) {
		t.Fatalf("retried read-only call answered %s", b)
	}
	evs := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
	ups := upstreamHops(evs)
	var attempts []string
	for _, u := range ups {
		attempts = append(attempts, fmt.Sprintf("%d:%s", u.Attempt, u.Outcome))
	}
	if got, want := strings.Join(attempts, " "), "1:transport_error 2:transport_error 3:ok"; got != want {
		t.Errorf("upstream hops (attempt:outcome) = %s, want %s", got, want)
	}
	if got := hopAttr(evs, recorder.HopResponse, proxy.AttrResilience); got != "retried" {
		t.Errorf("recorded %s = %q, want retried", proxy.AttrResilience, got)
	}
	if got := collect(t, reader, "mcptrail.upstream.retries")["server=alpha"]; got != 2 {
		t.Errorf("mcptrail.upstream.retries{server=alpha} = %v, want 2", got)
	}

	f.failing.Store(1)
	resp, b = post(t, e.url, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha.write_note","arguments":{"text":"x"}}}`, hdr)
	if r := decodeResp(t, b); r.Error == nil {
		t.Fatalf("refused write_note answered %s, want the refusal (no retry)", b)
	}
	if n := len(upstreamHops(e.rec.byRequest(resp.Header.Get("X-Request-Id")))); n != 1 {
		t.Errorf("write_note (not read-only) was sent %d times, want 1", n)
	}
}

// httpBackendProcess starts the test backend as a process of its own over
// HTTP and returns its URL and the process.
func httpBackendProcess(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MCPTRAIL_TESTBACKEND_HTTP="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "backend process listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/mcp", cmd
}

// TestBackendKillWithFallback: alpha is a backend process; beta serves the
// same tools and is alpha's fallback. alpha is SIGKILLed in the middle of
// a run of calls: every call is answered, those after the kill by beta,
// recorded as fallback hops.
func TestBackendKillWithFallback(t *testing.T) {
	url, proc := httpBackendProcess(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: url, Timeout: 5 * time.Second, ConnectTimeout: time.Second,
			Fallbacks: []string{"beta"}, Breaker: config.Breaker{Failures: 2, OpenFor: time.Hour}},
		stdioServer("beta", "v1"),
	}})
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}
	const calls = 40
	answered, errs, byFallback := 0, 0, 0
	for i := range calls {
		if i == calls/2 {
			if err := proc.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = proc.Wait()
		}
		resp, b := post(t, e.url, echoCall(100+i, fmt.Sprintf("call %d", i)), hdr)
		r := decodeResp(t, b)
		if r.Error != nil || !strings.Contains(string(r.Result), fmt.Sprintf("call %d", i)) {
			errs++
			t.Errorf("call %d answered %s", i, b)
			continue
		}
		answered++
		evs := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
		ups := upstreamHops(evs)
		last := ups[len(ups)-1]
		if i < calls/2 && (last.Backend != "alpha" || last.Fallback) {
			t.Errorf("call %d before the kill went to %s (fallback %v)", i, last.Backend, last.Fallback)
		}
		if last.Fallback {
			byFallback++
			if last.Backend != "beta" || hopAttr(evs, recorder.HopResponse, proxy.AttrResilience) != "fallback" {
				t.Errorf("call %d: fallback hop to %s, resilience %q", i, last.Backend, hopAttr(evs, recorder.HopResponse, proxy.AttrResilience))
			}
		}
	}
	if byFallback != calls/2 {
		t.Errorf("%d calls answered by the fallback, want the %d after the kill", byFallback, calls/2)
	}
	if got := e.gw.Backend("alpha").CircuitState(); got != "open" {
		t.Errorf("alpha's circuit is %s after its death, want open", got)
	}
	t.Logf("backend kill: %d calls, %d answered (%d by the fallback), %d errors", calls, answered, byFallback, errs)
}

// TestToolBreakerOpensAlone: a tool that times out twice opens a breaker
// of its own; it then fails at once naming the tool, while the server's
// other tools still answer and the server stays ready.
func TestToolBreakerOpensAlone(t *testing.T) {
	f := newFlakyBackend(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: f.srv.URL + "/mcp",
		Timeout: 300 * time.Millisecond, Breaker: config.Breaker{Failures: 2, OpenFor: time.Minute}}}},
		func(o *proxy.Options) { o.Now = clock.now })
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}
	slow := func(id int) rpcResp {
		_, b := post(t, e.url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":1,"delay_ms":5000}}}`, id), hdr)
		return decodeResp(t, b)
	}
	for i := range 2 {
		if r := slow(i + 1); r.Error == nil || r.Error.Code != -32004 {
			t.Fatalf("slow call %d: %+v, want a timeout (-32004)", i+1, r.Error)
		}
	}
	hits := f.hits.Load()
	r := slow(3)
	if r.Error == nil || !strings.Contains(r.Error.Message, "circuit open: tool slow of backend alpha") || !strings.Contains(string(r.Error.Data), `"tool":"slow"`) {
		t.Fatalf("slow with its breaker open: %+v, want circuit open naming the tool", r.Error)
	}
	if f.hits.Load() != hits {
		t.Error("the call refused by the tool's breaker reached the backend")
	}
	if _, b := post(t, e.url, echoCall(4, "sibling"), hdr); !strings.Contains(string(b), "sibling") || decodeResp(t, b).Error != nil {
		t.Errorf("echo while slow's breaker is open answered %s", b)
	}
	if got := e.gw.Backend("alpha").CircuitState(); got != "closed" || !e.gw.Backend("alpha").Ready() {
		t.Errorf("the server's circuit is %s (ready %v) after one tool's timeouts, want closed and ready", got, e.gw.Backend("alpha").Ready())
	}
}

// recordingModernBackend is a 2026-07-28 mcp-go server with an echo tool
// that keeps the params._meta of every tools/call it receives.
func recordingModernBackend(t *testing.T) (url string, metas func() []map[string]json.RawMessage) {
	t.Helper()
	srv := server.NewMCPServer("modern-echo", "1", server.WithToolCapabilities(false))
	srv.AddTool(mcpgo.NewTool("echo", mcpgo.WithString("message")), func(_ context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("Echo: " + req.GetString("message", "")), nil
	})
	h := server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true))
	var mu sync.Mutex
	var seen []map[string]json.RawMessage
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m struct {
			Method string `json:"method"`
			Params struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		if json.Unmarshal(b, &m) == nil && m.Method == "tools/call" {
			mu.Lock()
			seen = append(seen, m.Params.Meta)
			mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL + "/mcp", func() []map[string]json.RawMessage {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestFallbackSendsTheClientsMeta: a 2026 client's per-request _meta keys
// are stripped for a session-era backend; when that backend fails and the
// call falls back to a 2026 backend, the fallback gets the client's keys,
// not what the first attempt left of them (fails before the fix: each
// attempt edited the call's one _meta in place).
func TestFallbackSendsTheClientsMeta(t *testing.T) {
	f := newFlakyBackend(t)
	url, metas := recordingModernBackend(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: f.srv.URL + "/mcp", Timeout: 5 * time.Second, Fallbacks: []string{"modern"}},
		{Name: "modern", Transport: "http", URL: url, ProtocolVersion: "2026-07-28", Timeout: 5 * time.Second},
	}})
	f.failing.Store(100)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"hi"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw-modern","version":"9"},` +
		`"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/logLevel":"debug"}}}`
	_, b := post(t, e.url, body, modernHeaders("tools/call", "alpha.echo"))
	if a := decodeAnswer(t, b); a.Error != nil || !strings.Contains(string(a.Result["content"]), "Echo: hi") {
		t.Fatalf("fallback call answered %s, want the fallback's echo", b)
	}
	if f.hits.Load() == 0 {
		t.Fatal("the primary was never tried")
	}
	got := metas()
	if len(got) != 1 {
		t.Fatalf("the fallback got %d tools/call, want 1", len(got))
	}
	for k, want := range map[string]string{
		"io.modelcontextprotocol/logLevel":           `"debug"`,
		"io.modelcontextprotocol/clientCapabilities": `{"elicitation":{}}`,
		"io.modelcontextprotocol/clientInfo":         `{"name":"raw-modern","version":"9"}`,
	} {
		if string(got[0][k]) != want {
			t.Errorf("fallback _meta[%s] = %s, want the client's %s", k, got[0][k], want)
		}
	}
}
