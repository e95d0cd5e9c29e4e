package proxy_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestSealedLifetimeLowered: lowering sessions.lifetime shortens the
// sessions issued under the longer one — on another replica (or after a
// restart) with the new setting, and on the replica that issued them after
// a hot reload. Fails before the fix: the id stayed valid until the expiry
// sealed in it (24h), and the reload was refused as restart-only.
func TestSealedLifetimeLowered(t *testing.T) {
	clock, now := testClock()
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(sessKey1), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := oneBackend(t).Servers[0].URL
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	withLifetime := func(lifetime string) *config.Config {
		return reloadConfig(t, path, [][2]string{{"alpha", hs}}, `"*"`, "sessions: {keys_file: "+keys+", lifetime: "+lifetime+"}\n")
	}
	a := startGateway(t, withLifetime("24h"), now)
	b := startGateway(t, withLifetime("1m"), now) // a restart with the lower lifetime looks the same
	c := startGateway(t, withLifetime("1m"), now) // never sees the session before it expires
	sid := initSession(t, a.url, alice)
	for name, e := range map[string]*env{"a": a, "b": b} {
		if resp, body := post(t, e.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s within a minute: %d %s", name, resp.StatusCode, body)
		}
	}
	withLifetime("1m")
	if _, err := a.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Errorf("reload lowering sessions.lifetime: %v", err)
	}
	clock(2 * time.Minute)
	for name, e := range map[string]*env{"a (reloaded, holds the session)": a, "b (restarted with 1m, holds it)": b, "c (restarted with 1m)": c} {
		if resp, body := post(t, e.url, list, sessionHeaders("alice-token", sid)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s, 2 minutes after a 24h session was issued under a 1m lifetime: %d %.200s, want 404", name, resp.StatusCode, body)
		}
	}
	// The keys stay restart-only.
	if err := os.WriteFile(path, []byte(strings.Replace(mustRead(t, path), "lifetime: 1m", "lifetime: 1m, keys: x", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.gw.ReloadFile(context.Background(), path, nil, "test"); err == nil || !strings.Contains(err.Error(), "sessions") {
		t.Errorf("reload changing the session keys: %v, want it refused as restart-only", err)
	}
}
