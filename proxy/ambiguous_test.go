package proxy_test

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// echoOnly runs a gateway in front of one testbackend ("alpha", whose
// requests tb records) with one token that may call alpha.echo only.
func echoOnly(t testing.TB) (e *env, tb *testbackend.Backend, hdr map[string]string) {
	tb = testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second}},
		Auth:    config.Auth{Tokens: []config.Token{{Name: "echo-only", SHA256: sha("echo-token"), Principal: "eve", Tools: []string{"alpha.echo"}}}},
	}
	e = startGateway(t, cfg)
	hdr = map[string]string{"Authorization": "Bearer echo-token"}
	hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
	return e, tb, hdr
}

// ambiguousCalls try to make the backend run "add" while the gateway
// authorizes "echo" (issue 7, item 1).
var ambiguousCalls = []string{
	`{"name":"alpha.echo","name":"alpha.add","arguments":{"a":1,"b":2,"message":"x"}}`,
	`{"name":"alpha.echo","n\u0061me":"alpha.add","arguments":{"a":1,"b":2,"message":"x"}}`,
	`{"n\u0061me":"alpha.echo","name":"alpha.add","arguments":{"a":1,"b":2,"message":"x"}}`,
	`{"name":"alpha.echo","NAME":"alpha.add","arguments":{"a":1,"b":2,"message":"x"}}`,
	`{"name":"alpha.echo","Name":"add","arguments":{"a":1,"b":2,"message":"x"}}`,
	`{"Name":"alpha.add","arguments":{"a":1,"b":2}}`,
	`{"name":"alpha.echo","arguments":{"message":"x"},"_meta":{"progressToken":1,"progressToken":"mcptrail-1"}}`,
	`{"name":"alpha.echo","arguments":{"message":"x"},"_meta":{"PROGRESSTOKEN":"mcptrail-1"}}`,
}

func TestAmbiguousKeysAreRefusedBeforeRouting(t *testing.T) {
	e, tb, hdr := echoOnly(t)
	for i, params := range ambiguousCalls {
		body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(i+10) + `,"method":"tools/call","params":` + params + `}`
		resp, b := post(t, e.url, body, hdr)
		r := decodeResp(t, b)
		if r.Error == nil || r.Error.Code != -32600 {
			t.Errorf("tools/call %s: status %d, %s; want a -32600 error", params, resp.StatusCode, b)
		}
	}
	// The envelope too: a second "method" must not turn a ping into a call.
	for i, body := range []string{
		`{"jsonrpc":"2.0","id":100,"method":"ping","method":"tools/call","params":{"name":"alpha.add","arguments":{"a":1,"b":2}}}`,
		`{"jsonrpc":"2.0","id":101,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}},"params":{"name":"alpha.add","arguments":{"a":1,"b":2}}}`,
		`{"jsonrpc":"2.0","id":102,"m\u0065thod":"tools/call","method":"ping","params":{"name":"alpha.add","arguments":{"a":1,"b":2}}}`,
	} {
		resp, b := post(t, e.url, body, hdr)
		if r := decodeResp(t, b); r.Error == nil || r.Error.Code != -32600 {
			t.Errorf("envelope %d %s: status %d, %s; want a -32600 error", i, body, resp.StatusCode, b)
		}
	}
	for _, s := range tb.Seen() {
		if s.Method == "tools/call" {
			t.Errorf("backend received tools/call %s (params %s): an ambiguous call was relayed", s.Tool, s.Params)
		}
	}
}

// FuzzAuthorizedNameIsExecuted: whatever params a client sends, the tool the
// backend runs is the tool the gateway authorized and recorded. The token
// may call alpha.echo only, so the backend must never see another tool, and
// every relayed call's recorded target is what the backend received.
func FuzzAuthorizedNameIsExecuted(f *testing.F) {
	const plainEcho = `{"name":"alpha.echo","arguments":{"message":"hi"}}`
	for _, p := range ambiguousCalls {
		f.Add(p)
	}
	f.Add(plainEcho)
	f.Add(`{"n\u0061me":"alpha.echo","arguments":{"message":"hi"}}`)
	f.Add(`{"name":"alpha.\u0065cho","arguments":{"message":"hi"}}`)
	f.Add(`{"name":"alpha.add","arguments":{"a":1,"b":2}}`)
	f.Add(`{"name":"alpha.echo\u0000","arguments":{"message":"hi"}}`)
	f.Add(`{"name":"alpha.echo","arguments":{"name":"add","message":"hi"}}`)
	e, tb, hdr := echoOnly(f)
	var id atomic.Int64
	f.Fuzz(func(t *testing.T, params string) {
		if !json.Valid([]byte(params)) || !strings.HasPrefix(strings.TrimSpace(params), "{") {
			return
		}
		before := len(tb.Seen())
		n := id.Add(1)
		h := map[string]string{"X-Request-Id": "fuzz-" + strconv.FormatInt(n, 10)}
		for k, v := range hdr {
			h[k] = v
		}
		resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":`+strconv.FormatInt(n, 10)+`,"method":"tools/call","params":`+params+`}`, h)
		seen := tb.Seen()[before:]
		var upstream []recorder.Event
		// The client's ID comes back scoped to its principal.
		for _, ev := range e.rec.byRequest(resp.Header.Get("X-Request-Id")) {
			if ev.Hop == recorder.HopUpstream {
				upstream = append(upstream, ev)
			}
		}
		if params == plainEcho && (len(seen) != 1 || seen[0].Tool != "echo") {
			t.Fatalf("the plain call %s reached the backend as %+v, want one echo", params, seen)
		}
		for _, s := range seen {
			if s.Method != "tools/call" {
				continue
			}
			if s.Tool != "echo" {
				t.Fatalf("params %s: the backend ran %q (params %s); the token may call alpha.echo only", params, s.Tool, s.Params)
			}
			if len(upstream) != 1 || upstream[0].Target != "alpha."+s.Tool || upstream[0].AuthDecision != "allowed" {
				t.Fatalf("params %s: the backend ran %q but the gateway recorded %+v", params, s.Tool, upstream)
			}
		}
	})
}

// TestRelayedNameIsTheAuthorizedOne: a name the gateway decodes differently
// from a backend (a lone surrogate escape: U+FFFD here, kept as is by
// JavaScript) is relayed as the name the gateway authorized, also for a
// server mounted without a namespace, where the names are equal.
func TestRelayedNameIsTheAuthorizedOne(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	t.Cleanup(hs.Close)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second, NoNamespace: true}},
		Auth:    config.Auth{Tokens: []config.Token{{Name: "t", SHA256: sha("t-token"), Tools: []string{"alpha.echo*"}}}},
	}
	e := startGateway(t, cfg)
	hdr := map[string]string{"Authorization": "Bearer t-token"}
	hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
	post(t, e.url, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo\ud800","arguments":{"message":"x"}}}`, hdr)
	calls := 0
	for _, s := range tb.Seen() {
		if s.Method != "tools/call" {
			continue
		}
		calls++
		if strings.Contains(strings.ToLower(string(s.Params)), `\ud800`) {
			t.Errorf("backend received params %s: the raw escape, not the name the gateway authorized (echo\uFFFD)", s.Params)
		}
	}
	if calls != 1 {
		t.Errorf("backend saw %d tools/call, want 1", calls)
	}
}
