package proxy_test

import (
	"bytes"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// rssBytes is the process's resident set size, from /proc/self/statm.
func rssBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkIdleSessionMemory opens b.N sessions through real HTTP
// (initialize, then nothing) and reports the heap and RSS each idle
// session holds. Run it with a fixed count:
//
//	go test ./proxy -run XXX -bench IdleSessionMemory -benchtime=5000x
func BenchmarkIdleSessionMemory(b *testing.B) {
	cfg := oneBackend(b)
	cfg.Auth = config.Auth{}
	cfg.Limits = config.Limits{MaxSessions: 1 << 30, MaxSessionsPerPrincipal: 1 << 30}
	e := startGatewayB(b, cfg)
	addr := serveReal(b, e, cfg.Limits)
	url := "http://" + addr + "/mcp"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}`)
	open := func() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Mcp-Session-Id") == "" {
			b.Fatalf("initialize: %d %s", resp.StatusCode, buf.Bytes())
		}
	}
	// Warm up connections, pools and the catalog before measuring.
	for range 50 {
		open()
	}
	heap0, rss0 := heapInUse(), rssBytes(b)
	n := 0
	for b.Loop() {
		open()
		n++
	}
	heap1, rss1 := heapInUse(), rssBytes(b)
	if got := e.gw.Status().Sessions; got != n+50 {
		b.Fatalf("%d sessions open, want %d", got, n+50)
	}
	b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-B/session")
	b.ReportMetric(float64(rss1-rss0)/float64(n), "RSS-B/session")
}
