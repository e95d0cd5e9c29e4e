package proxy

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// TestCancelBeforeTheCallIsTracked: the legacy transport answers 202 before
// the request is served, so the client's notifications/cancelled can be read
// before the call is tracked. It must still cancel the call, with the
// client's reason. Before the fix the cancel was dropped and the call ran
// to its timeout (TestCancelMatchesEqualIDs failed in CI under load).
func TestCancelBeforeTheCallIsTracked(t *testing.T) {
	g := testGateway(t)
	s := g.newSession("s1", nil)
	s.accept(json.RawMessage(`8`))
	cancel := jsonrpc.Message{Method: "notifications/cancelled", Params: json.RawMessage(`{"requestId":80e-1,"reason":"early"}`)}
	g.clientNotification(s, cancel)

	c := &call{msg: jsonrpc.Message{ID: json.RawMessage(`8`), Method: "tools/call"}}
	ctx, cancelFn := context.WithCancel(context.Background())
	c.cancel = cancelFn
	s.trackCall(c)
	defer s.untrackCall(c)
	if ctx.Err() == nil {
		t.Fatal("the call accepted before its cancel arrived was not cancelled")
	}
	if r := c.cancelReason.Load(); r == nil || *r != "early" {
		t.Errorf("cancel reason = %v, want %q", r, "early")
	}

	// A cancel for an id that was never accepted nor tracked is ignored
	// and leaves nothing behind that could cancel a later request.
	g.clientNotification(s, jsonrpc.Message{Method: "notifications/cancelled", Params: json.RawMessage(`{"requestId":9}`)})
	c9 := &call{msg: jsonrpc.Message{ID: json.RawMessage(`9`), Method: "tools/call"}}
	ctx9, cancel9 := context.WithCancel(context.Background())
	defer cancel9()
	c9.cancel = cancel9
	s.trackCall(c9)
	defer s.untrackCall(c9)
	if ctx9.Err() != nil {
		t.Error("a cancel sent before the request was accepted cancelled it")
	}

	// An accepted request that was never tracked is released.
	s.accept(json.RawMessage(`10`))
	s.release(json.RawMessage(`10`))
	if len(s.accepted) != 0 {
		t.Errorf("accepted = %v after release, want empty", s.accepted)
	}
}
