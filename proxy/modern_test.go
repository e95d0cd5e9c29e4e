package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/sse"
	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder"
)

// modernBody builds a 2026-07-28 request: version, client and capabilities
// in params._meta.
func modernBody(id int, method string, params map[string]any, caps map[string]any) string {
	if params == nil {
		params = map[string]any{}
	}
	if caps == nil {
		caps = map[string]any{}
	}
	params["_meta"] = map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw-modern", "version": "9"},
		"io.modelcontextprotocol/clientCapabilities": caps,
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	return string(b)
}

// modernHeaders are the headers a conforming 2026-07-28 client sends.
func modernHeaders(method, name string) map[string]string {
	h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method}
	if name != "" {
		h["Mcp-Name"] = name
	}
	return h
}

type rpcAnswer struct {
	Result map[string]json.RawMessage `json:"result"`
	Error  *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// decodeAnswer takes the JSON-RPC answer from a JSON or SSE body.
func decodeAnswer(t *testing.T, b []byte) rpcAnswer {
	t.Helper()
	s := string(b)
	if i := strings.LastIndex(s, "data: "); i >= 0 {
		s = strings.TrimSpace(s[i+len("data: "):])
	}
	var a rpcAnswer
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		t.Fatalf("undecodable answer %q: %v", b, err)
	}
	return a
}

// TestModernRequests: sessionless 2026-07-28 requests on the same endpoint
// as sessions: version and standard headers are checked (HeaderMismatch
// -32020, UnsupportedProtocolVersion -32022), every result has resultType,
// list and read results have caching hints, resource-not-found is -32602,
// and ping still works without a session.
func TestModernRequests(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	_, lb := post(t, e.url, modernBody(9, "resources/list", nil, nil), modernHeaders("resources/list", ""))
	var listed struct {
		Resources []struct {
			URI string `json:"uri"`
		} `json:"resources"`
	}
	if la := decodeAnswer(t, lb); la.Error != nil || json.Unmarshal(la.Result["resources"], &listed.Resources) != nil || len(listed.Resources) == 0 {
		t.Fatalf("resources/list = %s", lb)
	}
	uri := listed.Resources[0].URI
	callEcho := modernBody(1, "tools/call", map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": "hi"}}, nil)
	for _, tc := range []struct {
		name       string
		body       string
		hdr        map[string]string
		wantStatus int
		wantCode   int      // JSON-RPC error code; 0 for a result
		wantKeys   []string // result members that must be present
		wantType   string   // resultType
	}{
		{name: "tools/call", body: callEcho, hdr: modernHeaders("tools/call", "alpha.echo"), wantStatus: 200, wantKeys: []string{"content"}, wantType: "complete"},
		{name: "name mismatch", body: callEcho, hdr: modernHeaders("tools/call", "alpha.add"), wantStatus: 400, wantCode: -32020},
		{name: "name missing", body: callEcho, hdr: modernHeaders("tools/call", ""), wantStatus: 400, wantCode: -32020},
		{name: "method mismatch", body: callEcho, hdr: modernHeaders("prompts/get", "alpha.echo"), wantStatus: 400, wantCode: -32020},
		{name: "method missing", body: callEcho, hdr: map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Name": "alpha.echo"}, wantStatus: 400, wantCode: -32020},
		{name: "base64 name", body: callEcho, hdr: modernHeaders("tools/call", "=?base64?YWxwaGEuZWNobw==?="), wantStatus: 200, wantKeys: []string{"content"}, wantType: "complete"},
		{name: "version header differs from _meta", body: callEcho, hdr: map[string]string{"Mcp-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/call", "Mcp-Name": "alpha.echo"}, wantStatus: 400, wantCode: -32020},
		{name: "unsupported version", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}`,
			hdr: map[string]string{"Mcp-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}, wantStatus: 400, wantCode: -32022},
		{name: "tools/list", body: modernBody(2, "tools/list", nil, nil), hdr: modernHeaders("tools/list", ""), wantStatus: 200, wantKeys: []string{"tools", "ttlMs", "cacheScope"}, wantType: "complete"},
		{name: "resources/read", body: modernBody(3, "resources/read", map[string]any{"uri": uri}, nil), hdr: modernHeaders("resources/read", uri), wantStatus: 200, wantKeys: []string{"contents", "ttlMs", "cacheScope"}, wantType: "complete"},
		{name: "resource not found", body: modernBody(4, "resources/read", map[string]any{"uri": "test://nowhere"}, nil), hdr: modernHeaders("resources/read", "test://nowhere"), wantStatus: 200, wantCode: -32602},
		{name: "server/discover", body: modernBody(5, "server/discover", nil, nil), hdr: modernHeaders("server/discover", ""), wantStatus: 200, wantKeys: []string{"supportedVersions", "capabilities", "ttlMs", "cacheScope"}, wantType: "complete"},
		{name: "ping without a session", body: modernBody(6, "ping", nil, nil), hdr: modernHeaders("ping", ""), wantStatus: 200, wantType: "complete"},
		{name: "logging/setLevel without a session", body: modernBody(7, "logging/setLevel", map[string]any{"level": "info"}, nil), hdr: modernHeaders("logging/setLevel", ""), wantStatus: 200, wantType: "complete"},
		{name: "unknown method", body: modernBody(8, "no/such", nil, nil), hdr: modernHeaders("no/such", ""), wantStatus: 404, wantCode: -32601},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, e.url, tc.body, tc.hdr)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
			if resp.Header.Get("Mcp-Session-Id") != "" {
				t.Errorf("a sessionless request got Mcp-Session-Id %q", resp.Header.Get("Mcp-Session-Id"))
			}
			a := decodeAnswer(t, b)
			if tc.wantCode != 0 {
				if a.Error == nil || a.Error.Code != tc.wantCode {
					t.Fatalf("answer = %s, want error %d", b, tc.wantCode)
				}
				return
			}
			if a.Error != nil {
				t.Fatalf("answer = %s, want a result", b)
			}
			for _, k := range tc.wantKeys {
				if _, ok := a.Result[k]; !ok {
					t.Errorf("result lacks %q: %s", k, b)
				}
			}
			if got := string(a.Result["resultType"]); got != `"`+tc.wantType+`"` {
				t.Errorf("resultType = %s, want %q", got, tc.wantType)
			}
		})
	}
	// The client's identity and version from _meta are recorded.
	e.rec.mu.Lock()
	var named bool
	for _, ev := range e.rec.events {
		named = named || ev.ClientName == "raw-modern" && ev.ClientVersion == "9" && ev.ProtocolVersion == "2026-07-28"
	}
	e.rec.mu.Unlock()
	if !named {
		t.Error("no recorded hop names the 2026 client (raw-modern 9, 2026-07-28)")
	}
	// The supported versions come with the refusal.
	_, b := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`, map[string]string{"Mcp-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"})
	if a := decodeAnswer(t, b); a.Error == nil || !strings.Contains(string(a.Error.Data), `"2026-07-28"`) || !strings.Contains(string(a.Error.Data), `"2025-11-25"`) {
		t.Errorf("UnsupportedProtocolVersion data = %s, want the supported versions", b)
	}
	// Session-era requests on the same endpoint are untouched.
	sid := initSession(t, e.url, nil)
	_, b = post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}}}`, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"})
	if a := decodeAnswer(t, b); a.Error != nil || a.Result["resultType"] != nil {
		t.Errorf("2025 session tools/call = %s, want a result without resultType", b)
	}
}

// TestModernMultiRoundTrip: a 2025 backend's elicitation/create during a
// 2026 client's tools/call becomes an InputRequiredResult; the client's
// retry with inputResponses answers the held backend request and gets the
// tool's result. The chain is recorded as linked requests, its
// requestState is single use and bound to the request it came from.
func TestModernMultiRoundTrip(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	caps := map[string]any{"elicitation": map[string]any{}}
	hdr := modernHeaders("tools/call", "alpha.elicit")
	first := map[string]any{"name": "alpha.elicit", "arguments": map[string]any{"message": "name?"}}
	_, b := post(t, e.url, modernBody(1, "tools/call", first, caps), hdr)
	a := decodeAnswer(t, b)
	if a.Error != nil || string(a.Result["resultType"]) != `"input_required"` {
		t.Fatalf("first answer = %s, want an InputRequiredResult", b)
	}
	key := oneElicitation(t, a.Result["inputRequests"], "name?")
	var state string
	_ = json.Unmarshal(a.Result["requestState"], &state)
	originID := decodeRequestID(t, a)

	// A requestState is bound to the request it came from.
	wrong := map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": "x"}, "requestState": state,
		"inputResponses": map[string]any{key: map[string]any{"action": "decline"}}}
	_, b = post(t, e.url, modernBody(2, "tools/call", wrong, caps), modernHeaders("tools/call", "alpha.echo"))
	if a := decodeAnswer(t, b); a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("requestState on another tool = %s, want -32602", b)
	}

	retry := map[string]any{"name": "alpha.elicit", "arguments": map[string]any{"message": "name?"}, "requestState": state,
		"inputResponses": map[string]any{key: map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}}}
	resp, b := post(t, e.url, modernBody(3, "tools/call", retry, caps), hdr)
	a = decodeAnswer(t, b)
	if a.Error != nil || string(a.Result["resultType"]) != `"complete"` || !strings.Contains(string(a.Result["content"]), `elicited: accept {\"name\":\"Ada\"}`) {
		t.Fatalf("retry answer = %s, want the tool's result with the client's answer", b)
	}
	retryID := resp.Header.Get(proxy.HeaderRequestID)

	// Used once: the same state again is refused.
	_, b = post(t, e.url, modernBody(4, "tools/call", retry, caps), hdr)
	if a := decodeAnswer(t, b); a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("reused requestState = %s, want -32602", b)
	}

	// The retry's hops name the request that started the chain, and the
	// backend's elicitation is recorded under it.
	var linked bool
	waitFor(t, "retry recorded", func() bool { return len(e.rec.byRequest(retryID)) >= 2 })
	for _, ev := range e.rec.byRequest(retryID) {
		for _, at := range ev.Attrs {
			if at.Key == "mcp.mrtr.origin_request_id" && at.Value == originID {
				linked = true
			}
		}
	}
	if !linked {
		t.Errorf("retry %s is not linked to the origin %s: %+v", retryID, originID, e.rec.byRequest(retryID))
	}
	var sawElicit, sawUpstream bool
	waitFor(t, "origin's upstream hop recorded", func() bool {
		for _, ev := range e.rec.byRequest(originID) {
			sawElicit = sawElicit || ev.Hop == recorder.HopServerRequest && ev.Method == "elicitation/create"
			sawUpstream = sawUpstream || ev.Hop == recorder.HopUpstream
		}
		return sawElicit && sawUpstream
	})

	// A client that did not declare elicitation is not asked: the backend
	// gets a refusal, as a 2025 session client would.
	_, b = post(t, e.url, modernBody(5, "tools/call", first, nil), hdr)
	if a := decodeAnswer(t, b); a.Error != nil || string(a.Result["resultType"]) != `"complete"` {
		t.Errorf("without elicitation capability = %s, want a complete result", b)
	}
}

func decodeRequestID(t *testing.T, a rpcAnswer) string {
	t.Helper()
	var meta map[string]any
	_ = json.Unmarshal(a.Result["_meta"], &meta)
	id, _ := meta[proxy.MetaRequestID].(string)
	if id == "" {
		t.Fatalf("no request id in %s", a.Result["_meta"])
	}
	return id
}

// TestModernHeldCallExpires: a client that never retries does not hold the
// backend call forever: it is refused after ServerRequestTimeout and the
// requestState stops working.
func TestModernHeldCallExpires(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg, func(o *proxy.Options) { o.ServerRequestTimeout = 50 * time.Millisecond })
	caps := map[string]any{"elicitation": map[string]any{}}
	hdr := modernHeaders("tools/call", "alpha.elicit")
	params := map[string]any{"name": "alpha.elicit", "arguments": map[string]any{}}
	_, b := post(t, e.url, modernBody(1, "tools/call", params, caps), hdr)
	a := decodeAnswer(t, b)
	var state string
	_ = json.Unmarshal(a.Result["requestState"], &state)
	if state == "" {
		t.Fatalf("first answer = %s, want a requestState", b)
	}
	origin := decodeRequestID(t, a)
	waitFor(t, "held call ended", func() bool {
		for _, ev := range e.rec.byRequest(origin) {
			if ev.Hop == recorder.HopUpstream {
				return true
			}
		}
		return false
	})
	params["requestState"] = state
	params["inputResponses"] = map[string]any{}
	resp, b := post(t, e.url, modernBody(2, "tools/call", params, caps), hdr)
	if a := decodeAnswer(t, b); resp.StatusCode != http.StatusOK || a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("expired requestState = %d %s, want -32602", resp.StatusCode, b)
	}
}

// mrtrBackend is a 2026-07-28 server (mcp-go) whose confirm tool asks for
// input the multi round-trip way, with a requestState that needs escaping.
// It records the headers of every POST it gets.
func mrtrBackend(t *testing.T) (url string, headers func() []http.Header) {
	t.Helper()
	srv := server.NewMCPServer("mrtr-backend", "1", server.WithToolCapabilities(false),
		server.WithMethodCacheHints(mcpgo.MethodToolsList, 30000, mcpgo.CacheScopePublic))
	srv.AddTool(mcpgo.NewTool("confirm", mcpgo.WithString("what")), func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		if el := server.ElicitationResponse(req.Params.InputResponses, "ok"); el != nil {
			return mcpgo.NewToolResultText(fmt.Sprintf("%s: %s after %s", req.GetString("what", ""), el.Action, req.Params.RequestState)), nil
		}
		return server.NewInputRequestBuilder(mrtrState).Elicit("ok", mcpgo.ElicitationParams{
			Message: "sure?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
		}).ToolResult(), nil
	})
	h := server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true))
	var mu sync.Mutex
	var seen []http.Header
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL + "/mcp", func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

const mrtrState = `opaque "state" +/= é`

// TestModernBackend: a backend configured with protocol_version 2026-07-28
// is spoken to without a session (server/discover, per-request _meta,
// Mcp-Method and the de-namespaced Mcp-Name). Its InputRequiredResult
// reaches a 2026 client with requestState byte for byte and the retry goes
// back to it; a 2025 session client gets the input request as a
// server→client request, and the gateway retries for it.
func TestModernBackend(t *testing.T) {
	url, headers := mrtrBackend(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "modern", Transport: "http", URL: url, ProtocolVersion: "2026-07-28", Timeout: 10 * time.Second}}})
	if st := e.gw.Status(); st.Backends[0].ProtocolVersion != "2026-07-28" {
		t.Fatalf("backend protocol = %q, want 2026-07-28", st.Backends[0].ProtocolVersion)
	}

	// A 2026 client: the backend's InputRequiredResult, relayed.
	caps := map[string]any{"elicitation": map[string]any{}}
	hdr := modernHeaders("tools/call", "modern.confirm")
	params := map[string]any{"name": "modern.confirm", "arguments": map[string]any{"what": "deploy"}}
	_, b := post(t, e.url, modernBody(1, "tools/call", params, caps), hdr)
	a := decodeAnswer(t, b)
	var state string
	_ = json.Unmarshal(a.Result["requestState"], &state)
	if a.Error != nil || string(a.Result["resultType"]) != `"input_required"` || state != mrtrState || !strings.Contains(string(a.Result["inputRequests"]), `"ok"`) {
		t.Fatalf("first answer = %s, want the backend's InputRequiredResult with its requestState", b)
	}
	params["requestState"] = state
	params["inputResponses"] = map[string]any{"ok": map[string]any{"action": "accept", "content": map[string]any{}}}
	_, b = post(t, e.url, modernBody(2, "tools/call", params, caps), hdr)
	a = decodeAnswer(t, b)
	if a.Error != nil || !strings.Contains(string(a.Result["content"]), "deploy: accept after "+strings.ReplaceAll(mrtrState, `"`, `\"`)) {
		t.Fatalf("retry answer = %s, want the backend's result for the retry", b)
	}
	var sawCall bool
	for _, h := range headers() {
		if h.Get("Mcp-Session-Id") != "" {
			t.Errorf("the gateway sent Mcp-Session-Id %q to a 2026 backend", h.Get("Mcp-Session-Id"))
		}
		if h.Get("Mcp-Method") == "tools/call" {
			sawCall = true
			if h.Get("Mcp-Name") != "confirm" || h.Get("Mcp-Protocol-Version") != "2026-07-28" {
				t.Errorf("upstream tools/call headers: Mcp-Name %q, version %q; want the de-namespaced name and 2026-07-28", h.Get("Mcp-Name"), h.Get("Mcp-Protocol-Version"))
			}
		}
	}
	if !sawCall {
		t.Error("the backend saw no tools/call with Mcp-Method")
	}

	// Its caching hints are what the merged list says, it being the only
	// backend.
	_, b = post(t, e.url, modernBody(3, "tools/list", nil, nil), modernHeaders("tools/list", ""))
	if a := decodeAnswer(t, b); string(a.Result["ttlMs"]) != "30000" || string(a.Result["cacheScope"]) != `"public"` {
		t.Errorf("tools/list hints = %s %s, want the backend's 30000 public", a.Result["ttlMs"], a.Result["cacheScope"])
	}

	// A 2025 session client: the gateway asks it the old way and retries.
	tr, err := transport.NewStreamableHTTP(e.url + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, tr, "modern.")
	resp := p.raw(t, "tools/call", map[string]any{"name": "modern.confirm", "arguments": map[string]any{"what": "ship"}})
	if resp.Error != nil || !strings.Contains(string(resp.Result), "ship: decline after ") || strings.Contains(string(resp.Result), "input_required") {
		t.Errorf("2025 client: %s %v, want the final result after its elicitation", resp.Result, resp.Error)
	}
	if p.elicits.Load() != 1 {
		t.Errorf("2025 client answered %d elicitations, want 1", p.elicits.Load())
	}
}

// TestModernMergedCacheHints: a merged list is as cacheable as its least
// cacheable part: a session-era backend gives no hint, so the list is
// immediately stale and private.
func TestModernMergedCacheHints(t *testing.T) {
	url, _ := mrtrBackend(t)
	cfg, _ := twoBackends(t)
	cfg.Servers = append(cfg.Servers, config.Server{Name: "modern", Transport: "http", URL: url, ProtocolVersion: "2026-07-28", Timeout: 10 * time.Second})
	e := startGateway(t, cfg)
	_, b := post(t, e.url, modernBody(1, "tools/list", nil, nil), modernHeaders("tools/list", ""))
	if a := decodeAnswer(t, b); string(a.Result["ttlMs"]) != "0" || string(a.Result["cacheScope"]) != `"private"` {
		t.Errorf("merged tools/list hints = %s %s, want 0 private", a.Result["ttlMs"], a.Result["cacheScope"])
	}
}

// TestModernListen: subscriptions/listen answers with one acknowledgement
// first, naming only what the gateway agreed to (a URI no backend serves is
// left out), tagged with the request's id; then the opted-in notifications,
// tagged the same way, and nothing else.
func TestModernListen(t *testing.T) {
	tb := testbackend.New(testbackend.Options{})
	hs := httptest.NewServer(tb.HTTPHandler())
	cfg := &config.Config{Servers: []config.Server{
		{Name: "alpha", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second},
		stdioServer("beta", "v1"),
	}}
	e := startGateway(t, cfg)
	body := modernBody(0, "subscriptions/listen", map[string]any{"notifications": map[string]any{
		"toolsListChanged": true, "resourceSubscriptions": []string{"test://nowhere"}}}, nil)
	body = strings.Replace(body, `"id":0`, `"id":"sub-7"`, 1)
	req, _ := http.NewRequest(http.MethodPost, e.url+"/mcp", strings.NewReader(body))
	for k, v := range modernHeaders("subscriptions/listen", "") {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		_, _ = sse.Read(resp.Body, 1<<20, func(_, data []byte) bool { events <- string(data); return true })
		close(events)
	}()
	next := func(what string) map[string]json.RawMessage {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended before %s", what)
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal([]byte(ev), &m)
			return m
		case <-ctx.Done():
			t.Fatalf("no %s", what)
		}
		return nil
	}
	ack := next("acknowledgement")
	if string(ack["method"]) != `"notifications/subscriptions/acknowledged"` ||
		!strings.Contains(string(ack["params"]), `"io.modelcontextprotocol/subscriptionId":"sub-7"`) ||
		!strings.Contains(string(ack["params"]), `"notifications":{"toolsListChanged":true}`) {
		t.Fatalf("first message = %s %s, want the acknowledgement of toolsListChanged only, tagged sub-7", ack["method"], ack["params"])
	}
	hs.CloseClientConnections()
	hs.Close()
	n := next("tools/list_changed")
	if string(n["method"]) != `"notifications/tools/list_changed"` || !strings.Contains(string(n["params"]), `"io.modelcontextprotocol/subscriptionId":"sub-7"`) {
		t.Errorf("notification = %s %s, want tools/list_changed tagged sub-7", n["method"], n["params"])
	}
}

// TestModernTasks: a 2026 client that declares the tasks extension gets
// server-everything's task-required tool as an extension task: discover
// offers the extension instead of the core capability, tools/call answers
// resultType "task", tasks/get polls until the result is embedded.
func TestModernTasks(t *testing.T) {
	url := startEverythingHTTP(t)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}}})
	caps := map[string]any{"extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}

	_, b := post(t, e.url, modernBody(1, "server/discover", nil, caps), modernHeaders("server/discover", ""))
	var d struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	a := decodeAnswer(t, b)
	_ = json.Unmarshal(a.Result["capabilities"], &d.Capabilities)
	if _, core := d.Capabilities["tasks"]; core || !strings.Contains(string(d.Capabilities["extensions"]), `"io.modelcontextprotocol/tasks"`) {
		t.Errorf("discover capabilities = %s, want the tasks extension instead of the core capability", a.Result["capabilities"])
	}

	call := map[string]any{"name": "everything.simulate-research-query", "arguments": map[string]any{"topic": "gateways"}}
	_, b = post(t, e.url, modernBody(2, "tools/call", call, caps), modernHeaders("tools/call", "everything.simulate-research-query"))
	a = decodeAnswer(t, b)
	var taskID string
	_ = json.Unmarshal(a.Result["taskId"], &taskID)
	if a.Error != nil || string(a.Result["resultType"]) != `"task"` || !strings.HasPrefix(taskID, "everything/") || a.Result["ttlMs"] == nil {
		t.Fatalf("tools/call = %s, want an extension task", b)
	}
	var last rpcAnswer
	waitFor(t, "task completed", func() bool {
		_, b := post(t, e.url, modernBody(3, "tasks/get", map[string]any{"taskId": taskID}, caps), modernHeaders("tasks/get", ""))
		last = decodeAnswer(t, b)
		return last.Error != nil || string(last.Result["status"]) != `"working"`
	})
	if last.Error != nil || string(last.Result["status"]) != `"completed"` || !strings.Contains(string(last.Result["result"]), "gateways") ||
		string(last.Result["resultType"]) != `"complete"` {
		t.Errorf("final tasks/get = %+v, want completed with the tool's result", last)
	}
	_, b = post(t, e.url, modernBody(4, "tasks/get", map[string]any{"taskId": "everything/nope"}, caps), modernHeaders("tasks/get", ""))
	if a := decodeAnswer(t, b); a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("unknown task = %s, want -32602", b)
	}
}

// TestProfileCatalogsBounded: every distinct set of client capabilities a
// client sends used to get its own merged catalog, kept for good and rebuilt
// on every backend change — memory and CPU a client could grow at will. Only
// profiles with a connection slot (at most 8 per backend) get one now; any
// other profile is served by the backends' primary connections, whose
// catalog is the gateway's.
func TestProfileCatalogsBounded(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	for i := range 30 {
		caps := map[string]any{"experimental": map[string]any{fmt.Sprintf("x%d", i): map[string]any{}}}
		resp, b := post(t, e.url, modernBody(i+1, "tools/list", nil, caps), modernHeaders("tools/list", ""))
		if a := decodeAnswer(t, b); resp.StatusCode != 200 || a.Error != nil {
			t.Fatalf("tools/list with profile %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if n := e.gw.ProfileCatalogs(); n > 8 {
		t.Errorf("%d profile catalogs kept after 30 distinct profiles, want at most 8 (the connection slots)", n)
	}
}

// TestModernHeldCallsCappedPerPrincipal: a principal whose multi
// round-trip calls wait for its retries holds at most
// limits.max_held_per_principal of them; one more is refused (-32029,
// recorded as a denial) and its backend call cancelled, while another
// principal is not affected and an answered chain frees its place (fails
// before the fix: held calls had no per-principal cap).
func TestModernHeldCallsCappedPerPrincipal(t *testing.T) {
	cfg, _ := twoBackends(t)
	cfg.Servers = cfg.Servers[:1]
	cfg.Limits.MaxHeldPerPrincipal = 2
	cfg.Auth.Tokens = []config.Token{{Name: "mallory", SHA256: sha("m-token"), Tools: []string{"*"}},
		{Name: "alice", SHA256: sha("a-token"), Tools: []string{"*"}}}
	e := startGateway(t, cfg)
	caps := map[string]any{"elicitation": map[string]any{}}
	start := func(id int, token string) (rpcAnswer, string) {
		t.Helper()
		hdr := modernHeaders("tools/call", "alpha.elicit")
		hdr["Authorization"] = "Bearer " + token
		params := map[string]any{"name": "alpha.elicit", "arguments": map[string]any{"message": "name?"}}
		resp, b := post(t, e.url, modernBody(id, "tools/call", params, caps), hdr)
		return decodeAnswer(t, b), resp.Header.Get(proxy.HeaderRequestID)
	}
	var states []string
	var keys []string
	for i := range 2 {
		a, _ := start(i, "m-token")
		var st string
		var reqs map[string]json.RawMessage
		if a.Error != nil || json.Unmarshal(a.Result["requestState"], &st) != nil || json.Unmarshal(a.Result["inputRequests"], &reqs) != nil || len(reqs) != 1 {
			t.Fatalf("held call %d of mallory: %+v, want an InputRequiredResult", i, a)
		}
		states = append(states, st)
		for k := range reqs {
			keys = append(keys, k)
		}
	}
	a, reqID := start(3, "m-token")
	if a.Error == nil || a.Error.Code != -32029 || !strings.Contains(string(a.Error.Data), `"limit":"max_held_per_principal"`) {
		t.Fatalf("mallory's third held call = %+v, want -32029 with limit max_held_per_principal", a)
	}
	waitFor(t, "the refusal recorded as a denial", func() bool {
		for _, ev := range e.rec.byRequest(reqID) {
			if ev.Hop == recorder.HopAuth && ev.Outcome == recorder.OutcomeDenied && ev.AuthRule == proxy.RuleHeldPerPrincipal {
				return true
			}
		}
		return false
	})
	if a, _ := start(4, "a-token"); a.Error != nil || string(a.Result["resultType"]) != `"input_required"` {
		t.Errorf("alice's held call while mallory is at the cap = %+v, want an InputRequiredResult", a)
	}
	// Mallory answers one chain: its place is free again.
	hdr := modernHeaders("tools/call", "alpha.elicit")
	hdr["Authorization"] = "Bearer m-token"
	retry := map[string]any{"name": "alpha.elicit", "arguments": map[string]any{"message": "name?"}, "requestState": states[0],
		"inputResponses": map[string]any{keys[0]: map[string]any{"action": "decline"}}}
	_, b := post(t, e.url, modernBody(5, "tools/call", retry, caps), hdr)
	if a := decodeAnswer(t, b); a.Error != nil || string(a.Result["resultType"]) != `"complete"` {
		t.Fatalf("mallory's retry = %s, want the final result", b)
	}
	if a, _ := start(6, "m-token"); a.Error != nil || string(a.Result["resultType"]) != `"input_required"` {
		t.Errorf("mallory's held call after one chain ended = %+v, want an InputRequiredResult", a)
	}
}

// TestModernTaskAugmentUsesTheCallersCatalog: whether a 2026 client's
// tools/call is made task-augmented upstream is decided by the tool as the
// connection serving that client lists it, not as the primary connection
// (no client capabilities) does (fails before the fix: a tool offered only
// to clients that can elicit, with taskSupport required, was sent without
// params.task).
func TestModernTaskAugmentUsesTheCallersCatalog(t *testing.T) {
	srv := server.NewMCPServer("tasky", "1", server.WithToolCapabilities(false), server.WithTaskCapabilities(true, true, true),
		server.WithToolFilter(func(ctx context.Context, tools []mcpgo.Tool) []mcpgo.Tool {
			if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo); ok && s.GetClientCapabilities().Elicitation != nil {
				return tools
			}
			return nil
		}))
	srv.AddTool(mcpgo.NewTool("job", mcpgo.WithTaskSupport(mcpgo.TaskSupportRequired)), func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("done"), nil
	})
	h := server.NewStreamableHTTPServer(srv, server.WithDisableLocalhostProtection(true))
	var mu sync.Mutex
	var calls []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"tools/call"`) {
			mu.Lock()
			calls = append(calls, string(b))
			mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	e := startGateway(t, &config.Config{Servers: []config.Server{{Name: "tasky", Transport: "http", URL: hs.URL + "/mcp", Timeout: 10 * time.Second}}})
	caps := map[string]any{"elicitation": map[string]any{}, "extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
	_, b := post(t, e.url, modernBody(1, "tools/list", nil, caps), modernHeaders("tools/list", ""))
	if !strings.Contains(string(b), `"tasky.job"`) {
		t.Fatalf("tools/list for an eliciting client = %s, want tasky.job", b)
	}
	call := map[string]any{"name": "tasky.job", "arguments": map[string]any{}}
	post(t, e.url, modernBody(2, "tools/call", call, caps), modernHeaders("tools/call", "tasky.job"))
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || !strings.Contains(calls[0], `"task":{}`) {
		t.Errorf("upstream tools/call = %q, want one, task-augmented", calls)
	}
}

// oneElicitation checks that inputRequests holds exactly one request, the
// backend's elicitation/create whose params contain want, and returns its
// key.
func oneElicitation(t *testing.T, inputRequests json.RawMessage, want string) string {
	t.Helper()
	var reqs map[string]struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(inputRequests, &reqs); err != nil || len(reqs) != 1 {
		t.Fatalf("inputRequests = %s (%v), want one", inputRequests, err)
	}
	var key string
	for k, r := range reqs {
		key = k
		if r.Method != "elicitation/create" || !strings.Contains(string(r.Params), want) {
			t.Errorf("input request = %s %s, want the backend's elicitation/create", r.Method, r.Params)
		}
	}
	return key
}
