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
