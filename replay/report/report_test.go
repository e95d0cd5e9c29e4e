package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
)

var update = flag.Bool("update", false, "rewrite golden files: go test ./replay/report -update")

func ex(id, target, resp string, us int64) diff.Exchange {
	return diff.Exchange{RequestID: id, Method: "tools/call", Server: "everything", Target: target, Response: json.RawMessage(resp), DurationUs: us}
}

func sampleCases() []Case {
	rules, _ := diff.ParseIgnoreRules([]string{"everything.echo:/_meta"})
	return []Case{
		Compared(ex("01R1", "everything.echo", `{"content":[{"type":"text","text":"hi"}]}`, 1200), ex("", "", `{"content":[{"type":"text","text":"hi"}]}`, 900), rules),
		Compared(ex("01R2", "everything.echo", `{"content":[{"type":"text","text":"hi"}],"_meta":{"t":1}}`, 1500), ex("", "", `{"content":[{"type":"text","text":"hi"}],"_meta":{"t":2}}`, 1100), rules),
		Compared(ex("01R3", "everything.add", `{"content":[{"type":"text","text":"The sum of 2 and 3 is 5."}]}`, 800),
			ex("", "", `{"content":[{"type":"text","text":"The sum of 2 and 3 is 6."}],"isError":true}`, 2500), nil),
		Compared(ex("01R4", "everything.add", `{"content":[{"type":"text","text":"ok"}],"structuredContent":{"n":1}}`, 700),
			ex("", "", `{"content":[{"type":"text","text":"ok"}],"structuredContent":{"n":1,"extra":"`+strings.Repeat("x", 80)+`"}}`, 600), nil),
		Failed(ex("01R5", "everything.longRunningOperation", ``, 5000000), errors.New("no recorded answer for tools/call everything/longRunningOperation")),
		Skipped(diff.Exchange{RequestID: "01R6", Method: "resources/read", Server: "everything", Target: "test://static/resource/1"}, "unresolved secret: rule api_key"),
		{RequestID: "01R7", Method: "tools/list", Server: "everything", Status: StatusIdentical, RecordedUs: 300, ReplayUs: 250},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run go test ./replay/report -update): %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./replay/report -update if intended); got:\n%s", path, got)
	}
}

func TestRenderGolden(t *testing.T) {
	r := Build("mock", sampleCases(), 10)
	var text, js, junit bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJUnit(&junit, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.txt", text.Bytes())
	golden(t, "report.golden.json", js.Bytes())
	golden(t, "report.golden.xml", junit.Bytes())

	// The JUnit output is well-formed and counts one failure per regression.
	var s junitSuites
	if err := xml.Unmarshal(junit.Bytes(), &s); err != nil {
		t.Fatalf("JUnit output does not parse: %v", err)
	}
	if s.Tests != 7 || s.Failures != r.Regressions() || s.Skipped != 1 {
		t.Errorf("JUnit tests=%d failures=%d skipped=%d, want 7 %d 1", s.Tests, s.Failures, s.Skipped, r.Regressions())
	}
}

func TestBuildCounts(t *testing.T) {
	r := Build("mock", sampleCases(), 2)
	want := map[string]ToolSummary{
		"everything.echo":                 {Replayed: 2, Identical: 2},
		"everything.add":                  {Replayed: 2, Changed: 2},
		"everything.longRunningOperation": {Replayed: 1, Failed: 1},
		"test://static/resource/1":        {Skipped: 1},
		"tools/list everything":           {Replayed: 1, Identical: 1},
	}
	if len(r.Tools) != len(want) {
		t.Fatalf("%d tools, want %d: %+v", len(r.Tools), len(want), r.Tools)
	}
	for _, ts := range r.Tools {
		w := want[ts.Tool]
		if ts.Replayed != w.Replayed || ts.Identical != w.Identical || ts.Changed != w.Changed || ts.Failed != w.Failed || ts.Skipped != w.Skipped {
			t.Errorf("%s = %+v, want %+v", ts.Tool, ts, w)
		}
	}
	if r.Total.Replayed != 6 || r.Total.Skipped != 1 || r.Regressions() != 3 {
		t.Errorf("total = %+v regressions %d, want replayed 6 skipped 1 regressions 3", r.Total, r.Regressions())
	}
	if len(r.Top) != 2 || r.Top[0].Risk != diff.RiskHigh || r.Top[0].Path != "" {
		t.Errorf("Top = %+v, want 2 entries led by the outcome change", r.Top)
	}
	for _, ts := range r.Tools {
		if ts.Tool == "everything.echo" && (ts.RecordedP50Us != 1200 || ts.RecordedP99Us != 1500 || ts.ReplayP50Us != 900 || ts.ReplayP99Us != 1100) {
			t.Errorf("echo latency = %+v, want rec 1200/1500 replay 900/1100", ts)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := []int64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want int64
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}, {10, 1}, {11, 2}}
	for _, tt := range tests {
		if got := Percentile(xs, tt.p); got != tt.want {
			t.Errorf("Percentile(1..10, %v) = %d, want %d", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile(nil) != 0")
	}
	if xs[0] != 5 {
		t.Error("Percentile sorted its input")
	}
}

func TestNoise(t *testing.T) {
	base := ex("R1", "everything.time", `{"now":"10:00","id":1,"v":1,"isError":false}`, 100)
	base2 := ex("R2", "everything.time", `{"now":"10:00","id":1,"v":1}`, 100)
	// Run A and run B: "now" differs between runs (noise); "v" changed the
	// same way in both (a real regression); "id" changed in A only (noise).
	runA := []Case{
		Compared(base, ex("", "", `{"now":"11:00","id":2,"v":2,"isError":false}`, 100), nil),
		Compared(base2, ex("", "", `{"now":"11:00","id":1,"v":1}`, 100), nil),
	}
	runB := []Case{
		Compared(base2, ex("", "", `{"now":"12:00","id":1,"v":1}`, 100), nil),
		Compared(base, ex("", "", `{"now":"12:00","id":1,"v":2,"isError":false}`, 100), nil),
	}
	ns := Noise(runA, runB)
	got := ns["everything.time"]
	if len(got) != 2 || !got["/now"] || !got["/id"] {
		t.Fatalf("Noise = %v, want /now and /id", ns)
	}
	cases := ns.Apply(runA)
	if cases[0].Status != StatusChanged || len(cases[0].Diff.Changes) != 1 || cases[0].Diff.Changes[0].Path != "/v" || cases[0].NoiseChanges != 2 {
		t.Errorf("R1 after noise = %+v, want changed at /v only", cases[0])
	}
	if cases[1].Status != StatusNoise || cases[1].NoiseChanges != 1 {
		t.Errorf("R2 after noise = %+v, want status noise", cases[1])
	}

	// Outcome changes are never noise.
	okA := Compared(ex("R3", "x", `{"a":1}`, 0), ex("", "", `{"a":1}`, 0), nil)
	errB := Compared(ex("R3", "x", `{"a":1}`, 0), diff.Exchange{Outcome: recorder.OutcomeTransportError}, nil)
	if ns := Noise([]Case{okA}, []Case{errB}); len(ns["x"]) != 0 {
		t.Errorf("outcome change counted as noise: %v", ns)
	}

	// A request that was not compared in one pass (failed, skipped) says
	// nothing about noise: its changes in the other pass are not noise, and
	// the same change on another request of the tool stays a regression.
	reg := func(id string) Case {
		return Compared(ex(id, "y", `{"v":1}`, 0), ex("", "", `{"v":2}`, 0), nil)
	}
	for _, notCompared := range []Case{
		Failed(ex("R4", "y", `{"v":1}`, 0), errors.New("timeout")),
		Skipped(ex("R4", "y", `{"v":1}`, 0), "unresolved secret"),
	} {
		for _, pair := range [][2][]Case{
			{{notCompared, reg("R5")}, {reg("R4"), reg("R5")}},
			{{reg("R4"), reg("R5")}, {notCompared, reg("R5")}},
		} {
			ns := Noise(pair[0], pair[1])
			if len(ns["y"]) != 0 {
				t.Errorf("%s in one pass: Noise = %v, want none", notCompared.Status, ns)
			}
			if cs := ns.Apply([]Case{reg("R5")}); cs[0].Status != StatusChanged {
				t.Errorf("%s in one pass: the regression of R5 became %s", notCompared.Status, cs[0].Status)
			}
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	var cases []Case
	for len(cases) < 1000 {
		cases = append(cases, sampleCases()...)
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n += Build("mock", cases, 10).Total.Replayed
	}
	if n != b.N*len(cases)*6/7 {
		b.Fatalf("replayed = %d", n)
	}
}

// Issue 9.5: long values that differ late printed identically.
func TestWindowShowsTheDifference(t *testing.T) {
	long := strings.Repeat("Invalid input: expected number, received string at a. ", 3)
	tests := []struct{ old, new, wantOld, wantNew string }{
		{`"short"`, `"other"`, `"short"`, `"other"`},
		{"", `"x"`, "∅", `"x"`},
	}
	for _, tt := range tests[:2] {
		if o, n := window(tt.old, tt.new); o != tt.wantOld || n != tt.wantNew {
			t.Errorf("window(%s, %s) = %s, %s; want %s, %s", tt.old, tt.new, o, n, tt.wantOld, tt.wantNew)
		}
	}
	o, n := window(`"`+long+`one"`, `"`+long+`two"`)
	if o == n || !strings.Contains(o, "one") || !strings.Contains(n, "two") || !strings.HasPrefix(o, "…") {
		t.Errorf("window of values differing at the end = %q, %q; want both cut around one/two", o, n)
	}
	if r := []rune(o); len(r) > maxValueRunes {
		t.Errorf("window = %d runes, want ≤ %d", len(r), maxValueRunes)
	}
}

// Issue 9.6 and 9.7: every group is counted, outcome changes come first,
// and noise names its paths.
func TestBuildCountsGroupsAndNamesNoise(t *testing.T) {
	var cases []Case
	for i := range 12 {
		cases = append(cases, Compared(ex("R", "t.x", fmt.Sprintf(`{"a%d":1}`, i), 1), ex("", "", `{}`, 1), nil))
	}
	cases = append(cases, Compared(ex("E", "t.sum", `{"content":[]}`, 1), ex("", "", `{"code":-32602,"message":"Unknown tool: get-sum"}`, 1), nil))
	noisy := Compared(ex("N", "t.now", `{"t":1}`, 1), ex("", "", `{"t":2}`, 1), nil)
	cases = append(cases, NoiseSet{"t.now": {"/t": true}}.Apply([]Case{noisy})...)
	r := Build("upstream", cases, 10)
	if r.Top[0].Kind != diff.KindOutcomeChanged || r.Top[0].New != `"jsonrpc_error -32602: Unknown tool: get-sum"` {
		t.Errorf("Top[0] = %+v, want the outcome change with its message", r.Top[0])
	}
	if r.MoreDiffs != 3 {
		t.Errorf("MoreDiffs = %d, want 3 (13 groups, 10 shown)", r.MoreDiffs)
	}
	if len(r.Noise) != 1 || r.Noise[0] != (NoisePath{Tool: "t.now", Path: "/t", Count: 1}) {
		t.Errorf("Noise = %+v, want t.now /t ×1", r.Noise)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"… and 3 more difference group(s)", "t.now  /t  ×1"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// Issue 8: a list in another order is reported on its own, low risk, and
// does not fail the run; any other change with it does.
func TestOrderOnlyIsReportedNotARegression(t *testing.T) {
	list := func(resp string) diff.Exchange {
		return diff.Exchange{RequestID: "L", Method: "tools/list", Server: "s", Response: json.RawMessage(resp)}
	}
	reordered := Compared(list(`{"tools":[{"name":"a"},{"name":"b"}]}`), list(`{"tools":[{"name":"b"},{"name":"a"}]}`), nil)
	changed := Compared(list(`{"tools":[{"name":"a"},{"name":"b"}]}`), list(`{"tools":[{"name":"b","title":"B"},{"name":"a"}]}`), nil)
	if reordered.Status != StatusReordered || reordered.Regression() || changed.Status != StatusChanged || !changed.Regression() {
		t.Fatalf("reordered: %s (regression %v); reordered and changed: %s (regression %v)", reordered.Status, reordered.Regression(), changed.Status, changed.Regression())
	}
	r := Build("mock", []Case{reordered}, 10)
	if r.Regressions() != 0 || r.Total.Reordered != 1 || len(r.Top) != 1 || r.Top[0].Kind != diff.KindOrderChanged || r.Top[0].Risk != diff.RiskLow {
		t.Errorf("report of a reordered list: regressions %d, reordered %d, top %+v", r.Regressions(), r.Total.Reordered, r.Top)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "1 answer(s) only list the same named items in another order") || !strings.Contains(text.String(), "PASS") {
		t.Errorf("text report:\n%s", text.String())
	}
}
