package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// limitData is the error.data of a refusal at a limit.
type limitData struct {
	RequestID    string `json:"requestId"`
	Limit        string `json:"limit"`
	RetryAfter   int64  `json:"retryAfter"`
	RetryAfterMs int64  `json:"retryAfterMs"`
}

// TestRateLimitsHoldExactlyUnderConcurrency: N concurrent calls against a
// bucket of size B let exactly B through (the refill, one token per 12
// minutes, is negligible during the test); each refused call gets -32029 naming the
// limit, its request ID and a retry-after (error.data and the Retry-After
// header), is recorded as a denied decision with its rule and never
// reaches the backend. Another principal (or tool, for the per-tool
// buckets) has its own bucket.
func TestRateLimitsHoldExactlyUnderConcurrency(t *testing.T) {
	const n, burst = 24, 5
	hourly := config.Rate{Rate: "5/h", Burst: burst}
	for _, tc := range []struct {
		name      string
		limits    config.Limits
		tools     map[string]config.ToolSettings
		limit     string
		rule      string
		otherTool bool // add has a bucket of its own
	}{
		{name: "per principal", limits: config.Limits{RatePerPrincipal: hourly}, limit: "rate_per_principal", rule: "rate:principal"},
		{name: "per principal x tool", limits: config.Limits{RatePerTool: hourly}, limit: "rate_per_tool", rule: "rate:tool", otherTool: true},
		{name: "tool's own rate", tools: map[string]config.ToolSettings{"echo": {Rate: hourly}}, limit: "rate_per_tool", rule: "rate:tool", otherTool: true},
		{name: "both, tool's is tighter", limits: config.Limits{RatePerPrincipal: config.Rate{Rate: "100/h"}, RatePerTool: hourly},
			limit: "rate_per_tool", rule: "rate:tool", otherTool: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := testbackend.New(testbackend.Options{})
			hs := httptest.NewServer(tb.HTTPHandler())
			t.Cleanup(hs.Close)
			cfg := &config.Config{
				Limits:  tc.limits,
				Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, Tools: tc.tools}},
				Auth: config.Auth{Tokens: []config.Token{
					{Name: "a", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"alpha.*"}},
					{Name: "b", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"alpha.*"}},
				}},
			}
			e := startGateway(t, cfg)
			alice := map[string]string{"Authorization": "Bearer alice-token"}
			alice["Mcp-Session-Id"] = initSession(t, e.url, alice)

			type answer struct {
				header string
				resp   rpcResp
			}
			answers := make([]answer, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"m%d"}}}`, i+10, i)
					resp, b := post(t, e.url, body, alice)
					answers[i] = answer{resp.Header.Get("Retry-After"), decodeResp(t, b)}
				})
			}
			wg.Wait()
			passed := 0
			for i, a := range answers {
				if a.resp.Error == nil {
					passed++
					continue
				}
				if a.resp.Error.Code != -32029 {
					t.Fatalf("call %d: error %d %s; want -32029", i, a.resp.Error.Code, a.resp.Error.Message)
				}
				var d limitData
				if err := json.Unmarshal(a.resp.Error.Data, &d); err != nil {
					t.Fatalf("call %d: data %s: %v", i, a.resp.Error.Data, err)
				}
				// Five tokens an hour: the next is due in (just under) 12 minutes.
				if d.Limit != tc.limit || d.RequestID == "" || d.RetryAfter != 720 || d.RetryAfterMs <= 700_000 || d.RetryAfterMs > 720_000 {
					t.Errorf("call %d: data %s; want limit %s, a request ID and retryAfter 720", i, a.resp.Error.Data, tc.limit)
				}
				if a.header != strconv.FormatInt(d.RetryAfter, 10) {
					t.Errorf("call %d: Retry-After header %q, data says %d", i, a.header, d.RetryAfter)
				}
				evs := e.rec.byRequest(d.RequestID)
				var denied, upstream bool
				for _, ev := range evs {
					denied = denied || ev.Hop == recorder.HopAuth && ev.Outcome == recorder.OutcomeDenied && ev.AuthRule == tc.rule && ev.AuthDecision == auth.ResultDenied
					upstream = upstream || ev.Hop == recorder.HopUpstream
				}
				if !denied || upstream {
					t.Errorf("call %d (%s): recorded %d events, denied by %s: %v, upstream hop: %v", i, d.RequestID, len(evs), tc.rule, denied, upstream)
				}
			}
			if passed != burst {
				t.Errorf("%d of %d concurrent calls passed a bucket of %d", passed, n, burst)
			}
			if got := countCalls(tb, "echo"); got != burst {
				t.Errorf("backend saw %d echo calls, want %d", got, burst)
			}

			// Bob's bucket is his own.
			bob := map[string]string{"Authorization": "Bearer bob-token"}
			bob["Mcp-Session-Id"] = initSession(t, e.url, bob)
			if _, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"bob"}}}`, bob); decodeResp(t, b).Error != nil {
				t.Errorf("bob's first call refused: %s", b)
			}
			_, b := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.add","arguments":{"a":1,"b":2}}}`, alice)
			if r := decodeResp(t, b); (r.Error == nil) != tc.otherTool {
				t.Errorf("alice's call of another tool: %s; want refused: %v", b, !tc.otherTool)
			}
		})
	}
}

func countCalls(tb *testbackend.Backend, tool string) int {
	n := 0
	for _, s := range tb.Seen() {
		if s.Method == "tools/call" && s.Tool == tool {
			n++
		}
	}
	return n
}

// TestRateLimitConfig: rates parse as n/s, n/m, n/h with a default burst,
// and a bad rate is refused naming its key.
func TestRateLimitConfig(t *testing.T) {
	for _, tc := range []struct {
		rate   config.Rate
		perSec float64
		burst  int
		err    bool
	}{
		{config.Rate{Rate: "10/s"}, 10, 10, false},
		{config.Rate{Rate: "120/m", Burst: 3}, 2, 3, false},
		{config.Rate{Rate: "0.5/s"}, 0.5, 1, false},
		{config.Rate{Rate: "36/h"}, 0.01, 36, false},
		{config.Rate{Rate: "10"}, 0, 0, true},
		{config.Rate{Rate: "0/s"}, 0, 0, true},
		{config.Rate{Rate: "-1/s"}, 0, 0, true},
		{config.Rate{Rate: "1/d"}, 0, 0, true},
		{config.Rate{Rate: "1/s", Burst: -1}, 0, 0, true},
	} {
		perSec, burst, err := tc.rate.PerSecond()
		if (err != nil) != tc.err || !tc.err && (perSec != tc.perSec || burst != tc.burst) {
			t.Errorf("%+v.PerSecond() = %v, %d, %v; want %v, %d, error %v", tc.rate, perSec, burst, err, tc.perSec, tc.burst, tc.err)
		}
	}
}
