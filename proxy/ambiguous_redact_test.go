package proxy_test

import (
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// TestAmbiguousKeyRefusalIsRedacted: the refusal of a message with a
// duplicate key quotes the client's key; what is recorded and logged of it
// passes the redactor like every other client text.
func TestAmbiguousKeyRefusalIsRedacted(t *testing.T) {
	red, err := redact.New(redact.Config{Custom: []redact.Pattern{{Name: "employee_id", Regexp: `EMP-[0-9]{6}`}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startGateway(t, &config.Config{Servers: []config.Server{stdioServer("alpha", "v1")}},
		func(o *proxy.Options) { o.Redactor = red })
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"EMP-123456":1,"EMP-123456":2}}`, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	var denied []recorder.Event
	for _, ev := range e.rec.byRequest(resp.Header.Get("X-Request-Id")) {
		if ev.Hop == recorder.HopAuth && ev.AuthRule == proxy.RuleAmbiguousKey {
			denied = append(denied, ev)
		}
	}
	if len(denied) != 1 {
		t.Fatalf("recorded %d ambiguous-key denials, want 1", len(denied))
	}
	if strings.Contains(denied[0].ErrorMessage, "EMP-123456") || !strings.Contains(denied[0].ErrorMessage, "duplicate key") {
		t.Errorf("recorded error message %q: want the duplicate key reported, redacted", denied[0].ErrorMessage)
	}
	if strings.Contains(e.logs.String(), "EMP-123456") {
		t.Errorf("the log quotes the secret key: %s", e.logs.String())
	}
}

// TestAmbiguousKeyRefusalResponseCarriesTheDecision: the audit row of a
// refused request is built from the hops of one write batch; when the
// response hop of an ambiguous-key refusal fell into a later batch than its
// auth hop, the audit said nothing of the denial (seen once in
// TestSecurityMatrix). Every hop of the refusal carries it now.
func TestAmbiguousKeyRefusalResponseCarriesTheDecision(t *testing.T) {
	e := startGateway(t, &config.Config{Servers: []config.Server{stdioServer("alpha", "v1")}})
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha.echo","name":"alpha.add"}}`, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	var responses int
	for _, ev := range e.rec.byRequest(resp.Header.Get("X-Request-Id")) {
		if ev.Hop != recorder.HopResponse {
			continue
		}
		responses++
		if ev.AuthDecision != "denied" || ev.AuthRule != proxy.RuleAmbiguousKey {
			t.Errorf("response hop says %q by %q, want denied by %q", ev.AuthDecision, ev.AuthRule, proxy.RuleAmbiguousKey)
		}
	}
	if responses != 1 {
		t.Errorf("%d response hops, want 1", responses)
	}
}
