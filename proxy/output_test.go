package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// TestOutputFilters: server-everything's echo answers pass the output
// filters before the client sees them: a secret redacted (or the result
// blocked) by the recorder's redaction rules, a result over the size cap
// withheld, a deny pattern withholding; each filtered answer is marked in
// _meta and recorded, an unfiltered one passes unchanged and unmarked.
func TestOutputFilters(t *testing.T) {
	url := startEverythingHTTP(t)
	red, err := redact.New(redact.Config{Custom: []redact.Pattern{{Name: "employee_id", Regexp: `EMP-[0-9]{6}`}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, f config.OutputFilter) config.Server {
		return config.Server{Name: name, Transport: "http", URL: url, Timeout: 30 * time.Second,
			Tools: map[string]config.ToolSettings{"echo": {Output: f}}}
	}
	cfg := &config.Config{Servers: []config.Server{
		mk("redacting", config.OutputFilter{Redact: "redact"}),
		mk("blocking", config.OutputFilter{Redact: "block"}),
		mk("capped", config.OutputFilter{MaxBytes: 200}),
		mk("denying", config.OutputFilter{DenyPatterns: []string{`internal\.example\.com`}}),
	}}
	// The recorder's redactor as serve passes it: Options.Redactor (what
	// the recorder stores) stays the test's pass-through one.
	e := startGateway(t, cfg, func(o *proxy.Options) { o.OutputRedactor = red })
	gw := newRawClient(t, e.url+"/mcp", "{}")

	for _, tc := range []struct {
		name, server, message string
		isError               bool
		text, filter, rule    string
	}{
		{"redacted", "redacting", "id EMP-123456 here", false, "Echo: id ", "redact", "servers[0].tools.echo.output"},
		{"blocked", "blocking", "id EMP-123456 here", true, "contains 1 secret(s)", "block", "servers[1].tools.echo.output"},
		{"over the cap", "capped", strings.Repeat("x", 300), true, "over the cap of 200", "max_bytes", "servers[2].tools.echo.output"},
		{"deny pattern", "denying", "see https://internal.example.com/x", true, "matches servers[3].tools.echo.output.deny_patterns[0]", "deny_patterns[0]", "servers[3].tools.echo.output"},
		{"clean passes", "redacting", "nothing secret", false, "Echo: nothing secret", "", ""},
		{"under the cap", "capped", "short", false, "Echo: short", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, _ := json.Marshal(map[string]any{"name": tc.server + ".echo", "arguments": map[string]any{"message": tc.message}})
			resp := gw.do("tools/call", string(args))
			r := decodeToolResult(t, resp.Result)
			if r.IsError != tc.isError || len(r.Content) != 1 || !strings.Contains(r.Content[0].Text, tc.text) {
				t.Fatalf("result %s\nwant isError=%v and a text with %q", resp.Result, tc.isError, tc.text)
			}
			if strings.Contains(string(resp.Result), "EMP-123456") || strings.Contains(string(resp.Result), "internal.example.com") {
				t.Errorf("the client saw what the filter is for: %s", resp.Result)
			}
			var mark struct{ Filter, Rule string }
			if raw, ok := r.Meta[proxy.MetaFiltered]; ok {
				_ = json.Unmarshal(raw, &mark)
			}
			if mark.Filter != tc.filter || mark.Rule != tc.rule {
				t.Errorf("_meta %s = %+v, want filter %q rule %q", proxy.MetaFiltered, mark, tc.filter, tc.rule)
			}
			id := requestIDOf(t, r)
			var recorded, upstream bool
			for _, ev := range e.rec.byRequest(id) {
				if ev.Hop == recorder.HopAuth && ev.AuthDecision == "filtered" && ev.AuthRule == tc.rule+"."+tc.filter {
					recorded = true
				}
				upstream = upstream || ev.Hop == recorder.HopUpstream
			}
			if recorded != (tc.filter != "") || !upstream {
				t.Errorf("filter decision recorded = %v (want %v), upstream hop %v: %+v", recorded, tc.filter != "", upstream, e.rec.byRequest(id))
			}
		})
	}
}

// TestOutputRedactNeedsRedactor: output redaction without the recorder's
// rules fails New, naming the config key.
func TestOutputRedactNeedsRedactor(t *testing.T) {
	cfg := &config.Config{NamespaceSeparator: ".", Servers: []config.Server{{Name: "a", Command: "x",
		Tools: map[string]config.ToolSettings{"echo": {Output: config.OutputFilter{Redact: "block"}}}}}}
	_, err := proxy.New(proxy.Options{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "servers[0].tools.echo.output.redact") {
		t.Errorf("New = %v, want an error naming servers[0].tools.echo.output.redact", err)
	}
}
