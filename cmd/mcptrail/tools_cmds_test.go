package main

import (
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
			ev, err := approval(hist, "tb", tt.tool, tt.hash, "alice@host")
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
