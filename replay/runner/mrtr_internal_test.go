package runner

import (
	"encoding/json"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
)

// TestChains: the retry of a recorded multi round-trip chain is sent with
// the requestState and input keys the gateway minted in this replay, and
// both rounds compare equal after normalizing what the gateway mints.
func TestChains(t *testing.T) {
	recorded := `{"resultType":"input_required","requestState":"mcptrail-rs1.OLD","inputRequests":{` +
		`"mcptrail-9":{"method":"sampling/createMessage","params":{"maxTokens":5}},"mcptrail-a":{"method":"elicitation/create","params":{"message":"x"}}}}`
	live := `{"resultType":"input_required","requestState":"mcptrail-rs1.NEW","inputRequests":{` +
		`"mcptrail-k":{"method":"elicitation/create","params":{"message":"x"}},"mcptrail-j":{"method":"sampling/createMessage","params":{"maxTokens":5}}}}`
	if a, b := normalizeAnswer([]byte(recorded)), normalizeAnswer([]byte(live)); string(a) != string(b) {
		t.Errorf("normalized rounds differ:\n%s\n%s", a, b)
	}
	c := &chains{}
	c.note(&recorder.Event{Result: []byte(recorded)}, json.RawMessage(live))
	for _, tt := range []struct{ name, in, want string }{
		{"retry", `{"name":"t","requestState":"mcptrail-rs1.OLD","inputResponses":{"mcptrail-a":{"action":"decline"},"mcptrail-9":{"model":"m"}}}`,
			`{"name":"t","requestState":"mcptrail-rs1.NEW","inputResponses":{"mcptrail-k":{"action":"decline"},"mcptrail-j":{"model":"m"}}}`},
		{"another chain", `{"name":"t","requestState":"mcptrail-rs1.OTHER"}`, `{"name":"t","requestState":"mcptrail-rs1.OTHER"}`},
		{"no chain", `{"name":"t"}`, `{"name":"t"}`},
	} {
		if got := string(c.resume([]byte(tt.in))); got != tt.want {
			t.Errorf("%s: resume(%s) = %s, want %s", tt.name, tt.in, got, tt.want)
		}
	}
	// A backend's own requestState is relayed as it is, and compared so.
	own := `{"resultType":"input_required","requestState":"backend-state","inputRequests":{"k":{"method":"roots/list","params":{}}}}`
	if got := string(normalizeAnswer([]byte(own))); got != own {
		t.Errorf("normalizeAnswer(backend's own round) = %s, want it unchanged", got)
	}
}
