package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// TestSubscriptionCaps: limits.max_subscriptions bounds the URIs of one
// subscriptions/listen stream and one session's resources/subscribe; beyond
// it the request is refused with -32600 carrying its id, and no upstream
// subscription is made for it.
func TestSubscriptionCaps(t *testing.T) {
	url := startEverythingHTTP(t)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}},
		Limits:  config.Limits{MaxSubscriptions: 2},
	}
	e := startGateway(t, cfg)
	uri := func(i int) string { return "demo://resource/dynamic/text/" + strconv.Itoa(i) }

	t.Run("listen", func(t *testing.T) {
		body := modernBody(0, "subscriptions/listen", map[string]any{"notifications": map[string]any{
			"resourceSubscriptions": []string{uri(1), uri(2), uri(3)}}}, nil)
		body = strings.Replace(body, `"id":0`, `"id":"big-listen"`, 1)
		req, _ := http.NewRequest(http.MethodPost, e.url+"/mcp", strings.NewReader(body))
		for k, v := range modernHeaders("subscriptions/listen", "") {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Without the cap this is an endless stream: read only its first event.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		s := string(raw)
		if i := strings.Index(s, "data: "); i >= 0 {
			s = strings.SplitN(s[i+len("data: "):], "\n", 2)[0]
		}
		var m struct {
			ID    json.RawMessage `json:"id"`
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(s), &m); err != nil || m.Error == nil {
			t.Fatalf("want an error answer, got %q (%v)", raw, err)
		}
		if m.Error.Code != jsonrpc.CodeInvalidRequest || string(m.ID) != `"big-listen"` || !strings.Contains(m.Error.Message, "max_subscriptions") {
			t.Fatalf("got id %s error %d %q", m.ID, m.Error.Code, m.Error.Message)
		}
	})

	t.Run("session", func(t *testing.T) {
		tr, err := transport.NewStreamableHTTP(e.url + "/mcp")
		if err != nil {
			t.Fatal(err)
		}
		p := newPeer(t, tr, "everything.")
		for i := 1; i <= 2; i++ {
			if r := p.raw(t, "resources/subscribe", map[string]any{"uri": uri(i)}); r.Error != nil {
				t.Fatalf("subscribe %d: %+v", i, r.Error)
			}
		}
		// Re-subscribing a URI the session holds does not count twice.
		if r := p.raw(t, "resources/subscribe", map[string]any{"uri": uri(1)}); r.Error != nil {
			t.Fatalf("re-subscribe: %+v", r.Error)
		}
		r := p.raw(t, "resources/subscribe", map[string]any{"uri": uri(3)})
		if r.Error == nil || r.Error.Code != jsonrpc.CodeInvalidRequest || !strings.Contains(r.Error.Message, "max_subscriptions") {
			t.Fatalf("third subscribe: got %+v", r.Error)
		}
		if id, _ := json.Marshal(r.ID); !strings.Contains(string(id), "raw-") {
			t.Fatalf("error carries id %s", id)
		}
		// Unsubscribing frees a place.
		if r := p.raw(t, "resources/unsubscribe", map[string]any{"uri": uri(2)}); r.Error != nil {
			t.Fatalf("unsubscribe: %+v", r.Error)
		}
		if r := p.raw(t, "resources/subscribe", map[string]any{"uri": uri(3)}); r.Error != nil {
			t.Fatalf("subscribe after unsubscribe: %+v", r.Error)
		}
	})
}
