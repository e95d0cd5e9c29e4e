package replay_test

import (
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
)

// TestBackendHandshakes: the mock's initialize answers give a gateway the
// capabilities and instructions the recorded one offered clients (a
// server/discover compared after the replay failed on every flag and on the
// instructions before).
func TestBackendHandshakes(t *testing.T) {
	events := append(twoServers(), recorder.Event{RequestID: "D", Hop: recorder.HopResponse, Method: "server/discover",
		Result: []byte(`{"capabilities":{"tools":{"listChanged":true},"prompts":{"listChanged":true},"resources":{"subscribe":true},"extensions":{"io.modelcontextprotocol/tasks":{}}},` +
			`"instructions":"## Server a: its tools and prompts are named a.<name>\n\nUse a.\n\nTwice.\n\n## Server b: its tools and prompts are named b.<name>\n\nUse b."}`)})
	events[len(events)-2].UpstreamVersion = "2025-06-18" // R3, on a
	got := replay.BackendHandshakes(events, ".")
	want := map[string]string{
		"a": `{"capabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}},"prompts":{"listChanged":true},"resources":{"subscribe":true},"tools":{"listChanged":true}},` +
			`"instructions":"Use a.\n\nTwice.","protocolVersion":"2025-06-18","serverInfo":{"name":"a","version":"mcptrail-replay"}}`,
		"b": `{"capabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}},"resources":{"subscribe":true},"tools":{"listChanged":true}},` +
			`"instructions":"Use b.","serverInfo":{"name":"b","version":"mcptrail-replay"}}`,
	}
	for server, w := range want {
		if g := got[server]; g == nil || canon(t, g) != w {
			t.Errorf("BackendHandshakes[%s] =\n%s\nwant\n%s", server, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("BackendHandshakes has %d servers, want %d", len(got), len(want))
	}
}

// TestProfileLists: each client capability profile gets the lists its
// clients were served (a session's profile from its initialize, a
// sessionless request's from its _meta); the mock used to serve every
// connection the union.
func TestProfileLists(t *testing.T) {
	ev := func(req, sess string, hop recorder.Hop, method, params, result string) recorder.Event {
		e := recorder.Event{RequestID: req, SessionID: sess, Hop: hop, Method: method}
		if params != "" {
			e.Params = []byte(params)
		}
		if result != "" {
			e.Result = []byte(result)
		}
		return e
	}
	events := []recorder.Event{
		ev("I1", "s1", recorder.HopInbound, "initialize", `{"capabilities":{"sampling":{}}}`, ""),
		ev("L1", "s1", recorder.HopResponse, "tools/list", "", `{"tools":[{"name":"a.echo"},{"name":"a.sample"}]}`),
		ev("I2", "s2", recorder.HopInbound, "initialize", `{"capabilities":{}}`, ""),
		ev("L2", "s2", recorder.HopResponse, "tools/list", "", `{"tools":[{"name":"a.echo"}]}`),
		ev("L3", "", recorder.HopInbound, "tools/list", `{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"roots":{}}}}`, ""),
		ev("L3", "", recorder.HopResponse, "tools/list", "", `{"tools":[{"name":"a.echo"},{"name":"a.roots"}]}`),
		ev("L4", "s9", recorder.HopResponse, "tools/list", "", `{"tools":[{"name":"a.unknown"}]}`), // no initialize recorded
		ev("C1", "s1", recorder.HopUpstream, "tools/call", `{"name":"echo"}`, `{}`),
	}
	events[len(events)-1].Server = "a"
	got := replay.ProfileLists(events, ".")
	want := map[string]string{
		`{"sampling":{}}`: `{"tools":[{"name":"echo"},{"name":"sample"}]}`,
		``:                `{"tools":[{"name":"echo"}]}`,
		`{"roots":{}}`:    `{"tools":[{"name":"echo"},{"name":"roots"}]}`,
	}
	for profile, w := range want {
		if g := got[profile]["a"]["tools/list"]; g == nil || canon(t, g) != w {
			t.Errorf("ProfileLists[%q][a][tools/list] = %s, want %s", profile, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ProfileLists has %d profiles, want %d", len(got), len(want))
	}
}
