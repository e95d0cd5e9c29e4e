package proxy_test

import (
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
)

// TestVersionIsTheGatewaysOption: the version a gateway names itself with
// (serverInfo, /statusz, recorded events) is its Options.Version, not a
// package global another gateway in the process could change; /statusz
// names the build of each backend (its serverInfo).
func TestVersionIsTheGatewaysOption(t *testing.T) {
	cfg, _ := twoBackends(t)
	e := startGateway(t, cfg, func(o *proxy.Options) { o.Version = "v9.8.7-test" })
	cfg2, _ := twoBackends(t)
	other := startGateway(t, cfg2, func(o *proxy.Options) { o.Version = "v0.0.1-other" })

	sid := initSession(t, e.url, nil)
	_, rb := post(t, e.url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha.echo","arguments":{"message":"x"}}}`, map[string]string{"Mcp-Session-Id": sid})
	if !strings.Contains(string(rb), `"x"`) {
		t.Fatalf("echo: %s", rb)
	}
	_, disc := post(t, e.url, modernBody(3, "server/discover", nil, nil), modernHeaders("server/discover", ""))
	if !strings.Contains(string(disc), `"version":"v9.8.7-test"`) {
		t.Errorf("server/discover serverInfo = %s, want version v9.8.7-test", disc)
	}
	st := e.gw.Status()
	if st.Version != "v9.8.7-test" {
		t.Errorf("status version = %q", st.Version)
	}
	if os := other.gw.Status(); os.Version != "v0.0.1-other" {
		t.Errorf("the other gateway's status version = %q", os.Version)
	}
	for _, bs := range st.Backends {
		if bs.ServerName == "" || bs.ServerVersion == "" {
			t.Errorf("backend %s: serverInfo %q %q not in status", bs.Name, bs.ServerName, bs.ServerVersion)
		}
	}
	e.rec.mu.Lock()
	evs := append([]recorder.Event(nil), e.rec.events...)
	e.rec.mu.Unlock()
	if len(evs) == 0 {
		t.Fatal("nothing recorded")
	}
	for _, ev := range evs {
		if ev.GatewayVersion != "v9.8.7-test" {
			t.Fatalf("event %s %s: gateway version %q", ev.Hop, ev.Method, ev.GatewayVersion)
		}
	}
}
