package proxy_test

import (
	"context"
	"path/filepath"
	"testing"
)

// TestIdleTimeoutLoweredByReload: a reload that lowers
// limits.session_idle_timeout ends the sessions idle longer than the new
// value, as it would after a restart. Fails before the fix: the janitor
// kept the timeout (and the tick) it started with, so the session stayed
// for the old hour.
func TestIdleTimeoutLoweredByReload(t *testing.T) {
	hs := oneBackend(t).Servers[0].URL
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	e := startGateway(t, reloadConfig(t, path, [][2]string{{"alpha", hs}}, `"*"`, "limits: {session_idle_timeout: 1h}\n"))
	initSession(t, e.url, map[string]string{"Authorization": "Bearer alice-token"})
	reloadConfig(t, path, [][2]string{{"alpha", hs}}, `"*"`, "limits: {session_idle_timeout: 200ms}\n")
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle session to expire under the lowered timeout", func() bool { return e.gw.Status().Sessions == 0 })
}
