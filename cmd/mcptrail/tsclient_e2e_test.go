package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// npmDir is where `make test` installs the pinned Node MCP peers.
func npmDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../testdata/npm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/@modelcontextprotocol/sdk")); err != nil {
		t.Fatalf("the Node MCP peers are not installed (%v): run `make test` or `npm ci --prefix testdata/npm`", err)
	}
	return dir
}

// startEverythingHTTP runs server-everything's streamable HTTP transport.
func startEverythingHTTP(t *testing.T, npm string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("node", filepath.Join(npm, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server-everything did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr + "/mcp"
}

// clientResult is what client.mjs prints.
type clientResult struct {
	OK     bool                       `json:"ok"`
	Failed []string                   `json:"failed"`
	Steps  map[string]json.RawMessage `json:"steps"`
}

func runClient(t *testing.T, npm string, args ...string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(npm, "client.mjs")}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client.mjs %v printed %q: %v\nstderr: %s", args, out, err, tail(stderr.String(), 2000))
	}
	return r
}

// TestTypeScriptClientThroughGateway runs the TypeScript SDK's client
// through the real mcptrail binary in front of server-everything, over
// stdio and streamable HTTP backends, with the client on streamable HTTP,
// on legacy SSE, and as a stdio-only client that launches `mcptrail stdio`.
// Every step of the scenario (tools incl. progress, errors, images,
// resources, prompts, sampling, elicitation) must pass.
func TestTypeScriptClientThroughGateway(t *testing.T) {
	npm := npmDir(t)
	js := filepath.Join(npm, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	httpURL := startEverythingHTTP(t, npm)
	base := serveYAML(t, fmt.Sprintf(`servers:
  - name: everything
    transport: stdio
    command: node
    args: [%q, stdio]
    required: true
  - name: everything_http
    transport: http
    url: %s
    required: true
recorder:
  enabled: false
`, js, httpURL))

	cases := []struct {
		name string
		args []string
	}{
		{"http client, stdio backend", []string{"--url", base + "/mcp", "--scenario", "everything", "--prefix", "everything."}},
		{"http client, http backend", []string{"--url", base + "/mcp", "--scenario", "everything", "--prefix", "everything_http."}},
		{"sse client, stdio backend", []string{"--url", base + "/sse", "--transport", "sse", "--scenario", "everything", "--prefix", "everything."}},
		{"stdio-only client via mcptrail stdio", []string{"--transport", "stdio", "--cmd", mcptrailBin(t) + " stdio --url " + base + "/mcp", "--scenario", "everything", "--prefix", "everything."}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runClient(t, npm, tc.args...)
			if !r.OK {
				for _, name := range r.Failed {
					t.Errorf("step %s failed: %s", name, r.Steps[name])
				}
				if len(r.Failed) == 0 {
					t.Errorf("client reported not ok: %+v", r)
				}
			}
			if len(r.Steps) < 10 {
				t.Errorf("only %d steps ran: %v", len(r.Steps), r.Steps)
			}
		})
	}
}

// volatileStep matches what varies between runs of the same client on the
// same server: clock times, the weather get-structured-content makes up,
// and how many progress callbacks the TypeScript SDK itself delivered (it
// can drop the last one when the result arrives; progressCount counts
// them on the wire).
var volatileStep = regexp.MustCompile(`\d{1,2}:\d{2}:\d{2}\s?[AP]M|\\?"(temperature|humidity)\\?":\d+|\\?"conditions\\?":\\?"[^"\\]*\\?"|"sdkOnprogressCalls":\d+`)

// TestTypeScriptClientSameAsDirect: the TypeScript SDK's client observes in
// every step of its scenario exactly what it observes directly, through a
// gateway with server-everything mounted without a namespace, over
// streamable HTTP and through `mcptrail stdio`.
func TestTypeScriptClientSameAsDirect(t *testing.T) {
	npm := npmDir(t)
	url := startEverythingHTTP(t, npm)
	base := serveYAML(t, everythingOnly(url))
	direct := runClient(t, npm, "--url", url, "--scenario", "everything")
	if !direct.OK || len(direct.Steps) < 10 {
		t.Fatalf("directly, the client failed steps %v (%d steps)", direct.Failed, len(direct.Steps))
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"streamable HTTP", []string{"--url", base + "/mcp", "--scenario", "everything"}},
		{"mcptrail stdio", []string{"--transport", "stdio", "--cmd", mcptrailBin(t) + " stdio --url " + base + "/mcp", "--scenario", "everything"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runClient(t, npm, tc.args...)
			for step, w := range direct.Steps {
				if step == "invalidArguments" {
					// The gateway's own argument validation answers (issue
					// 11.4): a tool error of its own, by design.
					if g := string(r.Steps[step]); !strings.Contains(g, `"isError":true`) || !strings.Contains(g, "mcptrail: invalid arguments") {
						t.Errorf("invalidArguments through the gateway = %.300s, want the gateway's tool error", g)
					}
					continue
				}
				g, w := volatileStep.ReplaceAllString(string(r.Steps[step]), "<v>"), volatileStep.ReplaceAllString(string(w), "<v>")
				if g != w {
					t.Errorf("step %s through the gateway\n  got  %.500s\n  want %.500s", step, g, w)
				}
			}
			if len(r.Steps) != len(direct.Steps) {
				t.Errorf("%d steps through the gateway, %d directly", len(r.Steps), len(direct.Steps))
			}
		})
	}
}
