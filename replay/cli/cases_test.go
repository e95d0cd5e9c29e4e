package cli_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mcptrail/mcptrail/replay/cli"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/report"
)

// TestCasesRoundTrip: what Results stores, Cases reads back as the same
// verdicts and differences (the console summarises stored runs with it).
func TestCasesRoundTrip(t *testing.T) {
	in := []report.Case{
		{RequestID: "a", Target: "t.x", Status: report.StatusIdentical, RecordedUs: 5, ReplayUs: 7},
		{RequestID: "b", Target: "t.x", Status: report.StatusChanged, Diff: diff.Result{Changes: []diff.Change{
			{Path: "", Kind: diff.KindOutcomeChanged, Risk: diff.RiskHigh, Old: json.RawMessage(`{"outcome":"ok"}`), New: json.RawMessage(`{"outcome":"tool_error"}`)},
			{Path: "/content/0/text", Kind: diff.KindValueChanged, Risk: diff.RiskMedium, Old: json.RawMessage(`"a"`), New: json.RawMessage(`"b"`)}}}},
		{RequestID: "c", Target: "t.y", Status: report.StatusFailed, Reason: "boom"},
		{RequestID: "d", Target: "t.y", Status: report.StatusSkipped, Reason: "secret"},
		{RequestID: "e", Target: "t.y", Status: report.StatusReordered, Diff: diff.Result{Changes: []diff.Change{{Path: "/tools", Kind: diff.KindOrderChanged, Risk: diff.RiskLow}}}},
		{RequestID: "f", Target: "t.y", Status: report.StatusNoise, NoiseChanges: 2, NoisePaths: []string{"/content/0/text", "/_meta/ts"}},
		{RequestID: "g", Target: "t.y", Status: report.StatusChanged, NoiseChanges: 1, NoisePaths: []string{"/_meta/ts"},
			Diff: diff.Result{Changes: []diff.Change{{Path: "/isError", Kind: diff.KindAdded, Risk: diff.RiskHigh, New: json.RawMessage(`true`)}}}},
	}
	got := cli.Cases(cli.Results(in))
	for i, c := range got {
		w := in[i]
		if c.RequestID != w.RequestID || c.Tool() != w.Tool() || c.Status != w.Status || c.Reason != w.Reason || c.RecordedUs != w.RecordedUs || c.NoiseChanges != w.NoiseChanges || !reflect.DeepEqual(c.NoisePaths, w.NoisePaths) ||
			!reflect.DeepEqual(c.Diff.Changes, w.Diff.Changes) {
			t.Errorf("Cases(Results(%+v)) = %+v", w, c)
		}
	}
}
