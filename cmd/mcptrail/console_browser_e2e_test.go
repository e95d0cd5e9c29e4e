package main

// The web console in a real browser: Debian's chromium, driven headless by
// playwright-core (testdata/npm/console-browser.mjs), against the real
// binary recording server-everything traffic into ClickHouse.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// chromiumPath is where Debian's chromium package (scripts/setup.sh)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// consoleResult is what console-browser.mjs prints.
type consoleResult struct {
	Steps       []string            `json:"steps"`
	Violations  map[string][]string `json:"violations"`
	CSPErrors   []string            `json:"csp_errors"`
	TabOrder    []string            `json:"tab_order"`
	Screenshots []string            `json:"screenshots"`
	Error       string              `json:"error"`
}

// TestConsoleBrowser records calls to server-everything through `mcptrail
// serve` (one ok, one failing in the backend, one denied by policy) and a
// replay run against a candidate config that withholds echo's answers
// (an injected regression), then drives the console in chromium: sign in
// with the admin token, find the failed call by filtering, open its trace
// and see every hop and the error with its request ID, download the audit
// CSV of a filter (compared here byte for byte with `mcptrail audit
// --format csv` of the same filter), open the replay run and see the
// changed JSON path. Every page is checked with axe-core (WCAG A/AA:
// labels, contrast, …) and for CSP violations; the calls page for its
// keyboard tab order. Screenshots go to $MCPTRAIL_SCREENSHOTS (default: the
// test's temp dir); the trace view's is copied to testdata/docs/console-trace.png
// when MCPTRAIL_UPDATE_DOCS=1.
func TestConsoleBrowser(t *testing.T) {
	npm := npmDir(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium is not installed (%v): run scripts/setup.sh (apt-get install chromium)", err)
	}
	if _, err := os.Stat(filepath.Join(npm, "node_modules/playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed (%v): run `npm ci --prefix testdata/npm`", err)
	}
	srv := chtest.Shared(t)
	everything := startEverythingHTTP(t, npm)
	dir := t.TempDir()
	base := fmt.Sprintf(`listen: 127.0.0.1:0
instance: console-e2e
servers:
  - name: everything
    transport: http
    url: %s
    required: true
    validate_arguments: false%%s
`, everything)
	auth := `auth:
  tokens:
    - {name: full, sha256: "${E2E_FULL_SHA}", principal: alice, tools: ["*"]}
    - {name: limited, sha256: "${E2E_LIMITED_SHA}", principal: bob, tools: ["everything.echo"]}
`
	recording := `
admin:
  token_sha256: ${E2E_ADMIN_SHA}
  trace_url: http://jaeger.invalid/trace/{trace_id}
recorder:
  clickhouse:
    addr: ["${E2E_CH_ADDR}"]
    database: ${E2E_CH_DB}
  spool:
    dir: ${E2E_SPOOL_DIR}
    fsync: interval
    fsync_interval: 50ms
  flush_interval: 100ms
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`
	cfgPath := filepath.Join(dir, "gw.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(base, "")+auth+recording)
	// The candidate withholds every answer of echo: an injected regression
	// (without auth: replay mock sends the recorded requests unauthenticated).
	candidate := filepath.Join(dir, "candidate.yaml")
	writeFile(t, candidate, fmt.Sprintf(base, "\n    tools:\n      echo:\n        output:\n          deny_patterns: [\"Echo: \"]"))

	adminToken := "admin-" + randAlnum(24)
	env := e2eEnv{Config: cfgPath, CHAddr: srv.Addr(), CHDB: chtest.Database(t, srv.Addr()), SpoolDir: t.TempDir(), RedactKey: randAlnum(32),
		FullToken: "tok-full-" + randAlnum(24), LimitedToken: "tok-limited-" + randAlnum(24)}
	env.Extra = []string{"E2E_ADMIN_SHA=" + sha256hex(adminToken)}
	gw := startGateway(t, env)
	gw.adminToken = adminToken

	alice := dial(t, gw.url, env.FullToken)
	bob := dial(t, gw.url, env.LimitedToken)
	if resp, _ := alice.callTool(t, "everything.echo", map[string]any{"message": "hello console"}); resp.Error != nil {
		t.Fatalf("echo: %+v", resp.Error)
	}
	okID := ""
	_, okID = alice.callTool(t, "everything.echo", map[string]any{"message": "replay me"})
	failResp, failID := alice.callTool(t, "everything.get-sum", map[string]any{"a": "not a number"})
	if failResp.Error == nil && !strings.Contains(string(failResp.Result), `"isError":true`) {
		t.Fatalf("get-sum with a bad argument succeeded: %s", failResp.Result)
	}
	if resp, _ := bob.callTool(t, "everything.get-sum", map[string]any{"a": 1, "b": 2}); resp.Error == nil {
		t.Fatalf("bob's get-sum was not denied: %s", resp.Result)
	}
	gw.waitWritten(t)

	// The replay run with the injected regression (exit 1: it regressed).
	out, stderr, code := runCLIEnv(t, env.list(), "replay", "mock", "--clickhouse", env.CHAddr, "--database", env.CHDB,
		"--request-id", okID, "--config", candidate)
	if code != 1 || !strings.Contains(stderr, "replay run") {
		t.Fatalf("replay mock against the candidate: exit %d, want 1 (regression) and a stored run\n%s\n%s", code, tail(out, 3000), tail(stderr, 3000))
	}

	shots := os.Getenv("MCPTRAIL_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(dir, "screenshots")
	}
	csvPath := filepath.Join(dir, "console-audit.csv")
	start := time.Now()
	cmd := exec.Command("node", filepath.Join(npm, "console-browser.mjs"))
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+gw.admin+"/console/", "CONSOLE_TOKEN="+adminToken, "CHROMIUM="+chromiumPath,
		"FAILED_ID="+failID, "FAILED_PRINCIPAL=alice", "AUDIT_CSV="+csvPath, "SCREENSHOTS="+shots,
		"AXE="+filepath.Join(npm, "node_modules/axe-core/axe.min.js"))
	var errb strings.Builder
	cmd.Stderr = &errb
	raw, runErr := cmd.Output()
	t.Logf("browser run: %s", time.Since(start).Round(time.Millisecond))
	var res consoleResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("console-browser.mjs printed %q (%v): %v\n%s", raw, runErr, err, tail(errb.String(), 3000))
	}
	for _, s := range res.Steps {
		t.Logf("browser: %s", s)
	}
	if res.Error != "" || runErr != nil {
		t.Fatalf("browser: %s (%v)\n%s", res.Error, runErr, tail(errb.String(), 3000))
	}
	for pageName, vs := range res.Violations {
		for _, v := range vs {
			t.Errorf("axe on %s: %s", pageName, v)
		}
	}
	for _, e := range res.CSPErrors {
		t.Errorf("CSP violation or console error: %s", e)
	}
	// Keyboard: Tab reaches the ID box, every filter, the live tail and the
	// call's link, in reading order.
	wantTabs := []string{"Skip to content", "Calls", "Audit", "Replay runs", "Health", "jump-id", "Open", "f-since", "f-until", "f-principal",
		"f-server", "f-tool", "f-outcome", "f-decision", "f-limit", "Filter", "live", failID}
	next := 0
	for _, got := range res.TabOrder {
		if next < len(wantTabs) && got == wantTabs[next] {
			next++
		}
	}
	if next != len(wantTabs) {
		t.Errorf("tab order %q does not reach %q (want in order %q)", res.TabOrder, wantTabs[next], wantTabs)
	}
	if len(res.Screenshots) < 6 {
		t.Errorf("screenshots %v, want one per page", res.Screenshots)
	}

	// The downloaded CSV is exactly what the CLI writes for the filter the
	// browser used (principal alice, since 1h).
	got, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	want, stderr, code := runCLI(t, "audit", "--clickhouse", env.CHAddr, "--database", env.CHDB, "--principal", "alice", "--since", "1h", "--format", "csv")
	if code != 0 {
		t.Fatalf("mcptrail audit: exit %d\n%s", code, stderr)
	}
	if string(got) != want {
		t.Errorf("console CSV download differs from `mcptrail audit --format csv`:\n%s\nwant\n%s", got, want)
	}
	if n := strings.Count(want, "\n"); n != 5 { // header, alice's initialize and three calls
		t.Errorf("audit CSV has %d lines, want 5 (header, alice's initialize and 3 calls):\n%s", n, want)
	}
	if os.Getenv("MCPTRAIL_UPDATE_DOCS") == "1" {
		b, err := os.ReadFile(filepath.Join(shots, "trace.png"))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, "../../testdata/docs/console-trace.png", string(b))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
