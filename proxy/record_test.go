package proxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// TestRecordedStringsRedacted: every string of a recorded event that a
// client can choose (method, target, JSON-RPC id, clientInfo) is redacted,
// on the hot path and when deferred to the recorder (RedactEvent); a
// client request id that carries a secret is replaced by a fresh one.
func TestRecordedStringsRedacted(t *testing.T) {
	secrets := map[string]string{
		"clientInfo.name":    "xoxb-1234567890-abcdefABCDEF",
		"clientInfo.version": "cv-" + strings.Repeat("v", 20),
		"tool name":          "sk_live_" + strings.Repeat("T", 24),
		"JSON-RPC id":        "pw-" + strings.Repeat("i", 20),
		"resource URI":       "ru-" + strings.Repeat("u", 20),
		"method":             "mp-" + strings.Repeat("m", 20),
		"X-Request-Id":       "sk_test_" + strings.Repeat("R", 24),
	}
	for _, deferred := range []bool{false, true} {
		name := "hot path"
		if deferred {
			name = "deferred"
		}
		t.Run(name, func(t *testing.T) {
			r, err := redact.New(redact.Config{}, []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, _ := twoBackends(t)
			e := startGateway(t, cfg, func(o *proxy.Options) {
				o.Redactor = r
				if deferred {
					o.DeferRedactionBytes = 4096
				}
			})
			post := func(hdr map[string]string, sid string, msg map[string]any) (*http.Response, []byte) {
				body, _ := json.Marshal(msg)
				req, _ := http.NewRequest(http.MethodPost, e.url+"/mcp", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				if sid != "" {
					req.Header.Set("Mcp-Session-Id", sid)
				}
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, b
			}
			resp, _ := post(nil, "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
				"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
				"clientInfo": map[string]any{"name": "agent " + secrets["clientInfo.name"], "version": "token=" + secrets["clientInfo.version"]},
			}})
			sid := resp.Header.Get("Mcp-Session-Id")
			post(nil, sid, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
			post(nil, sid, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "alpha.x_" + secrets["tool name"]}})
			post(nil, sid, map[string]any{"jsonrpc": "2.0", "id": "password=" + secrets["JSON-RPC id"], "method": "tools/call", "params": map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": "m"}}})
			post(nil, sid, map[string]any{"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": map[string]any{"uri": "test://static/1?api_key=" + secrets["resource URI"]}})
			post(nil, sid, map[string]any{"jsonrpc": "2.0", "id": 4, "method": "x/secret=" + secrets["method"]})
			resp, _ = post(map[string]string{"X-Request-Id": secrets["X-Request-Id"]}, sid, map[string]any{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": map[string]any{"name": "alpha.echo", "arguments": map[string]any{"message": "m"}}})
			if got := resp.Header.Get("X-Request-Id"); got == "" || got == secrets["X-Request-Id"] {
				t.Errorf("X-Request-Id %q carrying a secret was kept (answer's X-Request-Id %q); want a fresh id", secrets["X-Request-Id"], got)
			}

			e.rec.mu.Lock()
			events := append([]recorder.Event(nil), e.rec.events...)
			e.rec.mu.Unlock()
			if len(events) < 10 {
				t.Fatalf("only %d events recorded", len(events))
			}
			for i := range events {
				ev := &events[i]
				if !deferred {
					continue // redacted when recorded: checked as is
				}
				if !ev.Unredacted {
					t.Errorf("event %s %s: not marked Unredacted with redaction deferred", ev.Hop, ev.Method)
				}
				proxy.RedactEvent(r, ev)
			}
			all, _ := json.Marshal(events)
			for what, s := range secrets {
				if bytes.Contains(all, []byte(s)) {
					t.Errorf("the %s secret %s reached the recorder", what, s)
				}
			}
			if !bytes.Contains(all, []byte(`"Target":"alpha.x_«redacted:stripe_key:`)) {
				t.Errorf("no event carries the redacted tool name")
			}
		})
	}
}

// TestRedactEventAttrs: extra attributes are redacted by value pattern and
// by key rule; others are kept.
func TestRedactEventAttrs(t *testing.T) {
	r, err := redact.New(redact.Config{}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	aws := "AKIA" + strings.Repeat("Q", 16)
	e := &recorder.Event{Attrs: []recorder.Attr{
		{Key: "mcp.mrtr.input_key", Value: "city"},
		{Key: "note", Value: "key " + aws},
		{Key: "upstream.api_key", Value: "k-123456"},
		{Key: aws, Value: "v"},
	}, Unredacted: true}
	proxy.RedactEvent(r, e)
	got, _ := json.Marshal(e.Attrs)
	for _, s := range []string{aws, "k-123456"} {
		if bytes.Contains(got, []byte(s)) {
			t.Errorf("attrs %s keep %s", got, s)
		}
	}
	if e.Attrs[0] != (recorder.Attr{Key: "mcp.mrtr.input_key", Value: "city"}) || e.Attrs[2].Key != "upstream.api_key" || e.RedactionCount != 3 {
		t.Errorf("attrs = %s (%d redactions); want the first kept, the key of the third kept, 3 redactions", got, e.RedactionCount)
	}
}

// BenchmarkRedactEvent is the recorder's Prepare hook on a typical small
// tools/call hop: with its payloads, and its client-chosen strings alone
// (what redacting every string column adds per event).
func BenchmarkRedactEvent(b *testing.B) {
	r, err := redact.New(redact.Config{}, []byte("bench-key"))
	if err != nil {
		b.Fatal(err)
	}
	params := []byte(`{"name":"crm.search","arguments":{"query":"renewals in emea","limit":50,"password":"hunter2"},"_meta":{"progressToken":7}}`)
	result := []byte(`{"content":[{"type":"text","text":"3 customers: acme, globex, initech"}],"isError":false}`)
	for _, tc := range []struct {
		name           string
		params, result []byte
		wantRedactions uint16
	}{{"payloads+strings", params, result, 1}, {"strings", nil, nil, 0}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var n uint16
			for b.Loop() {
				e := recorder.Event{Method: "tools/call", Target: "crm.search", RPCID: "17", ClientName: "claude-code", ClientVersion: "2.1.0",
					ProtocolVersion: "2025-11-25", AuthRule: "full", RouteRule: "namespace:crm", Params: tc.params, Result: tc.result, Unredacted: true}
				proxy.RedactEvent(r, &e)
				n = e.RedactionCount
			}
			if n != tc.wantRedactions {
				b.Fatalf("RedactionCount = %d, want %d", n, tc.wantRedactions)
			}
		})
	}
}

// TestPlainCallRecordsThreeHops: a call that no check refuses records its
// inbound, upstream and response hops and nothing else; the routing
// decision (rule and backend) rides on the upstream and response hops
// rather than on a route hop of its own.
func TestPlainCallRecordsThreeHops(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg)
	sid := initSession(t, e.url, nil)
	resp, b := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"m"}}}`,
		map[string]string{"Mcp-Session-Id": sid})
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"m"`)) {
		t.Fatalf("tools/call = %d %s", resp.StatusCode, b)
	}
	id := resp.Header.Get("X-Request-Id")
	var hops []string
	for _, ev := range e.rec.byRequest(id) {
		hops = append(hops, ev.Hop.String())
		if ev.Hop == recorder.HopUpstream || ev.Hop == recorder.HopResponse {
			if ev.RouteRule != "namespace:alpha" || ev.Backend != "alpha" {
				t.Errorf("%s hop: route rule %q backend %q, want namespace:alpha and alpha", ev.Hop, ev.RouteRule, ev.Backend)
			}
		}
	}
	if got, want := strings.Join(hops, ","), "inbound,upstream,response"; got != want {
		t.Errorf("hops of %s = %s, want %s", id, got, want)
	}
}
