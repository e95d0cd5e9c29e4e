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
