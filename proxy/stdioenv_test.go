package proxy_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestStdioBackendEnvironment asks a real stdio backend (server-everything's
// get-env) for its environment: it holds the base variables, its own env and
// what env_passthrough names, and none of the gateway's secrets.
// Fails before the fix: a backend inherited the gateway's whole environment.
func TestStdioBackendEnvironment(t *testing.T) {
	js := everythingJS(t)
	const (
		redactionKey = "canary-redaction-key-7f3a"
		chPassword   = "canary-clickhouse-pw-91bd"
		otherToken   = "canary-other-backend-token-c2e8"
	)
	t.Setenv("MCPTRAIL_REDACTION_KEY", redactionKey)
	t.Setenv("MCPTRAIL_CH_PASSWORD", chPassword)
	t.Setenv("CRM_API_TOKEN", otherToken)
	t.Setenv("LC_TIME", "C")
	t.Setenv("PASS_ME", "passed")
	t.Setenv("NODEX_ONE", "prefixed")
	cfg := &config.Config{Servers: []config.Server{{
		Name: "everything", Transport: "stdio", Command: "node", Args: []string{js, "stdio"},
		Env:            map[string]string{"OWN_TOKEN": "own-secret", "PATH_EXTRA": "x"},
		EnvPassthrough: []string{"PASS_ME", "NODEX_*"},
		Timeout:        30 * time.Second,
	}}}
	e := startGateway(t, cfg)
	c := newClient(t, e.url)
	out := text(callTool(t, c, "everything.get-env", map[string]any{}))
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("get-env: %v in %.300s", err, out)
	}
	for _, tt := range []struct {
		name, want string
	}{
		{"OWN_TOKEN", "own-secret"},
		{"PATH_EXTRA", "x"},
		{"PASS_ME", "passed"},
		{"NODEX_ONE", "prefixed"},
		{"LC_TIME", "C"},
	} {
		if got[tt.name] != tt.want {
			t.Errorf("backend env %s = %q, want %q", tt.name, got[tt.name], tt.want)
		}
	}
	if got["PATH"] == "" || got["HOME"] == "" {
		t.Errorf("backend env lacks the base PATH/HOME: %v", got)
	}
	for _, secret := range []string{redactionKey, chPassword, otherToken} {
		for k, v := range got {
			if v == secret {
				t.Errorf("backend env %s carries the gateway's secret %q", k, secret)
			}
		}
	}
	for _, name := range []string{"MCPTRAIL_REDACTION_KEY", "MCPTRAIL_CH_PASSWORD", "CRM_API_TOKEN"} {
		if _, ok := got[name]; ok {
			t.Errorf("backend env has %s", name)
		}
	}
}
