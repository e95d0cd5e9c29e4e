package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reloadYAML is a gateway config with the test backend as alpha, and as
// beta when withBeta; the token's tools are tools.
func reloadYAML(tbURL string, withBeta bool, tools string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "auth:\n  tokens:\n    - {name: ci, principal: ci, sha256: %s, tools: [%s]}\n", sha256hex("reload-token"), tools)
	fmt.Fprintf(&b, "servers:\n  - {name: alpha, transport: http, url: %q, timeout: 10s}\n", tbURL)
	if withBeta {
		fmt.Fprintf(&b, "  - {name: beta, transport: http, url: %q, timeout: 10s}\n", tbURL)
	}
	return b.String()
}

// TestReloadThroughTheBinary: `mcptrail serve` reloads on a file change and
// on SIGHUP while clients keep calling, and no call fails; a removed
// backend's tools go with a clear error, a token's rights change for new
// calls, and an invalid file is rejected with the old config kept and the
// error on /statusz.
func TestReloadThroughTheBinary(t *testing.T) {
	_, tbURL := startTestBackend(t)
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	write := func(body string) string {
		t.Helper()
		// Written beside and renamed over, as editors and Kubernetes do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		return sha256hex(body)
	}
	write(reloadYAML(tbURL, false, `"alpha.*"`))
	gw := startGateway(t, e2eEnv{Config: path}, "--no-record")
	status := func() gatewayStatus {
		t.Helper()
		resp, err := httpc.Get(gw.admin + "/statusz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		st, err := parseStatus(raw)
		if err != nil || st.Config == nil {
			t.Fatalf("/statusz: %v %s", err, raw)
		}
		return st
	}
	inForce := func(hash string) {
		t.Helper()
		waitFor(t, "config "+hash[:12]+" in force", 30*time.Second, gw.proc, func() (bool, error) {
			c := status().Config
			return c.ConfigHash == hash, fmt.Errorf("config %+v", c)
		})
	}

	// Clients call alpha.echo in a loop through every reload.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const workers = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls int
		fails []string
	)
	for w := range workers {
		c := dial(t, gw.url, "reload-token")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				msg := fmt.Sprintf("w%d-%d", w, i)
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				resp, _, err := c.request(cctx, "tools/call", map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": msg}})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				calls++
				if err != nil || resp.Error != nil || !strings.Contains(string(resp.Result), msg) {
					fails = append(fails, fmt.Sprintf("%v %+v %s", err, resp.Error, resp.Result))
				}
				mu.Unlock()
			}
		}()
	}
	progress := func() {
		t.Helper()
		mu.Lock()
		before := calls
		mu.Unlock()
		waitFor(t, "calls to go on", 30*time.Second, gw.proc, func() (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			return calls >= before+2*workers, fmt.Errorf("%d calls", calls)
		})
	}
	for i := range 6 {
		withBeta := i%2 == 0
		// A rule changes with every flip too.
		tools := `"alpha.echo", "beta.*"`
		if withBeta {
			tools = `"alpha.*", "beta.*"`
		}
		body := reloadYAML(tbURL, withBeta, tools)
		if i%3 == 2 {
			// Written in place, then announced with SIGHUP.
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_ = gw.cmd.Process.Signal(syscall.SIGHUP)
		} else {
			write(body)
		}
		inForce(sha256hex(body))
		progress()
	}

	cancel()
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d of %d calls failed during the reloads, first: %s", len(fails), calls, fails[0])
	}
	t.Logf("%d calls through 6 reloads, 0 failed", calls)

	// beta is gone (the last flip removed it): its tools went, its calls
	// say why.
	c := dial(t, gw.url, "reload-token")
	list, _, err := c.request(context.Background(), "tools/list", map[string]any{})
	if err != nil || strings.Contains(string(list.Result), "beta.") || !strings.Contains(string(list.Result), "alpha.echo") {
		t.Errorf("tools/list after beta was removed: %v %s", err, list.Result)
	}
	resp, _ := c.callTool(t, "beta.echo", map[string]any{"message": "x"})
	if resp.Error == nil || !strings.Contains(resp.Error.Message, "server beta was removed from the configuration") {
		t.Errorf("beta.echo after beta was removed: %+v %s, want an error saying so", resp.Error, resp.Result)
	}
	// The token loses alpha.echo: new calls are denied.
	hash := write(reloadYAML(tbURL, false, `"alpha.add"`))
	inForce(hash)
	resp, _ = c.callTool(t, "alpha.echo", map[string]any{"message": "x"})
	if resp.Error == nil || !strings.Contains(resp.Error.Message, "not allowed") {
		t.Errorf("alpha.echo after the token lost it: %+v, want not allowed", resp.Error)
	}

	// An invalid file: rejected, the config in force kept, the error on
	// /statusz, and calls still answered under the old config.
	before := status().Config
	write("servers: [\n")
	waitFor(t, "the invalid config to be rejected", 30*time.Second, gw.proc, func() (bool, error) {
		c := status().Config
		return c.Failures == before.Failures+1, fmt.Errorf("config %+v", c)
	})
	after := status().Config
	if after.ConfigHash != hash || after.LastError == "" || after.Reloads != before.Reloads {
		t.Errorf("after an invalid file: %+v, want config %s kept and the error shown", after, hash[:12])
	}
	if resp, _ := c.callTool(t, "alpha.add", map[string]any{"a": 1, "b": 2}); resp.Error != nil {
		t.Errorf("alpha.add after a rejected reload: %+v", resp.Error)
	}
	out, stderr, code := runCLI(t, "status", "--url", gw.admin)
	if code != 0 || !strings.Contains(out, "LAST RELOAD REJECTED") {
		t.Errorf("mcptrail status after a rejected reload: exit %d\n%s%s", code, out, stderr)
	}
}
