package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// TestToolConcurrencyPriority: alpha.slow may run one call at a time.
// While a call holds the slot, three background calls (principal "batch")
// and then two interactive ones queue; a sixth finds the queue full and is
// refused at once. The holder fails at the tool's own timeout (5s, the
// server's is 30s) with -32004 and its request ID; then the interactive
// calls reach the backend before the whole background backlog, each class
// in arrival order, and each queued call records its wait as queue_us.
func TestToolConcurrencyPriority(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{
		Limits: config.Limits{Priority: config.Priority{BackgroundPrincipals: []string{"batch"}}},
		Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 30 * time.Second,
			Tools: map[string]config.ToolSettings{"slow": {MaxConcurrency: 1, QueueSize: 5, Timeout: 5 * time.Second}}}},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "ui", SHA256: sha("ui-token"), Principal: "ui", Tools: []string{"alpha.*"}},
			{Name: "batch", SHA256: sha("batch-token"), Principal: "batch", Tools: []string{"alpha.*"}},
		}},
	}
	e := startGateway(t, cfg)
	ui := map[string]string{"Authorization": "Bearer ui-token"}
	ui["Mcp-Session-Id"] = initSession(t, e.url, ui)
	batch := map[string]string{"Authorization": "Bearer batch-token"}
	batch["Mcp-Session-Id"] = initSession(t, e.url, batch)

	// delay_ms tells the calls apart at the backend.
	call := func(hdr map[string]string, delayMs int) rpcResp {
		_, b := post(t, e.url, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.slow","arguments":{"steps":1,"delay_ms":%d}}}`, delayMs, delayMs), hdr)
		return decodeResp(t, b)
	}
	var wg sync.WaitGroup
	answers := map[int]rpcResp{}
	var mu sync.Mutex
	start := func(hdr map[string]string, delayMs, waiting int) {
		wg.Go(func() {
			r := call(hdr, delayMs)
			mu.Lock()
			answers[delayMs] = r
			mu.Unlock()
		})
		waitFor(t, fmt.Sprintf("%d calls waiting", waiting), func() bool { return e.gw.ToolWaiters("alpha.slow") == waiting })
	}
	start(ui, 600_000, 0) // the holder, cut at 5s
	waitFor(t, "the holder at the backend", func() bool { return countCalls(tb, "slow") == 1 })
	for i, d := range []int{1, 2, 3} {
		start(batch, d, i+1)
	}
	for i, d := range []int{4, 5} {
		start(ui, d, i+4)
	}
	full := call(ui, 6)
	if full.Error == nil || full.Error.Code != -32029 || !strings.Contains(string(full.Error.Data), `"limit":"tool_queue"`) {
		t.Errorf("a call finding the queue full: %+v; want -32029 limit tool_queue", full)
	}
	wg.Wait()

	holder := answers[600_000]
	if holder.Error == nil || holder.Error.Code != -32004 || !strings.Contains(holder.Error.Message, "within 5s") || !strings.Contains(string(holder.Error.Data), `"requestId":"`) {
		t.Errorf("the holder: %+v; want -32004 after the tool's 5s, with its request ID", holder)
	}
	var order []int
	for _, s := range tb.Seen() {
		if s.Method != "tools/call" || s.Tool != "slow" {
			continue
		}
		var p struct {
			Arguments struct {
				DelayMs int `json:"delay_ms"`
			} `json:"arguments"`
		}
		_ = json.Unmarshal(s.Params, &p)
		order = append(order, p.Arguments.DelayMs)
	}
	if fmt.Sprint(order) != fmt.Sprint([]int{600_000, 4, 5, 1, 2, 3}) {
		t.Errorf("backend order %v; want the holder, the interactive calls 4 5, then the background 1 2 3", order)
	}
	for _, d := range []int{1, 2, 3, 4, 5} {
		r := answers[d]
		if r.Error != nil {
			t.Fatalf("queued call %d: %+v", d, r.Error)
		}
		id := requestIDOf(t, decodeToolResult(t, r.Result))
		var queued int64 = -1
		for _, ev := range e.rec.byRequest(id) {
			if ev.Hop == recorder.HopUpstream {
				queued = ev.QueueUs
			}
		}
		if queued <= 0 {
			t.Errorf("queued call %d: upstream hop queue_us %d, want > 0", d, queued)
		}
	}
}
