package replay_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
)

// twoServers is a client session against a gateway with backends a and b:
// merged lists as the client saw them, and upstream reads that show which
// backend serves which resource.
func twoServers() []recorder.Event {
	ev := func(req string, hop recorder.Hop, method, server, params, result string) recorder.Event {
		e := recorder.Event{RequestID: req, SessionID: "s", Hop: hop, Method: method, Server: server}
		if params != "" {
			e.Params = []byte(params)
		}
		if result != "" {
			e.Result = []byte(result)
		}
		return e
	}
	return []recorder.Event{
		ev("L1", recorder.HopResponse, "tools/list", "", "", `{"tools":[{"name":"a.echo","annotations":{"readOnlyHint":true}},{"name":"b.write","annotations":{"readOnlyHint":false}},{"name":"b.plain"}],"nextCursor":"x"}`),
		ev("L2", recorder.HopResponse, "tools/list", "", "", `{"tools":[{"name":"a.echo","annotations":{"readOnlyHint":true}},{"name":"a.more"}]}`),
		ev("L3", recorder.HopResponse, "resources/list", "", "", `{"resources":[{"uri":"mcptrail://a/file:///x"},{"uri":"mcptrail://b/file:///x"},{"uri":"db://t/1"},{"uri":"mem://only-b"},{"uri":"zzz://unknown"}]}`),
		ev("L4", recorder.HopResponse, "prompts/list", "", "", `{"prompts":[{"name":"a.greet"}]}`),
		ev("R1", recorder.HopUpstream, "resources/read", "a", `{"uri":"db://t/1"}`, `{"contents":[]}`),
		ev("R2", recorder.HopUpstream, "resources/read", "b", `{"uri":"mem://other"}`, `{"contents":[]}`),
		ev("R3", recorder.HopUpstream, "tools/call", "a", `{"name":"echo"}`, `{"content":[]}`),
	}
}

func canon(t *testing.T, b []byte) string {
	t.Helper()
	c, err := diff.Canonical(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return string(c)
}

func TestBackendLists(t *testing.T) {
	got := replay.BackendLists(twoServers(), ".")
	want := map[string]map[string]string{
		"a": {
			"tools/list":     `{"tools":[{"annotations":{"readOnlyHint":true},"name":"echo"},{"name":"more"}]}`,
			"resources/list": `{"resources":[{"uri":"file:///x"},{"uri":"db://t/1"}]}`,
			"prompts/list":   `{"prompts":[{"name":"greet"}]}`,
		},
		"b": {
			"tools/list":     `{"tools":[{"annotations":{"readOnlyHint":false},"name":"write"},{"name":"plain"}]}`,
			"resources/list": `{"resources":[{"uri":"file:///x"},{"uri":"mem://only-b"}]}`,
		},
	}
	for server, byMethod := range want {
		for method, w := range byMethod {
			if g := got[server][method]; g == nil || canon(t, g) != w {
				t.Errorf("BackendLists[%s][%s] = %s, want %s", server, method, g, w)
			}
		}
		if len(got[server]) != len(byMethod) {
			t.Errorf("BackendLists[%s] has %d lists, want %d", server, len(got[server]), len(byMethod))
		}
	}
	ro := replay.ReadOnlyTools(got)
	for _, tt := range []struct {
		server, tool string
		want, known  bool
	}{{"a", "echo", true, true}, {"a", "more", false, true}, {"b", "write", false, true}, {"b", "plain", false, true}, {"b", "nope", false, false}} {
		v, ok := ro[tt.server][tt.tool]
		if v != tt.want || ok != tt.known {
			t.Errorf("ReadOnlyTools[%s][%s] = %v (known %v), want %v (known %v)", tt.server, tt.tool, v, ok, tt.want, tt.known)
		}
	}
}

func TestNewMockStoreServesLists(t *testing.T) {
	extra := map[string]json.RawMessage{"c": json.RawMessage(`{"tools":[{"name":"x"}]}`)}
	s, err := replay.NewMockStore(twoServers(), match.Config{}, ".", extra)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ server, method, want string }{
		{"a", "tools/list", `"name":"more"`},
		{"b", "resources/list", `"uri":"mem://only-b"`},
		{"c", "tools/list", `"name":"x"`},
	} {
		x, err := s.Lookup(tt.method, tt.server, nil)
		if err != nil || !json.Valid(x.Response) || !contains(x.Response, tt.want) {
			t.Errorf("Lookup(%s, %s) = %s, %v; want it to contain %s", tt.method, tt.server, x.Response, err, tt.want)
		}
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// The demo's memory backend: its one resource is never read and its scheme
// is nobody else's, so it belongs to the only backend not known to serve any
// scheme (before, it was dropped and the mock's catalog lost it).
func TestBackendListsUnreadResourceOfAnotherBackend(t *testing.T) {
	events := []recorder.Event{
		{RequestID: "L1", Hop: recorder.HopResponse, Method: "tools/list", Result: []byte(`{"tools":[{"name":"a.echo"},{"name":"b.echo"},{"name":"memory.read_graph"}],"_meta":{"mcptrail.dev/request-id":"x"}}`)},
		{RequestID: "L2", Hop: recorder.HopResponse, Method: "resources/list", Result: []byte(
			`{"resources":[{"uri":"mcptrail://a/demo://1"},{"uri":"mcptrail://b/demo://1"},{"uri":"memory://knowledge-graph"}]}`)},
		{RequestID: "C1", Hop: recorder.HopUpstream, Method: "tools/call", Server: "a", Params: []byte(`{"name":"echo"}`), Result: []byte(`{"content":[]}`)},
	}
	got := replay.BackendLists(events, ".")
	if r := string(got["memory"]["resources/list"]); r != `{"resources":[{"uri":"memory://knowledge-graph"}]}` {
		t.Errorf("BackendLists[memory][resources/list] = %s, want the knowledge graph", r)
	}
	if order := replay.CatalogOrder(events, ".", []string{"memory", "b", "a"}); strings.Join(order, ",") != "a,b,memory" {
		t.Errorf("CatalogOrder = %v, want a,b,memory", order)
	}
}
