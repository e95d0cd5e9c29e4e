package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/sse"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// openStream opens a streaming request (a session's GET stream, a 2026
// listen) and returns its SSE messages; the stream ends with the test or
// with stop.
func openStream(t *testing.T, method, url, body string, hdr map[string]string) (msgs <-chan string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, _ := http.NewRequestWithContext(ctx, method, url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("%s stream: HTTP %d", method, resp.StatusCode)
	}
	ch := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		_, _ = sse.Read(resp.Body, 1<<20, func(_, data []byte) bool {
			if len(strings.TrimSpace(string(data))) > 0 {
				ch <- string(data)
			}
			return true
		})
	}()
	stop = func() { cancel(); resp.Body.Close(); <-done }
	t.Cleanup(stop)
	return ch, stop
}

// nextMessage waits for a stream's next message with method.
func nextMessage(t *testing.T, ch <-chan string, method string) map[string]json.RawMessage {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before %s", method)
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal([]byte(s), &m)
			if string(m["method"]) == `"`+method+`"` {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s", method)
		}
	}
}

// TestModernBackendResourceUpdated: a 2026 backend tells of a resource's
// changes only on a subscriptions/listen stream naming it. When a 2025
// session (resources/subscribe) and a 2026 client (subscriptions/listen)
// subscribe to such a resource, the gateway holds one stream upstream for
// the URI, over HTTP and over stdio; the backend's
// notifications/resources/updated reaches exactly those two, the URI in the
// collision-prefixed form they subscribed to, the listener's tagged with
// its own subscription id and the session's with none; another principal's
// session gets nothing. Unsubscribing, the listen's end and the session's
// end let go of the upstream stream. Fails before the fix: the gateway
// forwarded resources/subscribe, which a 2026 backend does not know, and
// listened upstream for list changes only.
func TestModernBackendResourceUpdated(t *testing.T) {
	for _, tr := range []string{"http", "stdio"} {
		t.Run(tr, func(t *testing.T) {
			modern := stdioServer("modern", "v1")
			modern.Env["MCPTRAIL_TESTBACKEND_SUBSCRIBABLE"] = "1"
			if tr == "http" {
				hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
				t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
				modern = config.Server{Name: "modern", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second}
			}
			modern.ProtocolVersion = "2026-07-28"
			cfg := &config.Config{
				// old serves the same URIs: the gateway prefixes them.
				Servers: []config.Server{modern, stdioServer("old", "v1")},
				Auth: config.Auth{Tokens: []config.Token{
					{Name: "alice", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"*"}, Resources: []string{"modern:*"}},
					{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"*"}, Resources: []string{"modern:*"}},
				}},
			}
			e := startGateway(t, cfg)
			alice := map[string]string{"Authorization": "Bearer alice-token"}
			alice["Mcp-Session-Id"] = initSession(t, e.url, alice)
			bob := map[string]string{"Authorization": "Bearer bob-token"}
			bob["Mcp-Session-Id"] = initSession(t, e.url, bob)
			call := func(hdr map[string]string, method string, params any) rpcResp {
				t.Helper()
				b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 9, "method": method, "params": params})
				_, body := post(t, e.url, string(b), hdr)
				return decodeResp(t, body)
			}
			touch := func() string {
				t.Helper()
				r := call(alice, "tools/call", map[string]any{"name": "modern.touch", "arguments": map[string]any{"uri": "test://static/1"}})
				var res struct {
					Content []struct{ Text string } `json:"content"`
				}
				if r.Error != nil || json.Unmarshal(r.Result, &res) != nil || len(res.Content) != 1 {
					t.Fatalf("modern.touch: %s %+v", r.Result, r.Error)
				}
				return res.Content[0].Text // how many upstream streams it reached
			}
			const uri = "mcptrail://modern/test://static/1"
			if r := call(alice, "resources/read", map[string]any{"uri": uri}); r.Error != nil {
				t.Fatalf("resources/read %s: %+v, want the colliding URI prefixed so", uri, r.Error)
			}

			aliceGET, _ := openStream(t, http.MethodGet, e.url, "", alice)
			bobGET, _ := openStream(t, http.MethodGet, e.url, "", bob)
			if r := call(alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
				t.Fatalf("resources/subscribe: %+v, want {}", r.Error)
			}
			body := strings.Replace(modernBody(0, "subscriptions/listen", map[string]any{"notifications": map[string]any{
				"resourceSubscriptions": []string{uri}}}, nil), `"id":0`, `"id":"sub-7"`, 1)
			hdr := modernHeaders("subscriptions/listen", "")
			hdr["Authorization"] = alice["Authorization"]
			listen, stopListen := openStream(t, http.MethodPost, e.url, body, hdr)
			if ack := nextMessage(t, listen, "notifications/subscriptions/acknowledged"); !strings.Contains(string(ack["params"]), `"resourceSubscriptions":["`+uri+`"]`) {
				t.Fatalf("acknowledgement %s does not name %s", ack["params"], uri)
			}
			if got := touch(); got != "1" {
				t.Fatalf("upstream streams subscribed to test://static/1 = %s, want 1 (shared by both clients)", got)
			}
			n := nextMessage(t, listen, "notifications/resources/updated")
			if p := string(n["params"]); !strings.Contains(p, `"uri":"`+uri+`"`) || !strings.Contains(p, `"io.modelcontextprotocol/subscriptionId":"sub-7"`) {
				t.Errorf("listener's update = %s, want uri %s tagged sub-7", p, uri)
			}
			n = nextMessage(t, aliceGET, "notifications/resources/updated")
			if p := string(n["params"]); !strings.Contains(p, `"uri":"`+uri+`"`) || strings.Contains(p, "subscriptionId") {
				t.Errorf("session's update = %s, want uri %s and no subscription id", p, uri)
			}
			select {
			case s := <-bobGET:
				t.Errorf("bob's session, not subscribed, got %s", s)
			case <-time.After(300 * time.Millisecond):
			}

			// The listen ends: the session still holds the stream.
			stopListen()
			if got := touch(); got != "1" {
				t.Errorf("upstream streams after the listen ended = %s, want 1 (the session's)", got)
			}
			nextMessage(t, aliceGET, "notifications/resources/updated")
			if r := call(alice, "resources/unsubscribe", map[string]any{"uri": uri}); r.Error != nil {
				t.Fatalf("resources/unsubscribe: %+v", r.Error)
			}
			waitFor(t, "the upstream stream closed after the last unsubscribe", func() bool { return touch() == "0" })

			// The session's end lets go of its subscription.
			if r := call(alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
				t.Fatalf("resources/subscribe again: %+v", r.Error)
			}
			if got := touch(); got != "1" {
				t.Fatalf("upstream streams after subscribing again = %s, want 1", got)
			}
			req, _ := http.NewRequest(http.MethodDelete, e.url+"/mcp", nil)
			for k, v := range alice {
				req.Header.Set(k, v)
			}
			if resp, err := http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			} else {
				resp.Body.Close()
			}
			delete(alice, "Mcp-Session-Id")
			alice["Mcp-Session-Id"] = initSession(t, e.url, alice)
			waitFor(t, "the upstream stream closed with the session", func() bool { return touch() == "0" })
		})
	}
}
