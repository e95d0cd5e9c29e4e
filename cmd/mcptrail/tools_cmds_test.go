package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
)

func TestApproval(t *testing.T) {
	hist := []recorder.PinEvent{
		{TimeNs: 1, Tool: "echo", Kind: recorder.PinPinned, Hash: "aaaaaaaa11", Definition: "v1"},
		{TimeNs: 2, Tool: "echo", Kind: recorder.PinChanged, Hash: "aaaaaaaa22", PrevHash: "aaaaaaaa11", Definition: "v2"},
		{TimeNs: 3, Tool: "echo", Kind: recorder.PinChanged, Hash: "bbbbbbbb33", PrevHash: "aaaaaaaa11", Definition: "v3"},
		{TimeNs: 4, Tool: "add", Kind: recorder.PinPinned, Hash: "cccccccc44", Definition: "a1"},
	}
	tests := []struct {
		name, tool, hash string
		want             string // approved hash; "" for nothing to do
		err              string
	}{
		{"newest change", "echo", "", "bbbbbbbb33", ""},
		{"named by prefix", "echo", "bbbbbbbb", "bbbbbbbb33", ""},
		{"full hash", "echo", "aaaaaaaa22", "aaaaaaaa22", ""},
		{"the pin itself", "echo", "aaaaaaaa11", "", ""},
		{"ambiguous prefix", "echo", "aaaaaaaa", "", "more than one version"},
		{"short prefix", "echo", "aaaa", "", "at least 8"},
		{"unknown hash", "echo", "dddddddd", "", "no version"},
		{"no change", "add", "", "", "no unapproved change"},
		{"unknown tool", "nope", "", "", "has seen tool tb.nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := approval(hist, "tb", tt.tool, ".", tt.hash, "alice@host")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("approval(%s, %q) error = %v, want %q", tt.tool, tt.hash, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("approval(%s, %q) error = %v", tt.tool, tt.hash, err)
			}
			got := ""
			if ev != nil {
				got = ev.Hash
				if ev.Kind != recorder.PinApproved || ev.PrevHash != "aaaaaaaa11" || ev.Actor != "alice@host" || ev.Definition == "" {
					t.Errorf("approval event = %+v", ev)
				}
			}
			if got != tt.want {
				t.Errorf("approval(%s, %q) approves %q, want %q", tt.tool, tt.hash, got, tt.want)
			}
		})
	}
}

// TestToolsUseSeparator: tools drift and tools approve name a tool as
// clients see it, in the config's namespace_separator, and approve takes
// it so. Fails before the fix: both wrote and took <server>.<tool>.
func TestToolsUseSeparator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcptrail.yaml")
	if err := os.WriteFile(path, []byte("namespace_separator: \"__\"\nservers:\n  - {name: tb, url: \"http://127.0.0.1:1/mcp\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sf := storeFlags{configPath: path, configSet: true}
	sep := sf.separator()
	if sep != "__" {
		t.Fatalf("separator() = %q, want __", sep)
	}
	var b strings.Builder
	ds := []drift{{Server: "tb", Tool: "echo", OldHash: "aaaaaaaa11", NewHash: "bbbbbbbb22", Action: "hide", Status: "pending"}}
	if err := renderDrift(&b, ds, sep); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "  tb__echo  ") || !strings.Contains(out, "mcptrail tools approve tb__echo --hash bbbbbbbb22") {
		t.Errorf("tools drift with namespace_separator __:\n%s\nwant tb__echo and its approve command", out)
	}
	if _, err := approval(nil, "tb", "nope", sep, "", "alice@host"); err == nil || !strings.Contains(err.Error(), "tool tb__nope") {
		t.Errorf("approval of an unknown tool: %v, want it named tb__nope", err)
	}
	if got := (&storeFlags{configPath: filepath.Join(t.TempDir(), "none.yaml")}).separator(); got != "." {
		t.Errorf("separator() without a config = %q, want .", got)
	}
}
