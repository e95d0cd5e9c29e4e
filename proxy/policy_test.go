package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/sse"
	"github.com/mcptrail/mcptrail/recorder"
)

// TestEveryMethodIsAuthorized: prompts, resources, completions and unknown
// methods are decided by the token's rules like tools (issue 7, item 2),
// and every list shows exactly what the matching call would be allowed.
func TestEveryMethodIsAuthorized(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Auth.Tokens = []config.Token{
		{Name: "tools-only", SHA256: sha("tools-token"), Principal: "tess", Tools: []string{"*"}},
		{Name: "scoped", SHA256: sha("scoped-token"), Principal: "sam", Tools: []string{"alpha.echo"},
			Prompts: []string{"alpha.greet"}, Resources: []string{"alpha:test://static/1"},
			Completions: []string{"alpha.greet"}, Methods: []string{"custom/*"}},
	}
	e := startGateway(t, cfg)
	sessions := map[string]map[string]string{}
	for _, tok := range []string{"tools-token", "scoped-token"} {
		hdr := map[string]string{"Authorization": "Bearer " + tok}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		sessions[tok] = hdr
	}
	id := 100
	var reqID string // of the last call, as the gateway recorded it
	call := func(tok, method, params string) rpcResp {
		t.Helper()
		id++
		h := map[string]string{"X-Request-Id": "req-" + strconv.Itoa(id)}
		for k, v := range sessions[tok] {
			h[k] = v
		}
		resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"`+method+`","params":`+params+`}`, h)
		reqID = resp.Header.Get("X-Request-Id")
		return decodeResp(t, b)
	}
	const (
		alphaStatic1 = `{"uri":"mcptrail://alpha/test://static/1"}`
		betaStatic1  = `{"uri":"mcptrail://beta/test://static/1"}`
		alphaStatic2 = `{"uri":"mcptrail://alpha/test://static/2"}`
	)
	tests := []struct {
		token, method, params string
		wantRule              string // the recorded rule of a denial; "" when allowed
	}{
		{"tools-token", "tools/call", `{"name":"beta.echo","arguments":{"message":"x"}}`, ""},
		{"tools-token", "prompts/get", `{"name":"alpha.greet","arguments":{"name":"x"}}`, "prompts:default-deny"},
		{"tools-token", "resources/read", alphaStatic1, "resources:default-deny"},
		{"tools-token", "resources/subscribe", alphaStatic1, "resources:default-deny"},
		{"tools-token", "completion/complete", `{"ref":{"type":"ref/prompt","name":"alpha.greet"},"argument":{"name":"name","value":""}}`, "completions:default-deny"},
		{"tools-token", "custom/thing", `{}`, "methods:default-deny"},
		{"tools-token", "tasks/list", `{}`, "methods:default-deny"},
		{"scoped-token", "tools/call", `{"name":"alpha.echo","arguments":{"message":"x"}}`, ""},
		{"scoped-token", "tools/call", `{"name":"alpha.add","arguments":{"a":1,"b":2}}`, "tools:default-deny"},
		{"scoped-token", "prompts/get", `{"name":"alpha.greet","arguments":{"name":"x"}}`, ""},
		{"scoped-token", "prompts/get", `{"name":"beta.greet","arguments":{"name":"x"}}`, "prompts:default-deny"},
		{"scoped-token", "resources/read", alphaStatic1, ""},
		{"scoped-token", "resources/read", alphaStatic2, "resources:default-deny"},
		{"scoped-token", "resources/read", betaStatic1, "resources:default-deny"},
		{"scoped-token", "resources/read", `{"uri":"mcptrail://alpha/test://static/1/../2"}`, "resources:default-deny"},
		{"scoped-token", "resources/subscribe", betaStatic1, "resources:default-deny"},
		{"scoped-token", "completion/complete", `{"ref":{"type":"ref/prompt","name":"beta.greet"},"argument":{"name":"name","value":""}}`, "completions:default-deny"},
		// The type says which field the backend reads: a resource
		// reference with an allowed prompt name is about the resource.
		{"scoped-token", "completion/complete", `{"ref":{"type":"ref/resource","name":"alpha.greet","uri":"mcptrail://beta/test://static/1"},"argument":{"name":"x","value":""}}`, "completions:default-deny"},
		{"scoped-token", "tasks/list", `{}`, "methods:default-deny"},
		// A methods pattern does not open a backend the token may not use.
		{"scoped-token", "custom/thing", `{"name":"beta.echo"}`, "methods:server-not-allowed"},
	}
	for _, tt := range tests {
		r := call(tt.token, tt.method, tt.params)
		if tt.wantRule == "" {
			if r.Error != nil {
				t.Errorf("%s %s %s: %d %s, want allowed", tt.token, tt.method, tt.params, r.Error.Code, r.Error.Message)
			}
			continue
		}
		if r.Error == nil || r.Error.Code != -32003 || !strings.Contains(r.Error.Message, "not allowed") {
			t.Errorf("%s %s %s: %+v %s, want a -32003 denial", tt.token, tt.method, tt.params, r.Error, r.Result)
			continue
		}
		var rule string
		for _, ev := range e.rec.byRequest(reqID) {
			if ev.Hop == recorder.HopAuth && ev.AuthDecision == "denied" {
				rule = ev.AuthRule
			}
			if ev.Hop == recorder.HopUpstream {
				t.Errorf("%s %s %s: denied but relayed upstream", tt.token, tt.method, tt.params)
			}
		}
		if rule != tt.wantRule {
			t.Errorf("%s %s %s: recorded rule %q, want %q", tt.token, tt.method, tt.params, rule, tt.wantRule)
		}
	}

	// Lists show what the calls allow, and nothing else.
	lists := []struct {
		token, method, field, key string
		want                      []string
	}{
		{"tools-token", "prompts/list", "prompts", "name", nil},
		{"tools-token", "resources/list", "resources", "uri", nil},
		{"tools-token", "resources/templates/list", "resourceTemplates", "uriTemplate", nil},
		{"scoped-token", "tools/list", "tools", "name", []string{"alpha.echo"}},
		{"scoped-token", "prompts/list", "prompts", "name", []string{"alpha.greet"}},
		{"scoped-token", "resources/list", "resources", "uri", []string{"mcptrail://alpha/test://static/1"}},
	}
	for _, l := range lists {
		r := call(l.token, l.method, `{}`)
		if r.Error != nil {
			t.Errorf("%s %s: %+v", l.token, l.method, r.Error)
			continue
		}
		var page map[string][]map[string]any
		_ = json.Unmarshal(r.Result, &page)
		var got []string
		for _, it := range page[l.field] {
			got = append(got, it[l.key].(string))
		}
		if !slices.Equal(got, l.want) {
			t.Errorf("%s %s = %q, want %q", l.token, l.method, got, l.want)
		}
	}
}

// TestRequestIDsCannotBeBorrowed: a request ID a client chooses (header or
// _meta) is scoped to its principal, so another principal reusing it lands
// in a different request; an unauthenticated request is never recorded
// under the client's ID (issue 7, item 4).
func TestRequestIDsCannotBeBorrowed(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Auth.Tokens = []config.Token{
		{Name: "alice", SHA256: sha("alice-token"), Principal: "alice", Tools: []string{"*"}},
		{Name: "bob", SHA256: sha("bob-token"), Principal: "bob", Tools: []string{"*"}},
	}
	e := startGateway(t, cfg)
	hdr := map[string]map[string]string{}
	for _, who := range []string{"alice", "bob"} {
		h := map[string]string{"Authorization": "Bearer " + who + "-token"}
		h["Mcp-Session-Id"] = initSession(t, e.url, h)
		hdr[who] = h
	}
	send := func(who, clientID string, inMeta bool) string {
		h := map[string]string{}
		for k, v := range hdr[who] {
			h[k] = v
		}
		meta := ""
		if inMeta {
			meta = `,"_meta":{"mcptrail.dev/request-id":"` + clientID + `"}`
		} else {
			h["X-Request-Id"] = clientID
		}
		resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"`+who+`"}`+meta+`}}`, h)
		if r := decodeResp(t, b); r.Error != nil {
			t.Fatalf("%s: %+v", who, r.Error)
		}
		return resp.Header.Get("X-Request-Id")
	}
	for _, inMeta := range []bool{false, true} {
		shared := "shared-" + strconv.FormatBool(inMeta)
		a, b := send("alice", shared, inMeta), send("bob", shared, inMeta)
		if a == b || !strings.HasSuffix(a, ":"+shared) || !strings.HasSuffix(b, ":"+shared) {
			t.Errorf("meta=%v: alice got request ID %q, bob %q; want distinct IDs ending in :%s", inMeta, a, b, shared)
		}
		for _, id := range []string{a, b, shared} {
			principals := map[string]bool{}
			for _, ev := range e.rec.byRequest(id) {
				if ev.Principal != "" {
					principals[ev.Principal] = true
				}
			}
			if len(principals) > 1 {
				t.Errorf("meta=%v: request %s has events of %v: one principal borrowed another's ID", inMeta, id, principals)
			}
		}
		if n := len(e.rec.byRequest(shared)); n != 0 {
			t.Errorf("meta=%v: %d events recorded under the bare client ID %s", inMeta, n, shared)
		}
	}
	// Unauthenticated: not recorded under the ID it chose.
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Authorization": "Bearer wrong", "X-Request-Id": "victim-id"})
	if resp.StatusCode != 401 {
		t.Fatalf("wrong token: status %d, want 401", resp.StatusCode)
	}
	if n := len(e.rec.byRequest("victim-id")); n != 0 {
		t.Errorf("an unauthenticated request was recorded under the client's ID victim-id (%d events)", n)
	}
}

// TestListenSubscribesOnlyAllowedResources: a 2026 client's
// subscriptions/listen subscribes the backend only to resources the token
// may subscribe to; a denied URI is left out of the acknowledgement and
// recorded as a denial with its rule.
func TestListenSubscribesOnlyAllowedResources(t *testing.T) {
	url := startEverythingHTTP(t)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "tools-only", SHA256: sha("tools-token"), Tools: []string{"*"}},
			{Name: "reader", SHA256: sha("reader-token"), Tools: []string{"*"}, Resources: []string{"everything:demo://resource/static/*"}},
		}},
	}
	e := startGateway(t, cfg)
	const uri = "demo://resource/static/document/architecture.md"
	for _, tt := range []struct {
		token string
		want  bool
	}{{"tools-token", false}, {"reader-token", true}} {
		body := modernBody(0, "subscriptions/listen", map[string]any{"notifications": map[string]any{
			"toolsListChanged": true, "resourceSubscriptions": []string{uri}}}, nil)
		req, _ := http.NewRequest(http.MethodPost, e.url+"/mcp", strings.NewReader(body))
		for k, v := range modernHeaders("subscriptions/listen", "") {
			req.Header.Set(k, v)
		}
		req.Header.Set("Authorization", "Bearer "+tt.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		reqID := resp.Header.Get("X-Request-Id")
		var ack string
		_, _ = sse.Read(resp.Body, 1<<20, func(_, data []byte) bool { ack = string(data); return false })
		cancel()
		resp.Body.Close()
		if !strings.Contains(ack, "notifications/subscriptions/acknowledged") {
			t.Fatalf("%s: first message %q, want the acknowledgement", tt.token, ack)
		}
		if got := strings.Contains(ack, uri); got != tt.want {
			t.Errorf("%s: acknowledgement %s names %s = %v, want %v", tt.token, ack, uri, got, tt.want)
		}
		var rule string
		var upstream int
		for _, ev := range e.rec.byRequest(reqID) {
			if ev.Hop == recorder.HopAuth && ev.AuthDecision == "denied" {
				rule = ev.AuthRule
			}
			if ev.Hop == recorder.HopUpstream && ev.Method == "resources/subscribe" {
				upstream++
			}
		}
		if !tt.want && (rule != "resources:default-deny" || upstream != 0) {
			t.Errorf("%s: denied subscription recorded with rule %q and %d upstream subscribes; want resources:default-deny and none", tt.token, rule, upstream)
		}
		if tt.want && upstream != 1 {
			t.Errorf("%s: %d upstream resources/subscribe, want 1", tt.token, upstream)
		}
	}
}

// TestSetLevelReachesOnlyUsableBackends: logging/setLevel changes the log
// level only of the backends the principal may use.
func TestSetLevelReachesOnlyUsableBackends(t *testing.T) {
	url := startEverythingHTTP(t)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}, stdioServer("beta", "v1")},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "beta-only", SHA256: sha("beta-token"), Tools: []string{"beta.*"}},
			{Name: "everything", SHA256: sha("everything-token"), Tools: []string{"everything.echo"}},
		}},
	}
	e := startGateway(t, cfg)
	for _, tt := range []struct {
		token string
		want  int // upstream logging/setLevel legs
	}{{"beta-token", 0}, {"everything-token", 1}} {
		hdr := map[string]string{"Authorization": "Bearer " + tt.token}
		hdr["Mcp-Session-Id"] = initSession(t, e.url, hdr)
		resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}`, hdr)
		if r := decodeResp(t, b); r.Error != nil {
			t.Fatalf("%s: logging/setLevel: %+v", tt.token, r.Error)
		}
		legs := 0
		for _, ev := range e.rec.byRequest(resp.Header.Get("X-Request-Id")) {
			if ev.Hop == recorder.HopUpstream {
				legs++
				if ev.Server != "everything" {
					t.Errorf("%s: setLevel leg to %s", tt.token, ev.Server)
				}
			}
		}
		if legs != tt.want {
			t.Errorf("%s: %d upstream logging/setLevel legs, want %d", tt.token, legs, tt.want)
		}
	}
}

// TestInstructionsOnlyOfUsableBackends: initialize and server/discover carry
// the instructions of the backends the principal may use, never those of a
// backend its rules keep it from (they name that backend's tools).
func TestInstructionsOnlyOfUsableBackends(t *testing.T) {
	url := startEverythingHTTP(t)
	cfg := &config.Config{
		Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}, stdioServer("beta", "v1")},
		Auth: config.Auth{Tokens: []config.Token{
			{Name: "beta-only", SHA256: sha("beta-token"), Tools: []string{"beta.*"}},
			{Name: "everything", SHA256: sha("everything-token"), Tools: []string{"everything.echo"}},
		}},
	}
	e := startGateway(t, cfg)
	for _, tt := range []struct {
		token string
		want  bool // sees server-everything's instructions
	}{{"beta-token", false}, {"everything-token", true}} {
		hdr := map[string]string{"Authorization": "Bearer " + tt.token}
		for _, req := range []struct{ name, body, version string }{
			{"initialize", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`, ""},
			{"server/discover", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}`, "2026-07-28"},
		} {
			h := map[string]string{"Authorization": hdr["Authorization"]}
			if req.version != "" {
				h["MCP-Protocol-Version"] = req.version
				h["Mcp-Method"] = req.name
			}
			_, b := post(t, e.url, req.body, h)
			r := decodeResp(t, b)
			if r.Error != nil {
				t.Fatalf("%s: %s: %+v", tt.token, req.name, r.Error)
			}
			if got := strings.Contains(string(r.Result), "Everything Server"); got != tt.want {
				t.Errorf("%s: %s shows server-everything's instructions = %v, want %v: %.300s", tt.token, req.name, got, tt.want, r.Result)
			}
		}
	}
}
