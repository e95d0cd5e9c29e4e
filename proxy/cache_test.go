package proxy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// cacheMeta is the mcptrail.dev/cache member of an answer's result._meta;
// nil when absent.
func cacheMeta(t *testing.T, b []byte) *struct {
	AgeMs int64 `json:"ageMs"`
	Stale bool  `json:"stale"`
} {
	t.Helper()
	r := decodeResp(t, b)
	var res struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	_ = json.Unmarshal(r.Result, &res)
	raw, ok := res.Meta[proxy.MetaCache]
	if !ok {
		return nil
	}
	var m struct {
		AgeMs int64 `json:"ageMs"`
		Stale bool  `json:"stale"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s = %s: %v", proxy.MetaCache, raw, err)
	}
	return &m
}

// TestResultCache: a tool that opted in is answered from the cache the
// second time (marked in _meta with its age, recorded cached, no upstream
// hop); other arguments miss; after its TTL it is fetched again; with its
// server failing, an expired answer is served marked stale. A tool that did
// not opt in is never cached. Duplicate calls in flight share one upstream
// call.
func TestResultCache(t *testing.T) {
	f := newFlakyBackend(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	reader := sdkmetric.NewManualReader()
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "alpha", Transport: "http", URL: f.srv.URL + "/mcp",
		Timeout: 5 * time.Second, Breaker: config.Breaker{Failures: -1},
		Tools: map[string]config.ToolSettings{
			"echo": {Cache: &config.ToolCache{TTL: time.Minute, ServeStale: time.Hour}},
			"slow": {Cache: &config.ToolCache{TTL: time.Minute}},
		}}}},
		func(o *proxy.Options) {
			o.Now = clock.now
			o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		})
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}

	_, b := post(t, e.url, echoCall(1, "hello"), hdr)
	if !strings.Contains(string(b), "hello") || cacheMeta(t, b) != nil {
		t.Fatalf("first call answered %s, want the backend's answer, not marked cached", b)
	}
	hits := f.hits.Load()
	clock.add(1500 * time.Millisecond)
	resp, b := post(t, e.url, echoCall(2, "hello"), hdr)
	m := cacheMeta(t, b)
	if !strings.Contains(string(b), "hello") || m == nil || m.Stale || m.AgeMs != 1500 {
		t.Fatalf("second call answered %s, want the cached answer aged 1500 ms", b)
	}
	if f.hits.Load() != hits {
		t.Error("the cached call reached the backend")
	}
	evs := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
	if got := hopAttr(evs, recorder.HopResponse, proxy.AttrResilience); got != "cached" {
		t.Errorf("recorded %s = %q, want cached", proxy.AttrResilience, got)
	}
	if n := len(upstreamHops(evs)); n != 0 {
		t.Errorf("%d upstream hops recorded for a cached answer", n)
	}
	if _, b = post(t, e.url, echoCall(3, "other"), hdr); cacheMeta(t, b) != nil || f.hits.Load() != hits+1 {
		t.Errorf("other arguments answered %s from the cache", b)
	}
	// Not opted in: add is read-only but never cached.
	add := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"alpha.add","arguments":{"a":1,"b":2}}}`
	post(t, e.url, add, hdr)
	if _, b = post(t, e.url, add, hdr); cacheMeta(t, b) != nil {
		t.Errorf("alpha.add (not opted in) answered from the cache: %s", b)
	}

	clock.add(2 * time.Minute)
	hits = f.hits.Load()
	if _, b = post(t, e.url, echoCall(5, "hello"), hdr); cacheMeta(t, b) != nil || f.hits.Load() != hits+1 {
		t.Errorf("after its TTL the call answered %s without reaching the backend", b)
	}
	clock.add(2 * time.Minute)
	f.failing.Store(1 << 30)
	resp, b = post(t, e.url, echoCall(6, "hello"), hdr)
	if m = cacheMeta(t, b); m == nil || !m.Stale || m.AgeMs != 120_000 || !strings.Contains(string(b), "hello") {
		t.Fatalf("with the backend failing, answered %s; want the expired answer marked stale, aged 120000 ms", b)
	}
	if got := hopAttr(e.rec.byRequest(resp.Header.Get("X-Request-Id")), recorder.HopResponse, proxy.AttrResilience); got != "stale" {
		t.Errorf("recorded %s = %q, want stale", proxy.AttrResilience, got)
	}
	if _, b = post(t, e.url, echoCall(7, "never cached"), hdr); decodeResp(t, b).Error == nil {
		t.Errorf("an uncached call with the backend failing answered %s", b)
	}
	f.failing.Store(0)

	// Singleflight: identical slow calls at once reach the backend once.
	hits = f.hits.Load()
	const dup = 5
	var wg sync.WaitGroup
	answers := make([][]byte, dup)
	for i := range dup {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, answers[i] = post(t, e.url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":1,"delay_ms":1000}}}`, 10+i), hdr)
		}()
	}
	wg.Wait()
	for i, a := range answers {
		if r := decodeResp(t, a); r.Error != nil || strings.Contains(string(r.Result), `"isError":true`) {
			t.Errorf("duplicate call %d answered %s", i, a)
		}
	}
	if n := f.hits.Load() - hits; n < 1 || n >= dup {
		t.Errorf("%d identical calls in flight reached the backend %d times, want fewer (shared)", dup, n)
	}
	for name, want := range map[string]float64{"mcptrail.cache.hits": 1, "mcptrail.cache.stale": 1} {
		if got := collect(t, reader, name)[""]; got < want {
			t.Errorf("%s = %v, want ≥ %v", name, got, want)
		}
	}
	if got := collect(t, reader, "mcptrail.cache.misses")[""]; got < 4 {
		t.Errorf("mcptrail.cache.misses = %v, want ≥ 4", got)
	}
}

// TestBackendKillWithFallbackAndWarmCache: alpha and its fallback beta are
// backend processes; echo is cached (ttl 1m, serve_stale 1h) and the cache
// is warm. alpha is SIGKILLed: calls go to beta. Then beta is SIGKILLed
// too: answers the cache holds are served marked stale, the others fail
// with a clear error carrying their request ID.
func TestBackendKillWithFallbackAndWarmCache(t *testing.T) {
	alphaURL, alpha := httpBackendProcess(t)
	betaURL, beta := httpBackendProcess(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	cache := map[string]config.ToolSettings{"echo": {Cache: &config.ToolCache{TTL: time.Minute, ServeStale: time.Hour}}}
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: alphaURL, Timeout: 5 * time.Second, ConnectTimeout: time.Second,
			Fallbacks: []string{"beta"}, Breaker: config.Breaker{Failures: 2, OpenFor: time.Hour}, Tools: cache},
		{Name: "beta", Transport: "http", URL: betaURL, Timeout: 5 * time.Second, ConnectTimeout: time.Second,
			Breaker: config.Breaker{Failures: 2, OpenFor: time.Hour}},
	}}, func(o *proxy.Options) { o.Now = clock.now })
	sid := initSession(t, e.url, nil)
	hdr := map[string]string{"Mcp-Session-Id": sid}
	const warm, cold = 10, 5
	var answered, errs, stale, byFallback int
	run := func(phase string, n int, check func(i int, b []byte, evs []recorder.Event)) {
		for i := range n {
			resp, b := post(t, e.url, echoCall(1000+i, fmt.Sprintf("m%d", i)), hdr)
			r := decodeResp(t, b)
			evs := e.rec.byRequest(resp.Header.Get("X-Request-Id"))
			switch {
			case r.Error != nil:
				errs++
				if !strings.Contains(string(r.Error.Data), resp.Header.Get("X-Request-Id")) {
					t.Errorf("%s: error without its request ID: %s", phase, b)
				}
			default:
				answered++
				if m := cacheMeta(t, b); m != nil && m.Stale {
					stale++
				} else if ups := upstreamHops(evs); len(ups) > 0 && ups[len(ups)-1].Fallback {
					byFallback++
				}
			}
			check(i, b, evs)
		}
	}
	run("warm-up", warm, func(i int, b []byte, _ []recorder.Event) {
		if cacheMeta(t, b) != nil || !strings.Contains(string(b), fmt.Sprintf("m%d", i)) {
			t.Errorf("warm-up call %d answered %s", i, b)
		}
	})
	if err := alpha.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = alpha.Wait()
	clock.add(2 * time.Minute) // the cache is expired: calls go upstream
	run("alpha killed", warm, func(i int, b []byte, evs []recorder.Event) {
		ups := upstreamHops(evs)
		if len(ups) == 0 || ups[len(ups)-1].Backend != "beta" || !ups[len(ups)-1].Fallback {
			t.Errorf("call %d with alpha dead was not answered by the fallback: %s", i, b)
		}
	})
	if err := beta.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = beta.Wait()
	clock.add(2 * time.Minute)
	run("both killed", warm+cold, func(i int, b []byte, evs []recorder.Event) {
		m := cacheMeta(t, b)
		if i < warm && (m == nil || !m.Stale || !strings.Contains(string(b), fmt.Sprintf("m%d", i))) {
			t.Errorf("call %d with both dead answered %s; want its cached answer marked stale", i, b)
		}
		if i < warm && hopAttr(evs, recorder.HopResponse, proxy.AttrResilience) != "stale" {
			t.Errorf("call %d served stale was not recorded stale", i)
		}
		if i >= warm && decodeResp(t, b).Error == nil {
			t.Errorf("call %d, never cached, with both dead answered %s", i, b)
		}
	})
	if want := 3*warm + cold; answered+errs != want || errs != cold || stale != warm || byFallback != warm {
		t.Errorf("answered %d, errors %d, stale %d, by the fallback %d; want %d calls: %d errors, %d stale, %d by the fallback",
			answered, errs, stale, byFallback, want, cold, warm, warm)
	}
	t.Logf("backend kill with fallback and warm cache: %d calls, %d answered (%d by the fallback, %d stale from the cache), %d errors",
		answered+errs, answered, byFallback, stale, errs)
}
