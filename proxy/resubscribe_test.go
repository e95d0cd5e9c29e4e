package proxy_test

// Session-era (2025-11-25) resource subscriptions across a new upstream
// connection: a backend that restarts, and a reload that replaces the
// Backend.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// TestSessionSubscriptionFollowsNewConnection: a session that did
// resources/subscribe to a session-era backend's resource keeps getting its
// notifications/resources/updated after the backend restarts (its sessions
// are gone, the gateway reconnects) and after a reload that changes the
// server's entry (a new Backend, a new connection): the gateway subscribes
// again, on the connection of the session's capability profile. Its
// resources/unsubscribe after that reaches the backend too, and another
// principal's session never gets the updates. Before the fix the new
// connection was never subscribed: the session believed itself subscribed
// and heard nothing more.
func TestSessionSubscriptionFollowsNewConnection(t *testing.T) {
	var cur atomic.Pointer[testbackend.Backend]
	var handler atomic.Value // http.Handler
	start := func() {
		tb := testbackend.New(testbackend.Options{Subscribable: true, GETStream: true})
		cur.Store(tb)
		handler.Store(tb.HTTPHandler())
	}
	start()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })

	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	write := func(timeout string) *config.Config {
		t.Helper()
		y := "auth:\n  tokens:\n" +
			"    - {name: alice, sha256: " + sha("alice-token") + ", tools: [\"*\"], resources: [\"legacy:*\"]}\n" +
			"    - {name: bob, sha256: " + sha("bob-token") + ", tools: [\"*\"], resources: [\"legacy:*\"]}\n" +
			"servers:\n" +
			"  - {name: legacy, transport: http, url: \"" + hs.URL + "/mcp\", timeout: " + timeout +
			", health_interval: 200ms, protocol_version: \"2025-11-25\"}\n"
		return writeConfig(t, path, y)
	}
	e := startGateway(t, write("10s"))

	// Alice declares a capability: her profile has its own connection.
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	resp, body := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"raw","version":"0"}}}`, alice)
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	alice["Mcp-Session-Id"] = resp.Header.Get("Mcp-Session-Id")
	bob := map[string]string{"Authorization": "Bearer bob-token"}
	bob["Mcp-Session-Id"] = initSession(t, e.url, bob)
	aliceStream, _ := openStream(t, http.MethodGet, e.url, "", alice)
	bobStream, _ := openStream(t, http.MethodGet, e.url, "", bob)

	const uri = "test://static/1"
	subscribes := func() int {
		n := 0
		for _, s := range cur.Load().Seen() {
			if s.Method == "resources/subscribe" {
				n++
			}
		}
		return n
	}
	// touch tells the backend's subscribed sessions of a change and
	// checks that alice hears of it.
	touch := func(what string) {
		t.Helper()
		if n := cur.Load().Touch(uri); n != 1 {
			t.Fatalf("%s: Touch(%s) reached %d upstream sessions, want 1", what, uri, n)
		}
		m := nextMessage(t, aliceStream, "notifications/resources/updated")
		var p struct{ URI string }
		if err := json.Unmarshal(m["params"], &p); err != nil || p.URI != uri {
			t.Fatalf("%s: resources/updated params = %s, want uri %s", what, m["params"], uri)
		}
	}
	if r := subsCall(t, e.url, alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("subscribe: %+v", r.Error)
	}
	touch("subscribed")

	// The backend restarts: its sessions are gone, the gateway reconnects.
	start()
	hs.CloseClientConnections()
	waitFor(t, "resources/subscribe on the reconnected backend", func() bool {
		return subscribes() > 0 && cur.Load().Subscribed(uri) == 1
	})
	touch("after the backend restarted")

	// A reload that changes the entry replaces the Backend.
	old, before := e.gw.Backend("legacy"), subscribes()
	write("11s")
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resources/subscribe on the reloaded backend's connection", func() bool {
		b := e.gw.Backend("legacy")
		return b != nil && b != old && b.Ready() && subscribes() > before && cur.Load().Subscribed(uri) == 1
	})
	touch("after a reload")

	// Unsubscribing reaches the backend's current connection.
	if r := subsCall(t, e.url, alice, "resources/unsubscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("unsubscribe: %+v", r.Error)
	}
	if n := cur.Load().Subscribed(uri); n != 0 {
		t.Errorf("after resources/unsubscribe: %d upstream sessions subscribed to %s, want 0", n, uri)
	}

	// Bob never subscribed: he hears of no update (list changes he may).
	for quiet := time.After(300 * time.Millisecond); ; {
		select {
		case m := <-bobStream:
			if strings.Contains(m, "notifications/resources/updated") {
				t.Errorf("bob's session got %s", m)
			}
			continue
		case <-quiet:
		}
		break
	}
}

// TestUnsubscribeKeepsOtherSessionsSubscription: two sessions on one
// backend connection subscribe to the same resource; the backend keeps one
// subscription for the connection. When one unsubscribes, the other still
// gets the updates; the last one's unsubscribe reaches the backend. Before
// the fix the first unsubscribe was forwarded and the other session heard
// nothing more.
func TestUnsubscribeKeepsOtherSessionsSubscription(t *testing.T) {
	tb := testbackend.New(testbackend.Options{Subscribable: true, GETStream: true})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	e := startGateway(t, &config.Config{Servers: []config.Server{
		{Name: "legacy", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, ProtocolVersion: "2025-11-25"},
	}})
	one := map[string]string{"Mcp-Session-Id": initSession(t, e.url, nil)}
	two := map[string]string{"Mcp-Session-Id": initSession(t, e.url, nil)}
	twoStream, _ := openStream(t, http.MethodGet, e.url, "", two)

	const uri = "test://static/1"
	for _, h := range []map[string]string{one, two} {
		if r := subsCall(t, e.url, h, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
			t.Fatalf("subscribe: %+v", r.Error)
		}
	}
	if r := subsCall(t, e.url, one, "resources/unsubscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("unsubscribe: %+v", r.Error)
	}
	if n := tb.Subscribed(uri); n != 1 {
		t.Fatalf("after one of two sessions unsubscribed: %d upstream sessions subscribed to %s, want 1", n, uri)
	}
	if n := tb.Touch(uri); n != 1 {
		t.Fatalf("Touch(%s) reached %d upstream sessions, want 1", uri, n)
	}
	m := nextMessage(t, twoStream, "notifications/resources/updated")
	var p struct{ URI string }
	if err := json.Unmarshal(m["params"], &p); err != nil || p.URI != uri {
		t.Fatalf("resources/updated params = %s, want uri %s", m["params"], uri)
	}
	if r := subsCall(t, e.url, two, "resources/unsubscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("unsubscribe: %+v", r.Error)
	}
	if n := tb.Subscribed(uri); n != 0 {
		t.Errorf("after the last session unsubscribed: %d upstream sessions subscribed to %s, want 0", n, uri)
	}
}
