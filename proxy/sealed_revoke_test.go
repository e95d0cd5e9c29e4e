package proxy_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestSealedRevocationsBounded: the DELETEd sealed sessions a replica
// remembers are capped per principal and overall; at a cap new sealed
// sessions are refused with an error naming the key (429, then 503)
// instead of a revocation being forgotten, every DELETEd id stays refused,
// and the entries go once their sealed expiry has passed. Fails before the
// fix: a principal could open and DELETE sessions without end (each one
// remembered until its expiry: memory grew without bound).
func TestSealedRevocationsBounded(t *testing.T) {
	clock, now := testClock()
	cfg := oneBackend(t)
	cfg.Auth.Tokens = append(cfg.Auth.Tokens, config.Token{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"*"}})
	cfg.Sessions = config.Sessions{Keys: sessKey1, Lifetime: time.Hour, MaxRevoked: 3, MaxRevokedPerPrincipal: 2}
	e := startGateway(t, cfg, now)
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	auth := func(who string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + who + "-token"}
	}
	openAndDelete := func(who string) string {
		t.Helper()
		sid := initSession(t, e.url, auth(who))
		if status := deleteSession(t, e.url, sessionHeaders(who+"-token", sid)); status != http.StatusNoContent {
			t.Fatalf("DELETE %s's session: %d", who, status)
		}
		return sid
	}
	refused := func(who string, status int, key string) {
		t.Helper()
		resp, body := post(t, e.url, initBody, auth(who))
		if resp.StatusCode != status || !strings.Contains(string(body), key) || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("%s's initialize at the cap: %d %s, want %d naming %s and no session", who, resp.StatusCode, body, status, key)
		}
	}
	deleted := []string{openAndDelete("alice"), openAndDelete("alice")}
	refused("alice", http.StatusTooManyRequests, "sessions.max_revoked_per_principal")
	deleted = append(deleted, openAndDelete("bob"))
	refused("bob", http.StatusServiceUnavailable, "sessions.max_revoked")
	for i, sid := range deleted {
		who := []string{"alice", "alice", "bob"}[i]
		if resp, _ := post(t, e.url, list, sessionHeaders(who+"-token", sid)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("DELETEd session %d at the cap: %d, want 404 (its revocation kept)", i, resp.StatusCode)
		}
	}
	// Past their sealed expiry the revocations are dropped and new
	// sessions open again.
	clock(time.Hour + time.Second)
	if sid := initSession(t, e.url, auth("alice")); !strings.HasPrefix(sid, "m1") {
		t.Errorf("after the revoked sessions expired: id %q, want a sealed session", sid)
	}
}

// testClock is a clock for proxy.Options.Now that starts now and moves
// only when advance is called.
func testClock() (advance func(time.Duration), now func(*proxy.Options)) {
	var ns atomic.Int64
	ns.Store(time.Now().UnixNano())
	return func(d time.Duration) { ns.Add(int64(d)) },
		func(o *proxy.Options) { o.Now = func() time.Time { return time.Unix(0, ns.Load()) } }
}
