package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// TestConsoleCommand: `mcptrail console` serves the console over a
// ClickHouse without a gateway, behind the admin token; it refuses to
// listen beyond loopback without one.
func TestConsoleCommand(t *testing.T) {
	srv := chtest.Shared(t)
	db := chtest.Database(t, srv.Addr())
	if out, stderr, code := runCLI(t, "migrate", "--clickhouse", srv.Addr(), "--database", db); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runCLI(t, "console", "--clickhouse", srv.Addr(), "--listen", "0.0.0.0:0"); code == 0 || !strings.Contains(stderr, "not a loopback address") {
		t.Errorf("console on 0.0.0.0 without a token: exit %d, want a refusal naming loopback\n%s", code, stderr)
	}
	token := "console-" + randAlnum(20)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "console", nil, "console", "--clickhouse", srv.Addr(), "--database", db, "--listen", addr, "--admin-token-sha256", sha256hex(token))
	get := func(path, tok string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	waitFor(t, "mcptrail console to listen", 30*time.Second, p, func() (bool, error) {
		_, _, err := get("/console/static/console.css", "")
		return err == nil, err
	})
	for _, tt := range []struct {
		path, tok, want string
		status          int
	}{
		{"/console/calls", "", `name="token"`, 401},
		{"/console/calls", "wrong", "Admin access needed", 401},
		{"/console/calls", token, "No calls in this window", 200},
		{"/console/replays", token, "No replay runs stored", 200},
		{"/console/health", token, "No gateway runs in this process", 200},
	} {
		status, body, err := get(tt.path, tt.tok)
		if err != nil || status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s (token %q) = %d %v, want %d with %q\n%s", tt.path, tt.tok, status, err, tt.status, tt.want, tail(body, 1500))
		}
	}
	if out := p.output(t); !strings.Contains(out, "mcptrail web console: http://"+addr+"/console/") {
		t.Errorf("console did not print its URL:\n%s", out)
	}
}
