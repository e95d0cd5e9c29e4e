package proxy_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// reloadConfig writes a config naming the given HTTP backends (name → URL)
// and alice's tool patterns, loads it as serve would, and returns it.
func reloadConfig(t *testing.T, path string, servers [][2]string, aliceTools string, extra string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("namespace_separator: \".\"\nauth:\n  tokens:\n")
	b.WriteString("    - {name: alice, sha256: " + sha("alice-token") + ", tools: [" + aliceTools + "]}\n")
	b.WriteString("servers:\n")
	for _, s := range servers {
		b.WriteString("  - {name: " + s[0] + ", transport: http, url: \"" + s[1] + "\", timeout: 10s}\n")
	}
	b.WriteString(extra)
	return writeConfig(t, path, b.String())
}

// writeConfig writes yaml to path and loads it as serve would.
func writeConfig(t *testing.T, path, yaml string) *config.Config {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading %s: %v\n%s", path, err, yaml)
	}
	return cfg
}

func listedTools(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(toolNames(res), ",")
}

func tryTool(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	return c.CallTool(ctx, req)
}

// TestReload: a reload adds and removes backends without touching the
// others (same connection, same client session), changes a token's rights
// for new calls, lets a call in flight on a removed backend finish, keeps
// the config in force when the new one is invalid or changes a
// restart-only setting, and records every attempt with the config hashes.
func TestReload(t *testing.T) {
	var urls [3]string
	for i := range urls {
		hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
		t.Cleanup(hs.Close)
		urls[i] = hs.URL + "/mcp"
	}
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	cfg := reloadConfig(t, path, [][2]string{{"alpha", urls[0]}, {"beta", urls[1]}}, `"*"`, "")
	e := startGateway(t, cfg)
	ctx := context.Background()
	alpha := e.gw.Backend("alpha")
	c := newClientWithHeaders(t, e.url, map[string]string{"Authorization": "Bearer alice-token"})
	sessionID := c.GetSessionId()
	if got := text(callTool(t, c, "beta.echo", map[string]any{"message": "before"})); got != "before" {
		t.Fatalf("beta.echo = %q", got)
	}
	hash0 := e.gw.ReloadStatus().ConfigHash

	// A slow call on beta is in flight when beta is removed; gamma is added.
	slow := make(chan error, 1)
	go func() {
		res, err := tryTool(c, "beta.slow", map[string]any{"steps": 5, "delay_ms": 100})
		if err == nil && res.IsError {
			err = errors.New(text(res))
		}
		slow <- err
	}()
	waitFor(t, "beta.slow in flight", func() bool { return e.gw.BackendBusy("beta") })
	next := reloadConfig(t, path, [][2]string{{"alpha", urls[0]}, {"gamma", urls[2]}}, `"*"`, "")
	res, err := e.gw.ReloadFile(ctx, path, nil, "test")
	if err != nil {
		t.Fatalf("reload adding gamma, removing beta: %v", err)
	}
	if !slices.Equal(res.Added, []string{"gamma"}) || !slices.Equal(res.Removed, []string{"beta"}) || len(res.Restarted) != 0 {
		t.Errorf("reload result %+v, want gamma added and beta removed", res)
	}
	if err := <-slow; err != nil {
		t.Errorf("a call in flight on the removed backend: %v, want it to finish", err)
	}
	if e.gw.Backend("alpha") != alpha {
		t.Error("alpha was replaced by a reload that did not change it")
	}
	waitFor(t, "gamma ready", func() bool { b := e.gw.Backend("gamma"); return b != nil && b.Ready() })
	names := listedTools(t, c)
	if !slices.Contains(names, "gamma.echo") || !slices.Contains(names, "alpha.echo") || slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "beta.") }) {
		t.Errorf("tools after the reload = %v, want alpha's and gamma's, none of beta's", names)
	}
	if c.GetSessionId() != sessionID {
		t.Error("the client session changed")
	}
	if got := text(callTool(t, c, "alpha.echo", map[string]any{"message": "same session"})); got != "same session" {
		t.Errorf("alpha.echo after the reload = %q", got)
	}
	if _, err := tryTool(c, "beta.echo", map[string]any{"message": "x"}); err == nil || !strings.Contains(err.Error(), "server beta was removed from the configuration") {
		t.Errorf("beta.echo after beta was removed: %v, want an error saying so", err)
	}

	// alice's rights shrink to alpha: new calls on gamma are denied and
	// gamma's tools leave her list.
	reloadConfig(t, path, [][2]string{{"alpha", urls[0]}, {"gamma", urls[2]}}, `"alpha.*"`, "")
	if _, err := e.gw.ReloadFile(ctx, path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := tryTool(c, "gamma.echo", map[string]any{"message": "x"}); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("gamma.echo after alice lost it: %v, want not allowed", err)
	}
	if names := listedTools(t, c); slices.Contains(names, "gamma.echo") {
		t.Errorf("alice's tools after the reload = %v, want no gamma", names)
	}
	inForce := e.gw.ReloadStatus().ConfigHash

	// Rejected: an invalid file, then a restart-only change. The config in
	// force stays, and says why.
	for _, bad := range []struct{ name, body, want string }{
		{"invalid", "servers: [\n", "yaml"},
		{"unknown key", "servers: []\nlisten_port: 9\n", "listen_port"},
		{"bad pattern", strings.Replace(mustRead(t, path), `"alpha.*"`, `"alpha.*x"`, 1), "alpha.*x"},
		{"restart only", mustRead(t, path) + "listen: 127.0.0.1:1\n", "listen"},
		{"auth off", "servers:\n  - {name: alpha, transport: http, url: \"" + urls[0] + "\"}\n", "cannot turn authentication off"},
	} {
		if err := os.WriteFile(path, []byte(bad.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := e.gw.ReloadFile(ctx, path, nil, "test")
		st := e.gw.ReloadStatus()
		if err == nil || !strings.Contains(err.Error(), bad.want) || st.LastError != err.Error() || st.ConfigHash != inForce {
			t.Errorf("%s: reload err = %v, status %+v; want an error naming %q and config %s kept", bad.name, err, st, bad.want, inForce[:12])
		}
		if got := text(callTool(t, c, "alpha.echo", map[string]any{"message": "still"})); got != "still" {
			t.Errorf("%s: alpha.echo after a rejected reload = %q", bad.name, got)
		}
	}
	if st := e.gw.ReloadStatus(); st.Reloads != 2 || st.Failures != 5 {
		t.Errorf("status %+v, want 2 reloads and 5 failures", st)
	}
	_ = next

	// Every attempt is in the audit trail with the hashes.
	e.rec.mu.Lock()
	var reloads []recorder.Event
	for _, ev := range e.rec.events {
		if ev.Method == proxy.MethodReload {
			reloads = append(reloads, ev)
		}
	}
	e.rec.mu.Unlock()
	if len(reloads) != 7 {
		t.Fatalf("%d reload events recorded, want 7", len(reloads))
	}
	attr := func(ev recorder.Event, k string) string {
		for _, a := range ev.Attrs {
			if a.Key == k {
				return a.Value
			}
		}
		return ""
	}
	first := reloads[0]
	if first.Hop != recorder.HopResponse || first.AuthDecision != "allowed" || attr(first, proxy.AttrConfigHashBefore) != hash0 ||
		attr(first, proxy.AttrConfigHashAfter) != next.Hash || first.ConfigHash != next.Hash || first.Target != path {
		t.Errorf("first reload event %+v, want allowed, %s → %s", first, hash0[:12], next.Hash[:12])
	}
	last := reloads[5] // the restart-only change
	if last.AuthDecision != "denied" || last.Outcome != recorder.OutcomeDenied || !strings.Contains(last.ErrorMessage, "listen") ||
		attr(last, proxy.AttrConfigHashBefore) != inForce || attr(last, proxy.AttrConfigHashAfter) != inForce || attr(last, proxy.AttrConfigHashCandidate) == inForce {
		t.Errorf("rejected reload event %+v, want denied with the reason and the hash kept", last)
	}
}

// TestReloadUnderLoad: calls keep flowing, none failing, while the config
// flips between two versions (a rule and a backend added and removed).
func TestReloadUnderLoad(t *testing.T) {
	var urls [2]string
	for i := range urls {
		hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
		t.Cleanup(hs.Close)
		urls[i] = hs.URL + "/mcp"
	}
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	cfg := reloadConfig(t, path, [][2]string{{"alpha", urls[0]}}, `"alpha.*"`, "")
	e := startGateway(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const workers = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls int
		fails []string
	)
	for range workers {
		c := newClientWithHeaders(t, e.url, map[string]string{"Authorization": "Bearer alice-token"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				res, err := tryTool(c, "alpha.echo", map[string]any{"message": "x"})
				mu.Lock()
				calls++
				if err != nil || res.IsError || text(res) != "x" {
					fails = append(fails, errString(err, res))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			reloadConfig(t, path, [][2]string{{"alpha", urls[0]}, {"beta", urls[1]}}, `"alpha.*", "beta.*"`, "")
		} else {
			reloadConfig(t, path, [][2]string{{"alpha", urls[0]}}, `"alpha.*"`, "")
		}
		mu.Lock()
		before := calls
		mu.Unlock()
		if _, err := e.gw.ReloadFile(ctx, path, nil, "test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// Every worker gets a call or two through each config.
		waitFor(t, "calls after a reload", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= before+2*workers })
	}
	cancel()
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d of %d calls failed during 20 reloads, first: %s", len(fails), calls, fails[0])
	}
	t.Logf("%d calls, 20 reloads, 0 failed", calls)
}

func errString(err error, res *mcp.CallToolResult) string {
	if err != nil {
		return err.Error()
	}
	return text(res)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadAdminToken: a reload that changes admin.token_sha256 applies to
// the next admin request: the old token is refused, the new one accepted.
// Fails before the fix: the admin handler kept the token it was built with.
func TestReloadAdminToken(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	t.Cleanup(hs.Close)
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	servers := [][2]string{{"alpha", hs.URL + "/mcp"}}
	admin := func(tok string) string { return "admin:\n  token_sha256: " + sha(tok) + "\n" }
	e := startGateway(t, reloadConfig(t, path, servers, `"*"`, admin("admin-old")))
	status := func(tok string) int {
		code, _ := do(t, "GET", e.url+"/statusz", map[string]string{"Authorization": "Bearer " + tok}, "")
		return code
	}
	if got := status("admin-old"); got != 200 {
		t.Fatalf("/statusz with the admin token = %d, want 200", got)
	}
	reloadConfig(t, path, servers, `"*"`, admin("admin-new"))
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tok  string
		want int
	}{{"admin-old", 401}, {"admin-new", 200}} {
		if got := status(tc.tok); got != tc.want {
			t.Errorf("after the reload, /statusz with %s = %d, want %d", tc.tok, got, tc.want)
		}
	}
	// Losing the admin token in an edit must not open the admin endpoints.
	reloadConfig(t, path, servers, `"*"`, "")
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); !errors.Is(err, proxy.ErrRestartRequired) || !strings.Contains(err.Error(), "admin.token_sha256") {
		t.Errorf("reload removing the admin token: %v, want it refused naming admin.token_sha256", err)
	}
	if got := status("admin-new"); got != 200 {
		t.Errorf("after the refused reload, /statusz with admin-new = %d, want 200", got)
	}
}

// TestReloadAllowedOrigins: a reload that changes allowed_origins applies
// to the next request. Fails before the fix: the origins were read once,
// when the handler was built.
func TestReloadAllowedOrigins(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	t.Cleanup(hs.Close)
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	servers := [][2]string{{"alpha", hs.URL + "/mcp"}}
	origins := func(o string) string { return "allowed_origins: [\"" + o + "\"]\n" }
	e := startGateway(t, reloadConfig(t, path, servers, `"*"`, origins("https://old.example")))
	post := func(origin string) int {
		code, _ := do(t, "POST", e.url+"/mcp", map[string]string{"Authorization": "Bearer alice-token", "Origin": origin}, initBody)
		return code
	}
	if got := post("https://old.example"); got != 200 {
		t.Fatalf("POST /mcp from the allowed origin = %d, want 200", got)
	}
	reloadConfig(t, path, servers, `"*"`, origins("https://new.example"))
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin string
		want   int
	}{{"https://old.example", 403}, {"https://new.example", 200}} {
		if got := post(tc.origin); got != tc.want {
			t.Errorf("after the reload, POST /mcp from %s = %d, want %d", tc.origin, got, tc.want)
		}
	}
}

// TestReloadConfigInForce: Config is the config a reload applied, which
// serve reads at shutdown (shutdown_timeout) and the console at every page
// (admin.trace_url). Fails before the fix: both kept the values read at
// start.
func TestReloadConfigInForce(t *testing.T) {
	hs := httptest.NewServer(testbackend.New(testbackend.Options{}).HTTPHandler())
	t.Cleanup(hs.Close)
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	servers := [][2]string{{"alpha", hs.URL + "/mcp"}}
	e := startGateway(t, reloadConfig(t, path, servers, `"*"`, "shutdown_timeout: 3s\nadmin: {trace_url: \"http://old/{trace_id}\"}\n"))
	reloadConfig(t, path, servers, `"*"`, "shutdown_timeout: 7s\nadmin: {trace_url: \"http://new/{trace_id}\"}\n")
	if _, err := e.gw.ReloadFile(context.Background(), path, nil, "test"); err != nil {
		t.Fatal(err)
	}
	if got := e.gw.Config(); got.ShutdownTimeout != 7*time.Second || got.Admin.TraceURL != "http://new/{trace_id}" {
		t.Errorf("Config() after the reload: shutdown_timeout %s, trace_url %q; want 7s, http://new/{trace_id}", got.ShutdownTimeout, got.Admin.TraceURL)
	}
}
