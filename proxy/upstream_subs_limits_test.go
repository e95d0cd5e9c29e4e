package proxy_test

// The 2026 upstream resource subscriptions: caps per principal and per
// server, streams that follow their backend across reloads, recorded hops.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

func subsCall(t *testing.T, url string, hdr map[string]string, method string, params any) rpcResp {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 9, "method": method, "params": params})
	_, body := post(t, url, string(b), hdr)
	return decodeResp(t, body)
}

func touchStreams(t *testing.T, url string, hdr map[string]string, uri string) int {
	t.Helper()
	n, err := tryTouchStreams(t, url, hdr, uri)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tryTouchStreams is touchStreams that returns the failure: a call made while
// the gateway reconnects to the backend may fail with -32001.
func tryTouchStreams(t *testing.T, url string, hdr map[string]string, uri string) (int, error) {
	t.Helper()
	r := subsCall(t, url, hdr, "tools/call", map[string]any{"name": "modern.touch", "arguments": map[string]any{"uri": uri}})
	var res struct {
		Content []struct{ Text string } `json:"content"`
	}
	if r.Error != nil || json.Unmarshal(r.Result, &res) != nil || len(res.Content) != 1 {
		return 0, fmt.Errorf("modern.touch: %s %+v", r.Result, r.Error)
	}
	n, _ := strconv.Atoi(res.Content[0].Text)
	return n, nil
}

// subsRefused checks that r is a refusal at limit (-32029) whose data
// names the limit and carries the request ID.
func subsRefused(t *testing.T, what string, r rpcResp, limit string) {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("%s: accepted, want a refusal at limits.%s", what, limit)
	}
	var data struct{ RequestID, Limit string }
	_ = json.Unmarshal(r.Error.Data, &data)
	if r.Error.Code != -32029 || data.Limit != limit || data.RequestID == "" || !strings.Contains(r.Error.Message, "limits."+limit) {
		t.Fatalf("%s: error %d %q data %s, want -32029 naming limits.%s with a requestId", what, r.Error.Code, r.Error.Message, r.Error.Data, limit)
	}
}

// TestUpstreamSubscriptionsCappedPerPrincipal: every distinct resource of
// a 2026-07-28 backend subscribed is one long-lived upstream
// subscriptions/listen (an HTTP stream, i.e. a TCP connection on HTTP/1.1,
// or a pending request on stdio). One principal, over all its sessions and
// listens, holds at most limits.max_upstream_subscriptions_per_principal of
// them; past that resources/subscribe and subscriptions/listen are refused
// with -32029 naming the limit. Before the fix the only bound was
// (max_sessions_per_principal × 2) × max_subscriptions: 24 streams here.
func TestUpstreamSubscriptionsCappedPerPrincipal(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	const perSession, sessions, budget = 4, 3, 6
	cfg := &config.Config{
		Servers: []config.Server{{Name: "modern", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, ProtocolVersion: "2026-07-28"}},
		Limits:  config.Limits{MaxSubscriptions: perSession, MaxSessionsPerPrincipal: sessions, MaxUpstreamSubscriptionsPerPrincipal: budget},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "mallory", SHA256: sha("m-token"), Principal: "mallory", Tools: []string{"*"}, Resources: []string{"modern:*"}},
		}},
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	e := startGateway(t, cfg, func(o *proxy.Options) { o.MeterProvider = mp })
	auth := map[string]string{"Authorization": "Bearer m-token"}
	var uris []string
	var touchHdr map[string]string
	held := 0
	for s := 0; s < sessions; s++ {
		hdr := map[string]string{"Authorization": auth["Authorization"]}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		touchHdr = hdr
		for i := 0; i < perSession; i++ {
			// Any URI: the only resource server routes every URI.
			uri := fmt.Sprintf("test://made-up/s%d/%d", s, i)
			if s > 0 && i == 0 {
				// A URI the principal holds already costs nothing more.
				uri = "test://made-up/s0/0"
			}
			r := subsCall(t, e.url, hdr, "resources/subscribe", map[string]any{"uri": uri})
			if s == 0 || i == 0 || held < budget {
				if r.Error != nil {
					t.Fatalf("subscribe %s with %d held: %+v", uri, held, r.Error)
				}
				if s == 0 || i > 0 {
					held++
				}
			} else {
				subsRefused(t, "subscribe "+uri, r, "max_upstream_subscriptions_per_principal")
			}
			uris = append(uris, uri)
		}
	}
	// A listen naming new URIs is refused as a whole.
	body := modernBody(100, "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": []string{"test://made-up/l0/0", "test://made-up/s0/1"}}}, nil)
	hdr := modernHeaders("subscriptions/listen", "")
	hdr["Authorization"] = auth["Authorization"]
	_, b := post(t, e.url, body, hdr)
	subsRefused(t, "subscriptions/listen", decodeResp(t, b), "max_upstream_subscriptions_per_principal")
	uris = append(uris, "test://made-up/l0/0")
	// One naming only URIs held already joins their streams.
	body = modernBody(101, "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": []string{"test://made-up/s0/1"}}}, nil)
	ch, _ := openStream(t, http.MethodPost, e.url, body, hdr)
	nextMessage(t, ch, "notifications/subscriptions/acknowledged")

	open := 0
	for _, u := range slices.Compact(slices.Sorted(slices.Values(uris))) {
		open += touchStreams(t, e.url, touchHdr, u)
	}
	if open != budget {
		t.Errorf("one principal made the gateway hold %d upstream subscriptions/listen streams; want limits.max_upstream_subscriptions_per_principal (%d)", open, budget)
	}
	if got := collect(t, reader, "mcptrail.limit.refusals"); got["limit=max_upstream_subscriptions_per_principal"] != 5 {
		t.Errorf("mcptrail.limit.refusals = %v, want max_upstream_subscriptions_per_principal 5 (4 subscribes, 1 listen)", got)
	}
}

// TestUpstreamSubscriptionsCappedPerServer: all principals together hold at
// most limits.max_upstream_subscriptions_per_server streams to one
// backend; joining a stream open already is always allowed.
func TestUpstreamSubscriptionsCappedPerServer(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	cfg := &config.Config{
		Servers: []config.Server{{Name: "modern", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, ProtocolVersion: "2026-07-28"}},
		Limits:  config.Limits{MaxUpstreamSubscriptionsPerServer: 3},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "alice", SHA256: sha("a-token"), Principal: "alice", Tools: []string{"*"}, Resources: []string{"modern:*"}},
			{Name: "bob", SHA256: sha("b-token"), Principal: "bob", Tools: []string{"*"}, Resources: []string{"modern:*"}},
		}},
	}
	e := startGateway(t, cfg)
	session := func(token string) map[string]string {
		hdr := map[string]string{"Authorization": "Bearer " + token}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		return hdr
	}
	alice, bob := session("a-token"), session("b-token")
	subscribe := func(hdr map[string]string, uri string) rpcResp {
		return subsCall(t, e.url, hdr, "resources/subscribe", map[string]any{"uri": uri})
	}
	for _, c := range []struct {
		hdr map[string]string
		uri string
	}{{alice, "test://a/1"}, {alice, "test://a/2"}, {bob, "test://b/1"}, {bob, "test://a/1"}} {
		if r := subscribe(c.hdr, c.uri); r.Error != nil {
			t.Fatalf("subscribe %s: %+v", c.uri, r.Error)
		}
	}
	subsRefused(t, "a fourth stream", subscribe(bob, "test://b/2"), "max_upstream_subscriptions_per_server")
	// Unsubscribing frees a stream only when its last holder goes.
	if r := subsCall(t, e.url, alice, "resources/unsubscribe", map[string]any{"uri": "test://a/1"}); r.Error != nil {
		t.Fatal(r.Error)
	}
	subsRefused(t, "a fourth stream while a/1 is held by bob", subscribe(bob, "test://b/2"), "max_upstream_subscriptions_per_server")
	if r := subsCall(t, e.url, alice, "resources/unsubscribe", map[string]any{"uri": "test://a/2"}); r.Error != nil {
		t.Fatal(r.Error)
	}
	if r := subscribe(bob, "test://b/2"); r.Error != nil {
		t.Fatalf("subscribe after a stream closed: %+v", r.Error)
	}
}

// waitUpstreamStreams waits until the backend's streams subscribed to uri number
// want, and fails with what.
func waitUpstreamStreams(t *testing.T, url string, hdr map[string]string, uri string, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	n, err := 0, error(nil)
	for time.Now().Before(deadline) {
		if n, err = tryTouchStreams(t, url, hdr, uri); err == nil && n == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: upstream streams for %s = %d (last error %v), want %d", what, uri, n, err, want)
}

// TestSubscriptionFollowsBackendRestart: a reload that changes a 2026
// backend's entry (here its timeout) replaces the Backend; the session's
// subscription is moved to the new one (before the fix the old one's
// stream ended with it while the session still counted itself subscribed:
// no more updates, and resubscribing was a no-op). A backend that loses its
// connections gets its subscriptions reopened when it reconnects, and one
// removed and added again by reloads is subscribed anew by a
// resources/subscribe (the session's shortcut checks that its stream is
// still alive).
func TestSubscriptionFollowsBackendRestart(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	// timeout "" leaves the backend out (a config needs one server: a
	// spare that never connects).
	write := func(timeout string) *config.Config {
		y := "namespace_separator: \".\"\nauth:\n  tokens:\n" +
			"    - {name: alice, sha256: " + sha("alice-token") + ", tools: [\"*\"], resources: [\"modern:*\"]}\n" +
			"servers:\n"
		if timeout != "" {
			y += "  - {name: modern, transport: http, url: \"" + hs.URL + "/mcp\", timeout: " + timeout + ", protocol_version: \"2026-07-28\"}\n"
		} else {
			y += "  - {name: spare, transport: http, url: \"http://127.0.0.1:1/mcp\"}\n"
		}
		return writeConfig(t, path, y)
	}
	e := startGateway(t, write("10s"))
	reload := func(timeout string) {
		t.Helper()
		old := e.gw.Backend("modern")
		write(timeout)
		if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the reloaded backend", func() bool {
			b := e.gw.Backend("modern")
			if timeout == "" {
				return b == nil
			}
			return b != nil && b != old && b.Ready()
		})
	}
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	alice["Mcp-Session-Id"] = initSession(t, e.url, alice)
	const uri = "test://static/1"
	subscribe := func() {
		t.Helper()
		if r := subsCall(t, e.url, alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
			t.Fatalf("subscribe: %+v", r.Error)
		}
	}
	subscribe()
	waitUpstreamStreams(t, e.url, alice, uri, 1, "subscribed")

	reload("11s")
	waitUpstreamStreams(t, e.url, alice, uri, 1, "after a reload restarted the backend")

	// The backend loses its connections and the gateway reconnects.
	hs.CloseClientConnections()
	waitUpstreamStreams(t, e.url, alice, uri, 1, "after the backend's connections were lost")

	// Removed, then added again: the session's resources/subscribe opens a
	// stream (or finds the one that followed), never a no-op on a dead one.
	reload("")
	reload("12s")
	subscribe()
	waitUpstreamStreams(t, e.url, alice, uri, 1, "after the backend was removed and added again")
}

// TestUpstreamSubscriptionHopsRecorded: a client's subscription to a 2026
// backend's resource is recorded as an upstream hop, as the
// resources/subscribe a session-era backend gets is: rule "uri:<server>"
// for a session's resources/subscribe, "listen:<server>" for a
// subscriptions/listen, saying whether it opened the stream or joined it.
func TestUpstreamSubscriptionHopsRecorded(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	e := startGateway(t, &config.Config{
		Servers: []config.Server{{Name: "modern", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, ProtocolVersion: "2026-07-28"}},
	})
	sid := initSession(t, e.url, nil)
	const uri = "test://static/1"
	if r := subsCall(t, e.url, map[string]string{"Mcp-Session-Id": sid}, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("subscribe: %+v", r.Error)
	}
	body := modernBody(7, "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": []string{uri}}}, nil)
	ch, _ := openStream(t, http.MethodPost, e.url, body, modernHeaders("subscriptions/listen", ""))
	nextMessage(t, ch, "notifications/subscriptions/acknowledged")

	hops := func() map[string]string {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		got := map[string]string{}
		for _, ev := range e.rec.events {
			if ev.Hop != recorder.HopUpstream || ev.Target != uri {
				continue
			}
			for _, a := range ev.Attrs {
				if a.Key == proxy.AttrUpstreamStream {
					got[ev.Method+" "+ev.RouteRule+" "+ev.Server] = a.Value
				}
			}
		}
		return got
	}
	want := map[string]string{
		"resources/subscribe uri:modern modern":    "opened",
		"resources/subscribe listen:modern modern": "joined", // the listen's leg, as before
	}
	var got map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got = hops(); fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("upstream hops of the subscriptions = %v, want %v", got, want)
}
