package proxy_test

// Review rev3: proofs for the 2026 upstream resource subscriptions.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

func rev3Call(t *testing.T, url string, hdr map[string]string, method string, params any) rpcResp {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 9, "method": method, "params": params})
	_, body := post(t, url, string(b), hdr)
	return decodeResp(t, body)
}

func rev3Touch(t *testing.T, url string, hdr map[string]string, uri string) int {
	t.Helper()
	r := rev3Call(t, url, hdr, "tools/call", map[string]any{"name": "modern.touch", "arguments": map[string]any{"uri": uri}})
	var res struct {
		Content []struct{ Text string } `json:"content"`
	}
	if r.Error != nil || json.Unmarshal(r.Result, &res) != nil || len(res.Content) != 1 {
		t.Fatalf("modern.touch: %s %+v", r.Result, r.Error)
	}
	n, _ := strconv.Atoi(res.Content[0].Text)
	return n
}

// TestRev3UpstreamStreamsPerPrincipal: one principal makes the gateway hold
// one long-lived upstream subscriptions/listen (an HTTP stream, i.e. a TCP
// connection on HTTP/1.1, or a pending request on stdio) per distinct URI it
// names, in every session and every listen. Nothing bounds these streams
// per principal or per backend beyond
// (max_sessions_per_principal × 2) × max_subscriptions — 512,000 for one
// principal with the defaults, 5,120,000 for the gateway. Before the change a
// subscription to a backend was one resources/subscribe (no open stream).
// Want: the upstream streams a principal causes stay within one
// max_subscriptions budget (or a dedicated cap).
func TestRev3UpstreamStreamsPerPrincipal(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	const perSession, sessions = 4, 3
	cfg := &config.Config{
		Servers: []config.Server{{Name: "modern", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, ProtocolVersion: "2026-07-28"}},
		Limits:  config.Limits{MaxSubscriptions: perSession, MaxSessionsPerPrincipal: sessions},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "mallory", SHA256: sha("m-token"), Principal: "mallory", Tools: []string{"*"}, Resources: []string{"modern:*"}},
		}},
	}
	e := startGateway(t, cfg)
	auth := map[string]string{"Authorization": "Bearer m-token"}
	var uris []string
	var touchHdr map[string]string
	for s := 0; s < sessions; s++ {
		hdr := map[string]string{"Authorization": auth["Authorization"]}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		touchHdr = hdr
		for i := 0; i < perSession; i++ {
			// Any URI: the only resource server routes every URI.
			uri := fmt.Sprintf("test://made-up/s%d/%d", s, i)
			if r := rev3Call(t, e.url, hdr, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
				t.Fatalf("subscribe %s: %+v", uri, r.Error)
			}
			uris = append(uris, uri)
		}
	}
	// And as many sessionless listens, each with max_subscriptions URIs.
	for l := 0; l < sessions; l++ {
		var ls []string
		for i := 0; i < perSession; i++ {
			ls = append(ls, fmt.Sprintf("test://made-up/l%d/%d", l, i))
		}
		body := modernBody(100+l, "subscriptions/listen", map[string]any{"notifications": map[string]any{"resourceSubscriptions": ls}}, nil)
		hdr := modernHeaders("subscriptions/listen", "")
		hdr["Authorization"] = auth["Authorization"]
		ch, _ := openStream(t, http.MethodPost, e.url, body, hdr)
		nextMessage(t, ch, "notifications/subscriptions/acknowledged")
		uris = append(uris, ls...)
	}
	open := 0
	for _, u := range uris {
		open += rev3Touch(t, e.url, touchHdr, u)
	}
	t.Logf("one principal holds %d upstream listen streams open (max_subscriptions %d)", open, perSession)
	if open > perSession {
		t.Errorf("one principal made the gateway hold %d upstream subscriptions/listen streams; want at most limits.max_subscriptions (%d)", open, perSession)
	}
}

// TestRev3SubscriptionLostOnRestart: a reload that changes a 2026 backend's
// entry (here its timeout) replaces the Backend; the old one's per-URI
// streams end with its run context, but the session still counts itself
// subscribed, so its updates stop and resubscribing is a no-op ({} from the
// subscribed short-cut) — the subscription is silently dead until the
// client unsubscribes first.
func TestRev3SubscriptionLostOnRestart(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{Subscribable: true}).HTTPHandler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	write := func(timeout string) *config.Config {
		y := "namespace_separator: \".\"\nauth:\n  tokens:\n" +
			"    - {name: alice, sha256: " + sha("alice-token") + ", tools: [\"*\"], resources: [\"modern:*\"]}\n" +
			"servers:\n  - {name: modern, transport: http, url: \"" + hs.URL + "/mcp\", timeout: " + timeout + ", protocol_version: \"2026-07-28\"}\n"
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	e := startGateway(t, write("10s"))
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	alice["Mcp-Session-Id"] = initSession(t, e.url, alice)
	const uri = "test://static/1"
	if r := rev3Call(t, e.url, alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("subscribe: %+v", r.Error)
	}
	if n := rev3Touch(t, e.url, alice, uri); n != 1 {
		t.Fatalf("streams before the reload = %d, want 1", n)
	}
	old := e.gw.Backend("modern")
	write("11s")
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted backend ready", func() bool {
		b := e.gw.Backend("modern")
		return b != nil && b != old && b.Ready()
	})
	// The session resubscribes, as a careful client would.
	if r := rev3Call(t, e.url, alice, "resources/subscribe", map[string]any{"uri": uri}); r.Error != nil {
		t.Fatalf("subscribe again: %+v", r.Error)
	}
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if n = rev3Touch(t, e.url, alice, uri); n == 1 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("after a reload restarted the backend, upstream streams for %s = %d, want 1: the session is still 'subscribed' and gets no updates", uri, n)
}
