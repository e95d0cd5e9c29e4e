package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestSessionsStayOnTheirTransport: a legacy SSE session (GET /sse) is
// served by POST /message only, and a streamable-HTTP session (plain or
// sealed) by /mcp only, each answered like an unknown session on the
// other: an id is a capability for the transport that issued it. Fails
// before the fix: /mcp served the legacy session and /message served both
// streamable ones (the sealed one rebuilt from its id).
func TestSessionsStayOnTheirTransport(t *testing.T) {
	cfg := oneBackend(t)
	cfg.Sessions.Keys = sessKey1
	sealed := startGateway(t, cfg)
	plainCfg := oneBackend(t)
	plain := startGateway(t, plainCfg)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`

	for name, e := range map[string]*env{"plain": plain, "sealed": sealed} {
		t.Run(name, func(t *testing.T) {
			// Legacy → streamable.
			sse := openLegacySSE(t, e.url, alice)
			legacyID := sse.msgURL[strings.Index(sse.msgURL, "sessionId=")+len("sessionId="):]
			if status, _, body := sse.post(list); status != http.StatusAccepted {
				t.Fatalf("POST /message on its own session: %d %.200s, want 202", status, body)
			}
			if resp, body := post(t, e.url, list, sessionHeaders("alice-token", legacyID)); resp.StatusCode != http.StatusNotFound {
				t.Errorf("POST /mcp with a legacy SSE session id: %d %.200s, want 404", resp.StatusCode, body)
			}
			if status := deleteSession(t, e.url, sessionHeaders("alice-token", legacyID)); status != http.StatusNotFound {
				t.Errorf("DELETE /mcp of a legacy SSE session: %d, want 404", status)
			}
			if status, _, body := sse.post(list); status != http.StatusAccepted {
				t.Errorf("POST /message after the attempts on /mcp: %d %.200s, want 202 (the session still open)", status, body)
			}

			// Streamable → legacy.
			sid := initSession(t, e.url, alice)
			if wantSealed := name == "sealed"; strings.HasPrefix(sid, "m1") != wantSealed {
				t.Fatalf("streamable session id %q: sealed %v, want %v", sid, !wantSealed, wantSealed)
			}
			onLegacy := &legacySSE{t: t, hdr: alice, msgURL: e.url + "/message?sessionId=" + sid}
			if status, _, body := onLegacy.post(list); status != http.StatusNotFound {
				t.Errorf("POST /message with a streamable session id: %d %.200s, want 404", status, body)
			}
			if resp, body := post(t, e.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusOK {
				t.Errorf("POST /mcp on its own session: %d %.200s, want 200", resp.StatusCode, body)
			}
		})
	}
	// A sealed id this replica does not hold is not rebuilt for /message.
	other := startGateway(t, copyConfig(cfg))
	sid := initSession(t, sealed.url, alice)
	onLegacy := &legacySSE{t: t, hdr: alice, msgURL: other.url + "/message?sessionId=" + sid}
	if status, _, body := onLegacy.post(list); status != http.StatusNotFound {
		t.Errorf("POST /message with a sealed id another replica issued: %d %.200s, want 404", status, body)
	}
}

func copyConfig(c *config.Config) *config.Config { cc := *c; return &cc }
