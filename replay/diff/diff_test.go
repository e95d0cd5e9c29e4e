package diff

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"key order", `{"b":1,"a":{"d":2,"c":3}}`, `{"a":{"c":3,"d":2},"b":1}`},
		{"whitespace", " [ 1 , 2 ,\n3 ] ", `[1,2,3]`},
		{"float spellings", `[1.0, 1e0, 10E-1, 100, 1.5e2, -0, 0.0]`, `[1,1,1,100,150,0,0]`},
		{"small and large", `[0.0000001, 1e21, 123456789012345678901234567890]`, `[1e-7,1e+21,123456789012345678901234567890]`},
		{"big int kept exact", `9007199254740993`, `9007199254740993`},
		{"string escapes", `"a\u0041<>&\u00ab\n"`, `"aA<>&«\n"`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"duplicate key last wins", `{"a":1,"a":2}`, `{"a":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonical(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
	for _, bad := range []string{``, `{`, `{"a":1} x`, `[1,]`} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%q) = nil error, want error", bad)
		}
	}
}

func mustParse(t testing.TB, s string) any {
	t.Helper()
	v, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%s): %v", s, err)
	}
	return v
}

func changeStrings(cs []Change) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return strings.Join(out, "\n")
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		rules    []string
		want     []string
	}{
		{name: "equal after canonicalisation", old: `{"a":1.0,"b":[1,2]}`, new: `{"b":[1,2],"a":1}`},
		{name: "value changed", old: `{"a":"x"}`, new: `{"a":"y"}`,
			want: []string{`value_changed /a (medium): "x" → "y"`}},
		{name: "added is low", old: `{}`, new: `{"n":1}`,
			want: []string{`added /n (low): ∅ → 1`}},
		{name: "removed is medium", old: `{"n":1}`, new: `{}`,
			want: []string{`removed /n (medium): 1 → ∅`}},
		{name: "type changed", old: `{"n":1}`, new: `{"n":"1"}`,
			want: []string{`type_changed /n (medium): 1 → "1"`}},
		{name: "whole document type change is high", old: `{}`, new: `[]`,
			want: []string{`type_changed / (high): {} → []`}},
		{name: "isError is high", old: `{"isError":false}`, new: `{"isError":true}`,
			want: []string{`value_changed /isError (high): false → true`}},
		{name: "content type is high", old: `{"content":[{"type":"text"}]}`, new: `{"content":[{"type":"image"}]}`,
			want: []string{`value_changed /content/0/type (high): "text" → "image"`}},
		{name: "arrays index-wise", old: `[1,2,3]`, new: `[1,3]`,
			want: []string{`value_changed /1 (medium): 2 → 3`, `removed /2 (medium): 3 → ∅`}},
		{name: "array grows", old: `[1]`, new: `[1,{"a":1}]`,
			want: []string{`added /1 (low): ∅ → {"a":1}`}},
		{name: "pointer escaping", old: `{"a/b":{"~c":1}}`, new: `{"a/b":{"~c":2}}`,
			want: []string{`value_changed /a~1b/~0c (medium): 1 → 2`}},
		{name: "nested keys sorted", old: `{"z":1,"a":{"y":1,"b":1}}`, new: `{"z":2,"a":{"y":2,"b":2}}`,
			want: []string{`value_changed /a/b (medium): 1 → 2`, `value_changed /a/y (medium): 1 → 2`, `value_changed /z (medium): 1 → 2`}},
		{name: "ignore wildcard", old: `{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"x":1}`,
			new: `{"content":[{"type":"text","text":"c"},{"type":"text","text":"d"}],"x":2}`, rules: []string{"/content/*/text"},
			want: []string{`value_changed /x (medium): 1 → 2`}},
		{name: "ignore subtree and additions", old: `{"_meta":{"a":1}}`, new: `{"_meta":{"a":2,"b":3}}`, rules: []string{"/_meta"}},
		{name: "ignore double star", old: `{"a":{"b":{"ts":1}},"ts":1}`, new: `{"a":{"b":{"ts":2}},"ts":2}`, rules: []string{"/**/ts"}},
		{name: "ignore added member", old: `{}`, new: `{"ts":5}`, rules: []string{"/ts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := ParseIgnoreRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			got := changeStrings(Diff(mustParse(t, tt.old), mustParse(t, tt.new), rules))
			if want := strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Diff(%s, %s) =\n%s\nwant\n%s", tt.old, tt.new, got, want)
			}
		})
	}
}

func TestParseIgnoreRule(t *testing.T) {
	tests := []struct {
		in                   string
		server, target, path string
		wantErr              bool
	}{
		{in: "/content/*/text", path: "/content/*/text"},
		{in: "everything.echo:/a", target: "everything.echo", path: "/a"},
		{in: "everything:*:/a~1b", server: "everything", target: "*", path: "/a~1b"},
		{in: "no-pointer", wantErr: true},
		{in: "a:b:c:/x", wantErr: true},
		{in: "missingcolon/x", wantErr: true},
		{in: "[:/x", wantErr: true},
	}
	for _, tt := range tests {
		r, err := ParseIgnoreRule(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIgnoreRule(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (r.Server != tt.server || r.Target != tt.target || r.Path != tt.path) {
			t.Errorf("ParseIgnoreRule(%q) = %+v, want server=%q target=%q path=%q", tt.in, r, tt.server, tt.target, tt.path)
		}
	}
}

func TestIgnoreRulesFor(t *testing.T) {
	rules, err := ParseIgnoreRules([]string{"everything.echo:/a", "everything:*:/b", "other:*:/c", "/d"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		server, target string
		want           []string
	}{
		{"everything", "everything.echo", []string{"/a", "/b", "/d"}},
		{"everything", "everything.add", []string{"/b", "/d"}},
		{"other", "other.x", []string{"/c", "/d"}},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range rules.For(tt.server, tt.target) {
			got = append(got, r.Path)
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("For(%s, %s) = %v, want %v", tt.server, tt.target, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		x    Exchange
		want recorder.Outcome
		code int
	}{
		{"result", Exchange{Response: json.RawMessage(`{"content":[]}`)}, recorder.OutcomeOK, 0},
		{"tool error", Exchange{Response: json.RawMessage(`{"content":[],"isError":true}`)}, recorder.OutcomeToolError, 0},
		{"error object", Exchange{Response: json.RawMessage(`{"code":-32602,"message":"bad"}`)}, recorder.OutcomeJSONRPCError, -32602},
		{"error object with data", Exchange{Response: json.RawMessage(`{"code":-1,"message":"bad","data":{}}`)}, recorder.OutcomeJSONRPCError, -1},
		{"result that merely has code", Exchange{Response: json.RawMessage(`{"code":1,"message":"x","content":[]}`)}, recorder.OutcomeOK, 0},
		{"envelope error", Exchange{Response: json.RawMessage(`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}`)}, recorder.OutcomeJSONRPCError, -32601},
		{"envelope result", Exchange{Response: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"isError":true}}`)}, recorder.OutcomeToolError, 0},
		{"no answer", Exchange{}, recorder.OutcomeTransportError, 0},
		{"recorded outcome wins", Exchange{Outcome: recorder.OutcomeJSONRPCError, ErrorCode: -32001, Response: json.RawMessage(`{"x":1}`)}, recorder.OutcomeJSONRPCError, -32001},
	}
	for _, tt := range tests {
		got, code := Classify(tt.x)
		if got != tt.want || code != tt.code {
			t.Errorf("%s: Classify(%s) = %v %d, want %v %d", tt.name, tt.x.Response, got, code, tt.want, tt.code)
		}
	}
}

func TestCompare(t *testing.T) {
	ex := func(resp string) Exchange {
		return Exchange{Method: "tools/call", Server: "everything", Target: "everything.echo", Response: json.RawMessage(resp)}
	}
	tests := []struct {
		name     string
		old, new Exchange
		rules    []string
		want     []string
		maxRisk  Risk
	}{
		{name: "identical", old: ex(`{"content":[{"type":"text","text":"hi"}]}`), new: ex(`{ "content" : [ {"text":"hi","type":"text"} ] }`)},
		{name: "outcome first", old: ex(`{"content":[{"type":"text","text":"hi"}]}`), new: ex(`{"content":[{"type":"text","text":"boom"}],"isError":true}`),
			want: []string{
				`outcome_changed / (high): "ok" → "tool_error: boom"`,
				`value_changed /content/0/text (medium): "hi" → "boom"`,
			}, maxRisk: RiskHigh},
		{name: "error code change", old: ex(`{"code":-32602,"message":"bad"}`), new: ex(`{"code":-32603,"message":"bad"}`),
			want: []string{
				`outcome_changed / (high): "jsonrpc_error -32602: bad" → "jsonrpc_error -32603: bad"`,
				`value_changed /code (high): -32602 → -32603`,
			}, maxRisk: RiskHigh},
		{name: "transport error skips body diff", old: ex(`{"content":[]}`), new: Exchange{Outcome: recorder.OutcomeTransportError},
			want: []string{`outcome_changed / (high): "ok" → "transport_error"`}, maxRisk: RiskHigh},
		{name: "ignored per target", old: ex(`{"content":[{"type":"text","text":"a"}]}`), new: ex(`{"content":[{"type":"text","text":"b"}]}`),
			rules: []string{"everything.echo:/content/*/text"}},
		{name: "rule for another target does not apply", old: ex(`{"content":[{"type":"text","text":"a"}]}`), new: ex(`{"content":[{"type":"text","text":"b"}]}`),
			rules: []string{"everything.add:/content/*/text"},
			want:  []string{`value_changed /content/0/text (medium): "a" → "b"`}, maxRisk: RiskMedium},
		{name: "ok to error: message in the outcome, no member diff", old: ex(`{"content":[{"type":"text","text":"3"}]}`), new: ex(`{"code":-32602,"message":"Unknown tool: get-sum"}`),
			want: []string{`outcome_changed / (high): "ok" → "jsonrpc_error -32602: Unknown tool: get-sum"`}, maxRisk: RiskHigh},
		{name: "root rule silences everything", old: ex(`{"content":[]}`), new: ex(`{"code":-32602,"message":"x"}`),
			rules: []string{"everything.echo:/**"}},
		{name: "root rule for another target does not apply", old: ex(`{"content":[]}`), new: ex(`{"content":[],"isError":true}`),
			rules: []string{"everything.add:/**"},
			want:  []string{`outcome_changed / (high): "ok" → "tool_error"`}, maxRisk: RiskHigh},
		{name: "invalid json falls back to bytes", old: ex(`{"trunc`), new: ex(`{"trunc2`),
			want: []string{`value_changed / (medium): {"trunc → {"trunc2`}, maxRisk: RiskMedium},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := ParseIgnoreRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			res := Compare(tt.old, tt.new, rules)
			if got, want := changeStrings(res.Changes), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Compare changes =\n%s\nwant\n%s", got, want)
			}
			if res.MaxRisk() != tt.maxRisk {
				t.Errorf("MaxRisk = %v, want %v", res.MaxRisk(), tt.maxRisk)
			}
			if res.Identical() != (len(tt.want) == 0) {
				t.Errorf("Identical = %v, want %v", res.Identical(), len(tt.want) == 0)
			}
		})
	}
}

func TestCompareCountsIgnored(t *testing.T) {
	rules, _ := ParseIgnoreRules([]string{"/ts"})
	res := Compare(Exchange{Response: json.RawMessage(`{"ts":1}`)}, Exchange{Response: json.RawMessage(`{"ts":2}`)}, rules)
	if !res.Identical() || res.Ignored != 1 {
		t.Errorf("Compare with ignored ts: identical=%v ignored=%d, want true 1", res.Identical(), res.Ignored)
	}
}

func FuzzDiff(f *testing.F) {
	seeds := [][2]string{
		{`{"a":1}`, `{"a":1.0}`},
		{`{"content":[{"type":"text","text":"a"}]}`, `{"content":[{"type":"image"}],"isError":true}`},
		{`[1,2,3]`, `[3]`},
		{`9007199254740993`, `9007199254740992`},
		{`{"a/b":{"~":null}}`, `"x"`},
		{`1e400`, `1E400`},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		av, errA := Parse(a)
		bv, errB := Parse(b)
		if errA != nil || errB != nil {
			return
		}
		if cs := Diff(av, av, nil); len(cs) != 0 {
			t.Fatalf("Diff(a, a) = %v, want none", cs)
		}
		ca, cb := AppendCanonical(nil, av), AppendCanonical(nil, bv)
		again, err := Canonical(ca)
		if err != nil || string(again) != string(ca) {
			t.Fatalf("Canonical not idempotent: %s → %s (%v)", ca, again, err)
		}
		cs := Diff(av, bv, nil)
		if (len(cs) == 0) != (string(ca) == string(cb)) {
			t.Fatalf("Diff(%s, %s) = %v but canonical equal = %v", ca, cb, cs, string(ca) == string(cb))
		}
		for _, c := range cs {
			if _, err := SplitPointer(c.Path); err != nil {
				t.Fatalf("bad pointer %q: %v", c.Path, err)
			}
		}
	})
}

func BenchmarkCompare(b *testing.B) {
	old := Exchange{Response: json.RawMessage(`{"content":[{"type":"text","text":"hello world"},{"type":"text","text":"x"}],"structuredContent":{"a":1,"b":[1,2,3],"c":{"d":"e"}}}`)}
	new := Exchange{Response: json.RawMessage(`{"content":[{"type":"text","text":"hello world"},{"type":"text","text":"y"}],"structuredContent":{"a":1,"b":[1,2,4],"c":{"d":"e"}}}`)}
	var n int
	b.ReportAllocs()
	for b.Loop() {
		n += len(Compare(old, new, nil).Changes)
	}
	if n != 2*b.N {
		b.Fatalf("changes = %d, want %d", n, 2*b.N)
	}
}

// TestCompareCatalog: lists of named things compare by identity, so a
// reordered catalog is one low-risk order change, not a diff per position.
func TestCompareCatalog(t *testing.T) {
	list := func(method, resp string) Exchange {
		return Exchange{Method: method, Server: "everything", Response: json.RawMessage(resp)}
	}
	tests := []struct {
		name     string
		method   string
		old, new string
		want     []string
		maxRisk  Risk
	}{
		{name: "same tools in another order", method: "tools/list",
			old: `{"tools":[{"name":"a"},{"name":"b"},{"name":"c"}]}`, new: `{"tools":[{"name":"c"},{"name":"a"},{"name":"b"}]}`,
			want: []string{`order_changed /tools (low): ["a","b","c"] → ["c","a","b"]`}, maxRisk: RiskLow},
		{name: "removed tool is high, added is low, changes by name", method: "tools/list",
			old: `{"tools":[{"name":"a","annotations":{"readOnlyHint":true}},{"name":"b"}]}`,
			new: `{"tools":[{"name":"c"},{"name":"a"}]}`,
			want: []string{
				`removed /tools/a/annotations (medium): {"readOnlyHint":true} → ∅`,
				`removed /tools/b (high): {"name":"b"} → ∅`,
				`added /tools/c (low): ∅ → {"name":"c"}`,
			}, maxRisk: RiskHigh},
		{name: "newly required argument is high, required compared as a set", method: "tools/list",
			old: `{"tools":[{"name":"a","inputSchema":{"type":"object","required":["x"]}}]}`,
			new: `{"tools":[{"name":"a","inputSchema":{"type":"object","required":["y","x"],"additionalProperties":false}}]}`,
			want: []string{
				`added /tools/a/inputSchema/additionalProperties (medium): ∅ → false`,
				`added /tools/a/inputSchema/required/y (high): ∅ → "y"`,
			}, maxRisk: RiskHigh},
		{name: "prompt arguments by name", method: "prompts/list",
			old: `{"prompts":[{"name":"p","arguments":[{"name":"x"},{"name":"y","required":false}]}]}`,
			new: `{"prompts":[{"name":"p","arguments":[{"name":"y","required":true},{"name":"x","description":"d"}]}]}`,
			want: []string{
				`added /prompts/p/arguments/x/description (medium): ∅ → "d"`,
				`value_changed /prompts/p/arguments/y/required (high): false → true`,
				`order_changed /prompts/p/arguments (low): ["x","y"] → ["y","x"]`,
			}, maxRisk: RiskHigh},
		{name: "resources by uri, templates by uriTemplate", method: "resources/list",
			old: `{"resources":[{"uri":"a://1","name":"one"},{"uri":"a://2","name":"two"}]}`, new: `{"resources":[{"uri":"a://2","name":"two"},{"uri":"a://1","name":"uno"}]}`,
			want: []string{
				`value_changed /resources/a:~1~11/name (medium): "one" → "uno"`,
				`order_changed /resources (low): ["a://1","a://2"] → ["a://2","a://1"]`,
			}, maxRisk: RiskMedium},
		{name: "duplicate names fall back to positions", method: "tools/list",
			old: `{"tools":[{"name":"a"},{"name":"a"}]}`, new: `{"tools":[{"name":"a"}]}`,
			want: []string{`removed /tools/1 (high): {"name":"a"} → ∅`}, maxRisk: RiskHigh},
		{name: "tool call content stays positional", method: "tools/call",
			old: `{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}`, new: `{"content":[{"type":"text","text":"b"},{"type":"text","text":"a"}]}`,
			want: []string{`value_changed /content/0/text (medium): "a" → "b"`, `value_changed /content/1/text (medium): "b" → "a"`}, maxRisk: RiskMedium},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Compare(list(tt.method, tt.old), list(tt.method, tt.new), nil)
			if got, want := changeStrings(res.Changes), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Compare(%s) changes =\n%s\nwant\n%s", tt.method, got, want)
			}
			if res.MaxRisk() != tt.maxRisk {
				t.Errorf("MaxRisk = %v, want %v", res.MaxRisk(), tt.maxRisk)
			}
		})
	}
}

// Issue 8: progress notifications are compared (count, order, content),
// tokens and _meta aside.
func TestCompareProgress(t *testing.T) {
	p := func(ss ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, s := range ss {
			out = append(out, json.RawMessage(s))
		}
		return out
	}
	tests := []struct {
		name     string
		old, new []json.RawMessage
		want     []string
	}{
		{"same, other token", p(`{"progressToken":"a","progress":1,"total":2}`, `{"progressToken":"a","progress":2,"total":2}`),
			p(`{"progressToken":"replay-7","progress":1,"total":2,"_meta":{"x":1}}`, `{"progressToken":"replay-7","progress":2.0,"total":2}`), nil},
		{"lost", p(`{"progress":1}`, `{"progress":2}`), p(`{"progress":1}`), []string{`removed /(progress)/1 (medium): {"progress":2} → ∅`}},
		{"extra", nil, p(`{"progress":1}`), []string{`added /(progress)/0 (low): ∅ → {"progress":1}`}},
		{"reordered", p(`{"progress":1}`, `{"progress":2}`), p(`{"progress":2}`, `{"progress":1}`),
			[]string{`value_changed /(progress)/0/progress (low): 1 → 2`, `value_changed /(progress)/1/progress (low): 2 → 1`}},
	}
	for _, tt := range tests {
		if got, want := changeStrings(CompareProgress(tt.old, tt.new, nil)), strings.Join(tt.want, "\n"); got != want {
			t.Errorf("%s: CompareProgress =\n%s\nwant\n%s", tt.name, got, want)
		}
	}
}
