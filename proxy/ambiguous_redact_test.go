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
