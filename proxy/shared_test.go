package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/redisstate/redistest"
	"github.com/mcptrail/mcptrail/recorder"
)

// sharedPair starts two gateways in front of one backend sharing a Redis.
func sharedPair(t *testing.T, addr string, failOpen bool, opts ...func(*proxy.Options)) (a, b *env) {
	t.Helper()
	cfg := oneBackend(t)
	cfg.Limits.RatePerPrincipal = config.Rate{Rate: "4/h", Burst: 4}
	cfg.Servers[0].Tools = map[string]config.ToolSettings{"now": {Cache: &config.ToolCache{TTL: time.Minute, Force: true}}}
	cfg.Redis = config.Redis{Addr: addr, Prefix: fmt.Sprintf("test-%d:", time.Now().UnixNano()), Timeout: 200 * time.Millisecond, RateLimitFailOpen: failOpen}
	ca, cb := *cfg, *cfg
	return startGateway(t, &ca, opts...), startGateway(t, &cb, opts...)
}

func toolCall(id int, name string, args string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, name, args)
}

// TestSharedRateLimitAcrossReplicas: with redis.addr, two replicas take
// from one bucket: a principal with a burst of 4 gets exactly 4 calls
// through, however they are spread. Fails before the fix: each replica had
// its own bucket, and 8 got through.
func TestSharedRateLimitAcrossReplicas(t *testing.T) {
	r := redistest.Start(t)
	a, b := sharedPair(t, r.Addr, false)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	sids := map[*env]string{a: initSession(t, a.url, alice), b: initSession(t, b.url, alice)}
	ok, limited := 0, 0
	for i := range 10 {
		e := []*env{a, b}[i%2]
		_, body := post(t, e.url, toolCall(i+2, "alpha.echo", `{"message":"x"}`), sessionHeaders("alice-token", sids[e]))
		resp := decodeResp(t, body)
		switch {
		case resp.Error == nil:
			ok++
		case resp.Error.Code == jsonrpc.CodeLimited && strings.Contains(resp.Error.Message, "rate_per_principal"):
			limited++
		default:
			t.Fatalf("call %d: %s", i, body)
		}
	}
	if ok != 4 || limited != 6 {
		t.Errorf("across two replicas: %d answered, %d rate limited; want 4 and 6", ok, limited)
	}
}

// TestSharedCacheAcrossReplicas: an answer cached by one replica is served
// by the other, marked cached. Fails before the fix: the second replica
// called the backend again (another time of day).
func TestSharedCacheAcrossReplicas(t *testing.T) {
	r := redistest.Start(t)
	a, b := sharedPair(t, r.Addr, false)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	_, first := post(t, a.url, toolCall(2, "alpha.now", `{}`), sessionHeaders("alice-token", initSession(t, a.url, alice)))
	_, second := post(t, b.url, toolCall(3, "alpha.now", `{}`), sessionHeaders("alice-token", initSession(t, b.url, alice)))
	if m := cacheMeta(t, second); m == nil || m.Stale {
		t.Fatalf("second replica's answer %s: want it from the shared cache", second)
	}
	if text1, text2 := resultText(t, first), resultText(t, second); text1 == "" || text1 != text2 {
		t.Errorf("first replica answered %q, second %q: want the same cached answer", text1, text2)
	}
}

// TestRedisDown: with Redis gone, a rate-limited call is refused with
// -32029 naming the failure and carrying the request ID (the default:
// fail closed), or let through with redis.rate_limit_fail_open; cached
// tools are still answered, by their backend.
func TestRedisDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("fail_open=", failOpen), func(t *testing.T) {
			r := redistest.Start(t)
			a, _ := sharedPair(t, r.Addr, failOpen)
			alice := map[string]string{"Authorization": "Bearer alice-token"}
			sid := initSession(t, a.url, alice)
			r.Kill()
			resp, body := post(t, a.url, toolCall(2, "alpha.echo", `{"message":"x"}`), sessionHeaders("alice-token", sid))
			got := decodeResp(t, body)
			reqID := resp.Header.Get("X-Request-Id")
			if failOpen {
				if got.Error != nil {
					t.Fatalf("fail open: %s, want the answer", body)
				}
				_, body = post(t, a.url, toolCall(3, "alpha.now", `{}`), sessionHeaders("alice-token", sid))
				if resultText(t, body) == "" || cacheMeta(t, body) != nil {
					t.Errorf("cached tool with Redis down: %s, want the backend's answer", body)
				}
			} else {
				if got.Error == nil || got.Error.Code != jsonrpc.CodeLimited || !strings.Contains(got.Error.Message, "rate limits unavailable") {
					t.Fatalf("fail closed: %s, want -32029 rate limits unavailable", body)
				}
				var data struct {
					RequestID string `json:"requestId"`
					Limit     string `json:"limit"`
				}
				_ = json.Unmarshal(got.Error.Data, &data)
				if data.RequestID == "" || data.RequestID != reqID || data.Limit != "rate_shared_unavailable" {
					t.Errorf("error data %s, want requestId %q and limit rate_shared_unavailable", got.Error.Data, reqID)
				}
			}
		})
	}
}

func resultText(t *testing.T, b []byte) string {
	t.Helper()
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	_ = json.Unmarshal(decodeResp(t, b).Result, &res)
	if len(res.Content) == 0 {
		return ""
	}
	return res.Content[0].Text
}

// TestServerRequestAnswerReachesItsReplica: behind a load balancer without
// stickiness, the client's answer to a backend's elicitation reaches
// another replica than the one that asked; it is relayed there through
// Redis and the call completes. Fails before the fix: the other replica
// dropped the answer ("answer to an unknown server request") and the call
// waited until its timeout.
func TestServerRequestAnswerReachesItsReplica(t *testing.T) {
	r := redistest.Start(t)
	cfg := &config.Config{
		Servers: []config.Server{stdioServer("alpha", "v1")},
		Auth:    config.Auth{Tokens: []config.Token{{Name: "alice", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"*"}}}},
	}
	cfg.Redis = config.Redis{Addr: r.Addr, Prefix: fmt.Sprintf("relay-%d:", time.Now().UnixNano()), Timeout: time.Second}
	cfg.Sessions.Keys = sessKey1
	ca, cb := *cfg, *cfg
	a, b := startGateway(t, &ca), startGateway(t, &cb)

	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"0"}}}`
	resp, body := post(t, a.url, init, map[string]string{"Authorization": "Bearer alice-token"})
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	hdr := sessionHeaders("alice-token", sid)
	hdr["Mcp-Protocol-Version"] = "2025-11-25"

	// The call goes to a; its SSE answer carries the elicitation request.
	req, _ := http.NewRequest(http.MethodPost, a.url+"/mcp", strings.NewReader(toolCall(2, "alpha.elicit", `{"message":"name?"}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var final string
	for sc.Scan() {
		d, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal([]byte(d), &m)
		if m.Method == "elicitation/create" {
			// The answer goes to b, as a round-robin balancer would send it.
			answer := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept","content":{"name":"Ada"}}}`, m.ID)
			if resp, body := post(t, b.url, answer, hdr); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("answer on b: %d %s", resp.StatusCode, body)
			}
			continue
		}
		if m.Method == "" && string(m.ID) == "2" {
			final = d
			break
		}
	}
	if !strings.Contains(final, `elicited: accept {\"name\":\"Ada\"}`) {
		t.Fatalf("call result %q (scan err %v), want the elicited answer", final, sc.Err())
	}
}

// TestSealedSessionDeleteEndsItEverywhere: with Redis, a DELETE on one
// replica ends a sealed session on the replica that holds it too, and on
// one that has never seen it. Fails before the fix: both still served it
// until its sealed expiry.
func TestSealedSessionDeleteEndsItEverywhere(t *testing.T) {
	r := redistest.Start(t)
	cfg := oneBackend(t)
	cfg.Redis = config.Redis{Addr: r.Addr, Prefix: fmt.Sprintf("del-%d:", time.Now().UnixNano()), Timeout: time.Second}
	cfg.Sessions.Keys = sessKey1
	ca, cb, cc := *cfg, *cfg, *cfg
	a, b, c := startGateway(t, &ca), startGateway(t, &cb), startGateway(t, &cc)
	sid := initSession(t, a.url, map[string]string{"Authorization": "Bearer alice-token"})
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	if resp, body := post(t, b.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusOK {
		t.Fatalf("b before the DELETE: %d %s", resp.StatusCode, body)
	}
	if status := deleteSession(t, a.url, sessionHeaders("alice-token", sid)); status != http.StatusNoContent {
		t.Fatalf("DELETE on a: %d, want 204", status)
	}
	// b drops it when the revocation arrives (pub/sub: wait for it); c
	// finds the handle revoked.
	waitFor(t, "b to drop the DELETEd session", func() bool { return b.gw.Status().Sessions == 0 })
	for name, e := range map[string]*env{"a": a, "b": b, "c": c} {
		if resp, body := post(t, e.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s after the DELETE on a: %d %s, want 404", name, resp.StatusCode, body)
		}
	}
}

// TestRateUnavailableHidesRedisError: with Redis down (fail closed), the
// client is told the rate limits are unavailable and given the request ID,
// not Redis's address or error; the log line with that request ID has them.
// Fails before the fix: the answer quoted the Redis error.
func TestRateUnavailableHidesRedisError(t *testing.T) {
	r := redistest.Start(t)
	logs := &syncWriter{w: &bytes.Buffer{}}
	a, _ := sharedPair(t, r.Addr, false, func(o *proxy.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	sid := initSession(t, a.url, map[string]string{"Authorization": "Bearer alice-token"})
	r.Kill()
	resp, body := post(t, a.url, toolCall(2, "alpha.echo", `{"message":"x"}`), sessionHeaders("alice-token", sid))
	got := decodeResp(t, body)
	reqID := resp.Header.Get("X-Request-Id")
	if got.Error == nil || got.Error.Code != jsonrpc.CodeLimited || !strings.Contains(got.Error.Message, "rate limits unavailable") || !strings.Contains(got.Error.Message, reqID) {
		t.Fatalf("answer %s, want -32029 rate limits unavailable naming request %s", body, reqID)
	}
	_, port, _ := strings.Cut(r.Addr, ":")
	for _, internal := range []string{r.Addr, port, "dial", "connection refused", "script"} {
		if strings.Contains(got.Error.Message, internal) {
			t.Errorf("the client's error %q reveals %q", got.Error.Message, internal)
		}
	}
	if !slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(l string) bool {
		return strings.Contains(l, reqID) && strings.Contains(l, port)
	}) {
		t.Errorf("no log line carries request %s and the Redis error:\n%s", reqID, logs.String())
	}
}

// TestBackendUnavailableHidesAddress: a call to a backend that cannot be
// reached tells the client which backend and the request ID, not the
// backend's address or the dial error; the log line with the request ID
// and the recorded answer have them. Fails before the fix: the answer
// quoted "dial tcp 127.0.0.1:<port>: connect: connection refused".
func TestBackendUnavailableHidesAddress(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(deadURL, "http://"), ":")
	cfg := oneBackend(t)
	cfg.Servers = append(cfg.Servers, config.Server{Name: "dead", Transport: "http", URL: deadURL + "/mcp", Timeout: time.Second})
	logs := &syncWriter{w: &bytes.Buffer{}}
	e := startGatewayUnready(t, cfg, func(o *proxy.Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	waitFor(t, "dead's connect failure", func() bool { return e.gw.Backend("dead").LastError() != nil })
	sid := initSession(t, e.url, map[string]string{"Authorization": "Bearer alice-token"})
	resp, body := post(t, e.url, toolCall(2, "dead.x", `{}`), sessionHeaders("alice-token", sid))
	got := decodeResp(t, body)
	reqID := resp.Header.Get("X-Request-Id")
	if got.Error == nil || got.Error.Code != -32001 || !strings.Contains(got.Error.Message, "backend dead is unavailable") || !strings.Contains(got.Error.Message, reqID) {
		t.Fatalf("answer %s, want -32001 backend dead is unavailable naming request %s", body, reqID)
	}
	for _, internal := range []string{port, "dial", "connection refused"} {
		if strings.Contains(got.Error.Message, internal) {
			t.Errorf("the client's error %q reveals %q", got.Error.Message, internal)
		}
	}
	if !slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(l string) bool {
		return strings.Contains(l, reqID) && strings.Contains(l, port)
	}) {
		t.Errorf("no log line carries request %s and the dial error:\n%s", reqID, logs.String())
	}
	recorded := false
	for _, ev := range e.rec.snapshot() {
		if ev.RequestID == reqID && ev.Hop == recorder.HopResponse && strings.Contains(ev.ErrorMessage, port) {
			recorded = true
		}
	}
	if !recorded {
		t.Error("the recorded answer does not carry the dial error")
	}
}
