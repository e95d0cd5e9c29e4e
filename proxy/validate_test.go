package proxy_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// toolResult is the part of a tools/call result the checks' tests read.
type toolResult struct {
	Content []struct {
		Text string `json:"text"`
	} `json:"content"`
	IsError bool                       `json:"isError"`
	Meta    map[string]json.RawMessage `json:"_meta"`
}

func decodeToolResult(t *testing.T, raw json.RawMessage) toolResult {
	t.Helper()
	var r toolResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("tool result %s: %v", raw, err)
	}
	return r
}

// requestIDOf is the gateway's request ID stamped on a result.
func requestIDOf(t *testing.T, r toolResult) string {
	t.Helper()
	var id string
	if err := json.Unmarshal(r.Meta[proxy.MetaRequestID], &id); err != nil || id == "" {
		t.Fatalf("result has no request ID in _meta: %v", r.Meta)
	}
	return id
}

// hops lists the hops recorded for a request.
func hops(e *env, id string) []recorder.Hop {
	var out []recorder.Hop
	for _, ev := range e.rec.byRequest(id) {
		out = append(out, ev.Hop)
	}
	return out
}

func hasHop(hs []recorder.Hop, h recorder.Hop) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// TestArgumentValidation: calls of server-everything's tools whose
// arguments its own inputSchema rejects are answered with a tool execution
// error naming the JSON pointer and keyword, and never reach the backend
// (no upstream hop); valid calls pass byte-identical; validation can be
// switched off per tool and per server.
func TestArgumentValidation(t *testing.T) {
	url := startEverythingHTTP(t)
	off := false
	server := config.Server{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second,
		Tools: map[string]config.ToolSettings{"echo": {ValidateArguments: &off}}}
	e := startGateway(t, &config.Config{Servers: []config.Server{server}})
	gw := newRawClient(t, e.url+"/mcp", "{}")
	direct := newRawClient(t, url, "{}")

	for _, tc := range []struct{ name, args, pointer, keyword string }{
		{"string for a number", `{"a":"one","b":2}`, "/a", "type"},
		{"missing property", `{"a":1}`, `""`, "required"},
		{"no arguments", ``, `""`, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := `{"name":"everything.get-sum"}`
			if tc.args != "" {
				params = `{"name":"everything.get-sum","arguments":` + tc.args + `}`
			}
			resp := gw.do("tools/call", params)
			if resp.Error != nil {
				t.Fatalf("got a JSON-RPC error, want a tool execution error: %+v", resp.Error)
			}
			r := decodeToolResult(t, resp.Result)
			if !r.IsError || len(r.Content) != 1 {
				t.Fatalf("want isError with one text: %s", resp.Result)
			}
			txt := r.Content[0].Text
			if !strings.Contains(txt, "at "+tc.pointer+": keyword "+tc.keyword) {
				t.Errorf("text %q does not name pointer %s and keyword %s", txt, tc.pointer, tc.keyword)
			}
			id := requestIDOf(t, r)
			hs := hops(e, id)
			if hasHop(hs, recorder.HopUpstream) {
				t.Errorf("the backend was called: hops %v", hs)
			}
			var auth *recorder.Event
			for _, ev := range e.rec.byRequest(id) {
				if ev.Hop == recorder.HopAuth {
					ev := ev
					auth = &ev
				}
			}
			if auth == nil || auth.AuthDecision != "denied" || auth.AuthRule != proxy.RuleSchema || auth.ErrorMessage != txt {
				t.Errorf("auth hop %+v, want denied by %s with the text", auth, proxy.RuleSchema)
			}
		})
	}

	t.Run("valid call passes byte-identical", func(t *testing.T) {
		want := direct.do("tools/call", `{"name":"get-sum","arguments":{"a":2,"b":3}}`).Result
		got := gw.do("tools/call", `{"name":"everything.get-sum","arguments":{"a":2,"b":3}}`).Result
		// The gateway appends its _meta stamp and changes nothing else.
		if !bytes.HasPrefix(got, want[:len(want)-1]) {
			t.Errorf("through the gateway\n  got  %s\n  want %s + _meta", got, want)
		}
		if hs := hops(e, requestIDOf(t, decodeToolResult(t, got))); !hasHop(hs, recorder.HopUpstream) {
			t.Errorf("valid call did not reach the backend: %v", hs)
		}
	})

	t.Run("switched off per tool", func(t *testing.T) {
		// echo's schema requires "message"; with validation off the
		// backend decides (and reports its own error).
		resp := gw.do("tools/call", `{"name":"everything.echo","arguments":{}}`)
		var id string
		if resp.Error != nil {
			var d map[string]string
			_ = json.Unmarshal(resp.Error.Data, &d)
			id = d["request_id"]
		} else {
			r := decodeToolResult(t, resp.Result)
			if strings.Contains(r.Content[0].Text, "mcptrail: invalid arguments") {
				t.Fatalf("echo was validated with validate_arguments off: %s", resp.Result)
			}
			id = requestIDOf(t, r)
		}
		if hs := hops(e, id); id == "" || !hasHop(hs, recorder.HopUpstream) {
			t.Errorf("echo with validation off did not reach the backend (id %q): %v %s", id, hs, resp.Result)
		}
	})
}

// TestArgumentRules: CEL argument rules refuse calls of server-everything's
// tools before they reach it (no upstream hop), recorded as denied by the
// rule's config key; calls the rules allow pass.
func TestArgumentRules(t *testing.T) {
	url := startEverythingHTTP(t)
	server := config.Server{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second,
		Tools: map[string]config.ToolSettings{
			"echo":    {ArgumentRules: []config.ArgumentRule{{Deny: `args.message.contains("forbidden")`, Message: "no forbidden words"}}},
			"get-sum": {ArgumentRules: []config.ArgumentRule{{Allow: `args.a < 100 && principal == "anonymous" && roles.size() == 0 && tool == "get-sum"`}}},
		}}
	e := startGateway(t, &config.Config{Servers: []config.Server{server}})
	gw := newRawClient(t, e.url+"/mcp", "{}")

	for _, tc := range []struct {
		name, params, rule, text string
		refused                  bool
	}{
		{"deny matches", `{"name":"everything.echo","arguments":{"message":"a forbidden word"}}`, "servers[0].tools.echo.argument_rules[0]", "no forbidden words", true},
		{"deny does not match", `{"name":"everything.echo","arguments":{"message":"fine"}}`, "", "Echo: fine", false},
		{"allow fails", `{"name":"everything.get-sum","arguments":{"a":500,"b":1}}`, "servers[0].tools.get-sum.argument_rules[0]", "not allowed by rule servers[0].tools.get-sum.argument_rules[0]", true},
		{"allow holds", `{"name":"everything.get-sum","arguments":{"a":5,"b":1}}`, "", "6", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := gw.do("tools/call", tc.params)
			r := decodeToolResult(t, resp.Result)
			if r.IsError != tc.refused || len(r.Content) == 0 || !strings.Contains(r.Content[0].Text, tc.text) {
				t.Fatalf("result %s, want isError=%v and text with %q", resp.Result, tc.refused, tc.text)
			}
			id := requestIDOf(t, r)
			if hs := hops(e, id); hasHop(hs, recorder.HopUpstream) == tc.refused {
				t.Errorf("upstream hop present = %v, want %v: %v", hasHop(hs, recorder.HopUpstream), !tc.refused, hs)
			}
			if !tc.refused {
				return
			}
			var found bool
			for _, ev := range e.rec.byRequest(id) {
				if ev.Hop == recorder.HopAuth && ev.AuthDecision == "denied" && ev.AuthRule == tc.rule && strings.Contains(ev.ErrorMessage, tc.text) {
					found = true
				}
			}
			if !found {
				t.Errorf("no auth hop denied by %s: %+v", tc.rule, e.rec.byRequest(id))
			}
		})
	}
}
