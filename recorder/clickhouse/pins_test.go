package clickhouse

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder"
)

// TestPinsRoundTrip: LoadPins answers each tool's pin (newest pinned or
// approved row) and newest change; PinHistory lists the rows once each,
// also when a batch was written twice.
func TestPinsRoundTrip(t *testing.T) {
	s := migratedStore(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).UnixNano()
	evs := []recorder.PinEvent{
		{TimeNs: t0, Server: "tb", Tool: "echo", Kind: recorder.PinPinned, Hash: "h1", Definition: `{"description":"a"}`, Actor: "gw"},
		{TimeNs: t0 + 1, Server: "tb", Tool: "echo", Kind: recorder.PinChanged, Hash: "h2", PrevHash: "h1", Definition: `{"description":"b"}`,
			Diff: `[{"path":"/description"}]`, Action: "hide", Actor: "gw"},
		{TimeNs: t0 + 2, Server: "tb", Tool: "echo", Kind: recorder.PinApproved, Hash: "h2", PrevHash: "h1", Definition: `{"description":"b"}`, Actor: "alice"},
		{TimeNs: t0 + 3, Server: "tb", Tool: "add", Kind: recorder.PinPinned, Hash: "h3", Definition: `{}`, Actor: "gw"},
	}
	for range 2 { // a retried batch
		if err := s.AppendPins(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	pins, err := s.LoadPins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]recorder.PinEvent{}
	for _, p := range pins {
		got[p.Tool+"/"+p.Kind] = p
	}
	if p := got["echo/approved"]; p.Hash != "h2" || p.Actor != "alice" || p.Definition != `{"description":"b"}` || p.TimeNs != t0+2 {
		t.Errorf("echo's pin = %+v, want the approval of h2 by alice", p)
	}
	if p := got["echo/changed"]; p.Hash != "h2" || p.Action != "hide" || p.PrevHash != "h1" {
		t.Errorf("echo's newest change = %+v", p)
	}
	if p := got["add/pinned"]; p.Hash != "h3" || len(pins) != 3 {
		t.Errorf("LoadPins = %+v, want 3 rows (echo pin, echo change, add pin)", pins)
	}
	hist, err := s.PinHistory(ctx, time.Unix(0, t0+1), "tb")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, h := range hist {
		kinds = append(kinds, h.Tool+":"+h.Kind)
	}
	if want := "add:pinned echo:changed echo:approved"; strings.Join(kinds, " ") != want {
		t.Errorf("PinHistory since t0+1 = %q, want %q", strings.Join(kinds, " "), want)
	}
}
