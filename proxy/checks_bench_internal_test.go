package proxy

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// BenchmarkChecksChain is the whole policy chain of one tools/call with
// every check on: the token rules, argument validation against the tool's
// compiled inputSchema, two CEL argument rules, and the output filters
// (redaction with the recorder's rules, size cap, a deny pattern) over a
// small result, and tool pinning (on_change: hide, another tool refused,
// so the check looks the tool up). Goal (issue 11): ≤ 10 µs of CPU per call.
func BenchmarkChecksChain(b *testing.B) {
	red, err := redact.New(redact.Config{Patterns: []string{"secrets", "pii"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &config.Config{NamespaceSeparator: ".", Servers: []config.Server{{Name: "files", Command: "files-server",
		Tools: map[string]config.ToolSettings{"read": {
			ArgumentRules: []config.ArgumentRule{
				{Deny: `!args.path.startsWith("/srv/")`},
				{Allow: `"admin" in roles || args.limit <= 100`},
			},
			Output: config.OutputFilter{Redact: config.OutputRedactRedact, MaxBytes: 1 << 20, DenyPatterns: []string{`internal\.example\.com`}},
		}}}},
		Auth:    config.Auth{Tokens: []config.Token{{Name: "bench", SHA256: auth.HashToken("bench-secret"), Tools: []string{"files.*"}}}},
		Pinning: config.Pinning{OnChange: config.PinningHide},
	}
	g, err := New(Options{Config: cfg, Redactor: red})
	if err != nil {
		b.Fatal(err)
	}
	snap := &backendSnapshot{}
	snap.lists[listTools] = []json.RawMessage{json.RawMessage(`{"name":"read","inputSchema":{"type":"object",
		"properties":{"path":{"type":"string","minLength":1},"limit":{"type":"integer","minimum":1,"maximum":1000}},
		"required":["path"],"additionalProperties":false}}`)}
	g.catalog.Store(buildCatalog([]string{"files"}, map[string]*backendSnapshot{"files": snap}, ".", map[string]string{"files": "files"}))
	g.pins.state.Store(&pinState{tools: map[toolKey]pinVerdict{{"files", "write"}: {RulePinChanged, "changed"}}})
	princ, err := g.ps().auth.Authenticate("Bearer bench-secret")
	if err != nil {
		b.Fatal(err)
	}
	params, _ := jsonrpc.ParseObject(json.RawMessage(`{"name":"files.read","arguments":{"path":"/srv/reports/q4.txt","limit":20}}`))
	result := json.RawMessage(`{"content":[{"type":"text","text":"quarterly report: revenue up 4%, see the attached figures for details"}]}`)
	ctx := context.Background()
	rt := nameRoute{server: "files", name: "read"}
	newCall := func() *call {
		return &call{g: g, ps: g.ps(), princ: princ, params: params, target: "files.read", msg: jsonrpc.Message{Method: "tools/call"}}
	}
	steps := []struct {
		name string
		run  func(c *call)
	}{
		{"tokens+pinning", func(*call) {
			if d := g.ps().decide(ctx, &PolicyRequest{Principal: princ, Method: "tools/call", Kind: auth.Tools, Target: "files.read", Server: "files"}); d.Deny {
				b.Fatalf("denied: %+v", d)
			}
		}},
		{"schema", func(c *call) {
			if res, ok := c.validateArguments(ctx, rt); !ok {
				b.Fatalf("invalid: %s", res)
			}
		}},
		{"cel", func(c *call) {
			if res, ok := c.checkArgumentRules(ctx, rt); !ok {
				b.Fatalf("refused: %s", res)
			}
		}},
		{"output", func(c *call) {
			if m := c.filterOutput(ctx, rt, jsonrpc.Message{Result: result}); string(m.Result) != string(result) {
				b.Fatalf("filtered: %s", m.Result)
			}
		}},
	}
	for _, st := range steps {
		b.Run(st.name, func(b *testing.B) {
			b.ReportAllocs()
			t0 := cpuTime(b)
			for b.Loop() {
				st.run(newCall())
			}
			reportCPU(b, t0)
		})
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		t0 := cpuTime(b)
		for b.Loop() {
			c := newCall()
			for _, st := range steps {
				st.run(c)
			}
		}
		reportCPU(b, t0)
	})
}

// cpuTime is the process's CPU time (user + system): on a loaded machine
// ns/op counts time spent waiting for a core; cpu-ns/op does not.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, t0 time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-t0)/float64(b.N), "cpu-ns/op")
}
