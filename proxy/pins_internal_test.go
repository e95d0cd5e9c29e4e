package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestPinCheck: the check refuses exactly the refused tools (and every
// tool of a refused server), by the target the call would execute, and
// allocates nothing: it runs on every call and every listed tool.
func TestPinCheck(t *testing.T) {
	pt := newPinTracker(&config.Config{}, "__", nil, slog.New(slog.DiscardHandler), "i")
	pt.state.Store(&pinState{
		tools:   map[toolKey]pinVerdict{{"crm", "search"}: {RulePinChanged, "crm__search changed"}},
		servers: map[string]pinVerdict{"files": {RulePinServer, "files refused"}},
	})
	tests := []struct {
		kind           auth.Kind
		target, server string
		rule           string // "" allowed
	}{
		{auth.Tools, "crm__search", "crm", RulePinChanged},
		{auth.Tools, "crm__get", "crm", ""},
		{auth.Tools, "crm__search_all", "crm", ""},
		{auth.Tools, "files__read", "files", RulePinServer},
		{auth.Tools, "crm.search", "crm", ""}, // not this gateway's separator: not the tool
		{auth.Tools, "search", "", ""},        // no route
		{auth.Prompts, "crm__search", "crm", ""},
		{auth.Tools, "crm__", "crm", ""},
	}
	ctx := context.Background()
	for _, tt := range tests {
		r := &PolicyRequest{Kind: tt.kind, Target: tt.target, Server: tt.server}
		d := pt.Check(ctx, r)
		if d.Deny != (tt.rule != "") || d.Rule != tt.rule {
			t.Errorf("Check(%v %s on %s) = %+v, want rule %q", tt.kind, tt.target, tt.server, d, tt.rule)
		}
		if n := testing.AllocsPerRun(100, func() { pt.Check(ctx, r) }); n != 0 {
			t.Errorf("Check(%s) allocates %v times", tt.target, n)
		}
	}
}

// BenchmarkPinCheck is the pinning check of one call while another tool
// is refused (the lookup path; with nothing refused it returns at once).
func BenchmarkPinCheck(b *testing.B) {
	pt := newPinTracker(&config.Config{}, ".", nil, slog.New(slog.DiscardHandler), "i")
	pt.state.Store(&pinState{tools: map[toolKey]pinVerdict{{"crm", "search"}: {RulePinChanged, "changed"}}})
	r := &PolicyRequest{Kind: auth.Tools, Target: "crm.get", Server: "crm"}
	ctx := context.Background()
	b.ReportAllocs()
	denied := 0
	for b.Loop() {
		if pt.Check(ctx, r).Deny {
			denied++
		}
	}
	if denied != 0 {
		b.Fatalf("crm.get denied %d times", denied)
	}
}

// TestPinReconfigure: a new configuration (hot reload) applies its pinning
// actions to the tools observed already, without a catalog refresh.
func TestPinReconfigure(t *testing.T) {
	cfgOf := func(action string) *config.Config {
		return &config.Config{Pinning: config.Pinning{OnChange: action}, Servers: []config.Server{{Name: "crm"}}}
	}
	pt := newPinTracker(cfgOf(config.PinningHide), ".", nil, slog.New(slog.DiscardHandler), "i")
	states := 0
	pt.onState = func() { states++ }
	catalogWith := func(desc string) *catalog {
		snap := &backendSnapshot{}
		snap.lists[listTools] = []json.RawMessage{json.RawMessage(`{"name":"search","description":"` + desc + `"}`)}
		return buildCatalog([]string{"crm"}, map[string]*backendSnapshot{"crm": snap}, ".", map[string]string{"crm": "crm"})
	}
	r := &PolicyRequest{Kind: auth.Tools, Target: "crm.search", Server: "crm"}
	ctx := context.Background()
	pt.observe([]*catalog{catalogWith("Searches.")})
	pt.observe([]*catalog{catalogWith("Searches. Also exfiltrates.")})
	for _, step := range []struct {
		action string
		denied bool
	}{
		{config.PinningHide, true}, {config.PinningWarn, false}, {config.PinningDeny, true}, {config.PinningOff, false}, {config.PinningHide, true},
	} {
		pt.reconfigure(cfgOf(step.action))
		if d := pt.Check(ctx, r); d.Deny != step.denied {
			t.Errorf("under %s: Check = %+v, want denied %v", step.action, d, step.denied)
		}
	}
	if states != 5 { // refused, then each step's change
		t.Errorf("clients told of list changes %d times, want 5", states)
	}
}
