package match

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mcptrail/mcptrail/replay/diff"
)

func call(name, args, result string) diff.Exchange {
	return diff.Exchange{
		Method:   "tools/call",
		Server:   "everything",
		Request:  json.RawMessage(`{"name":"` + name + `","arguments":` + args + `,"_meta":{"progressToken":7}}`),
		Response: json.RawMessage(result),
	}
}

func newStore(t *testing.T, cfg Config, xs ...diff.Exchange) *Store {
	t.Helper()
	s := NewStore(cfg)
	for _, x := range xs {
		if err := s.Add(x); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	return s
}

func TestLookupSequence(t *testing.T) {
	s := newStore(t, Config{},
		call("echo", `{"message":"a"}`, `{"n":1}`),
		call("echo", `{"message":"b"}`, `{"n":2}`),
		call("echo", `{"message":"a"}`, `{"n":3}`),
	)
	tests := []struct {
		params string
		want   string
	}{
		// _meta differs and key order differs: still the same request.
		{`{"arguments":{"message":"a"},"name":"echo","_meta":{"traceparent":"00-x"}}`, `{"n":1}`},
		{`{"name":"echo","arguments":{"message":"a"}}`, `{"n":3}`},
		{`{"name":"echo","arguments":{"message":"a"}}`, `{"n":3}`}, // last repeats
		{`{"name":"echo","arguments":{"message":"b"}}`, `{"n":2}`},
		{`{"name":"echo","arguments":{"message":"b"}}`, `{"n":2}`},
	}
	for i, tt := range tests {
		x, err := s.Lookup("tools/call", "everything", json.RawMessage(tt.params))
		if err != nil {
			t.Fatalf("step %d: Lookup(%s): %v", i, tt.params, err)
		}
		if string(x.Response) != tt.want {
			t.Errorf("step %d: Lookup(%s) = %s, want %s", i, tt.params, x.Response, tt.want)
		}
	}
	s.Reset()
	x, _ := s.Lookup("tools/call", "everything", json.RawMessage(`{"name":"echo","arguments":{"message":"a"}}`))
	if string(x.Response) != `{"n":1}` {
		t.Errorf("after Reset: %s, want {\"n\":1}", x.Response)
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

func TestSessionMethodsReusable(t *testing.T) {
	s := newStore(t, Config{},
		diff.Exchange{Method: "initialize", Server: "everything", Request: json.RawMessage(`{"protocolVersion":"2025-06-18","clientInfo":{"name":"a"}}`), Response: json.RawMessage(`{"protocolVersion":"2025-06-18"}`)},
		diff.Exchange{Method: "tools/list", Server: "everything", Request: json.RawMessage(`{}`), Response: json.RawMessage(`{"tools":[],"nextCursor":"p2"}`)},
		diff.Exchange{Method: "tools/list", Server: "everything", Request: json.RawMessage(`{"cursor":"p2"}`), Response: json.RawMessage(`{"tools":[{"name":"x"}]}`)},
	)
	for i := 0; i < 3; i++ {
		x, err := s.Lookup("initialize", "everything", json.RawMessage(`{"protocolVersion":"2025-11-25","clientInfo":{"name":"other"}}`))
		if err != nil || string(x.Response) != `{"protocolVersion":"2025-06-18"}` {
			t.Fatalf("initialize #%d = %s, %v", i, x.Response, err)
		}
		x, err = s.Lookup("tools/list", "everything", nil)
		if err != nil || !strings.Contains(string(x.Response), "p2") {
			t.Fatalf("tools/list #%d = %s, %v", i, x.Response, err)
		}
		x, err = s.Lookup("tools/list", "everything", json.RawMessage(`{"cursor":"p2","_meta":{}}`))
		if err != nil || !strings.Contains(string(x.Response), `"x"`) {
			t.Fatalf("tools/list page 2 #%d = %s, %v", i, x.Response, err)
		}
	}
	if x, ok := s.Session("initialize", "everything"); !ok || string(x.Response) != `{"protocolVersion":"2025-06-18"}` {
		t.Errorf("Session(initialize) = %s, %v", x.Response, ok)
	}
	if _, ok := s.Session("initialize", "other"); ok {
		t.Errorf("Session(initialize, other) found, want none")
	}
}

func TestIgnoreParams(t *testing.T) {
	rules, err := diff.ParseIgnoreRules([]string{"everything.echo:/arguments/now", "/arguments/list/*/id"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Config{IgnoreParams: rules},
		call("echo", `{"message":"a","now":1}`, `{"ok":1}`),
		call("add", `{"a":1,"now":1}`, `{"ok":2}`),
		call("list", `{"list":[{"id":1,"v":"x"}]}`, `{"ok":3}`),
	)
	tests := []struct {
		params, want string
		miss         bool
	}{
		{params: `{"name":"echo","arguments":{"message":"a","now":99}}`, want: `{"ok":1}`},
		{params: `{"name":"echo","arguments":{"message":"a"}}`, want: `{"ok":1}`},
		{params: `{"name":"add","arguments":{"a":1,"now":99}}`, miss: true}, // rule is for echo only
		{params: `{"name":"list","arguments":{"list":[{"id":7,"v":"x"}]}}`, want: `{"ok":3}`},
	}
	for _, tt := range tests {
		x, err := s.Lookup("tools/call", "everything", json.RawMessage(tt.params))
		if tt.miss {
			if !errors.Is(err, ErrNoMatch) {
				t.Errorf("Lookup(%s) err = %v, want ErrNoMatch", tt.params, err)
			}
			continue
		}
		if err != nil || string(x.Response) != tt.want {
			t.Errorf("Lookup(%s) = %s, %v; want %s", tt.params, x.Response, err, tt.want)
		}
	}
}

func TestMissNamesClosest(t *testing.T) {
	s := newStore(t, Config{},
		call("echo", `{"message":"hello"}`, `{}`),
		call("echo", `{"message":"hello","extra":1,"more":2}`, `{}`),
		call("add", `{"a":1,"b":2}`, `{}`),
	)
	tests := []struct {
		name, method, server, params string
		wantClosest                  string
		wantInErr                    []string
	}{
		{name: "changed argument", method: "tools/call", server: "everything", params: `{"name":"echo","arguments":{"message":"hullo"}}`,
			wantClosest: "tools/call everything/echo",
			wantInErr:   []string{`closest recorded: tools/call everything/echo`, `value_changed /arguments/message (medium): "hello" → "hullo"`}},
		{name: "unknown tool prefers fewest diffs", method: "tools/call", server: "everything", params: `{"name":"ad","arguments":{"a":1,"b":2}}`,
			wantClosest: "tools/call everything/add",
			wantInErr:   []string{`(name "add", requested "ad")`}},
		{name: "nothing for server", method: "tools/call", server: "nope", params: `{"name":"echo"}`,
			wantInErr: []string{`nothing recorded for tools/call on nope`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Lookup(tt.method, tt.server, json.RawMessage(tt.params))
			var me *MissError
			if !errors.As(err, &me) {
				t.Fatalf("Lookup err = %v, want *MissError", err)
			}
			got := ""
			if me.Closest != nil {
				got = me.Closest.String()
			}
			if got != tt.wantClosest {
				t.Errorf("Closest = %q, want %q", got, tt.wantClosest)
			}
			for _, w := range tt.wantInErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBadParams(t *testing.T) {
	s := NewStore(Config{})
	if err := s.Add(diff.Exchange{Method: "tools/call", Server: "x", Request: json.RawMessage(`{`)}); err == nil {
		t.Error("Add with invalid params: nil error")
	}
	if _, err := s.Lookup("tools/call", "x", json.RawMessage(`{`)); err == nil || errors.Is(err, ErrNoMatch) {
		t.Errorf("Lookup with invalid params: err = %v, want a parse error", err)
	}
}

func TestConcurrentLookups(t *testing.T) {
	var xs []diff.Exchange
	for i := 0; i < 50; i++ {
		xs = append(xs, call("echo", `{}`, `{"i":`+string(rune('0'+i%10))+`}`))
	}
	s := newStore(t, Config{}, xs...)
	var wg sync.WaitGroup
	for g := 0; g < 5; g++ {
		wg.Go(func() {
			for i := 0; i < 10; i++ {
				if _, err := s.Lookup("tools/call", "everything", json.RawMessage(`{"name":"echo","arguments":{}}`)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// All 50 consumed: the next one is the last recorded, repeated.
	x, _ := s.Lookup("tools/call", "everything", json.RawMessage(`{"name":"echo","arguments":{}}`))
	if string(x.Response) != `{"i":9}` {
		t.Errorf("after 50 lookups got %s, want the last recorded {\"i\":9}", x.Response)
	}
}

func BenchmarkLookup(b *testing.B) {
	s := NewStore(Config{})
	for i := 0; i < 100; i++ {
		_ = s.Add(call("echo", `{"message":"m`+string(rune('a'+i%26))+`"}`, `{}`))
	}
	p := json.RawMessage(`{"name":"echo","arguments":{"message":"mc"},"_meta":{"progressToken":1}}`)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup("tools/call", "everything", p); err == nil {
			n++
		}
	}
	if n != b.N {
		b.Fatalf("hits = %d, want %d", n, b.N)
	}
}

// TestLookupForServesEachRecordedRequestItsOwnAnswers: identical requests of
// two recorded sessions (a clock tool) get their own answers whatever the
// order of the replay, and an unknown or absent request ID falls back to
// the shared order.
func TestLookupForServesEachRecordedRequestItsOwnAnswers(t *testing.T) {
	a := call("now", `{}`, `{"t":"10:00"}`)
	a.RequestID = "REQ-A"
	b := call("now", `{}`, `{"t":"10:05"}`)
	b.RequestID = "REQ-B"
	s := newStore(t, Config{}, a, b)
	params := json.RawMessage(`{"name":"now","arguments":{}}`)
	tests := []struct {
		requestID, want string
	}{
		{"REQ-B", `{"t":"10:05"}`}, // B replayed first
		{"REQ-A", `{"t":"10:00"}`},
		{"REQ-B", `{"t":"10:05"}`}, // again: its last answer repeats
		{"", `{"t":"10:00"}`},      // no ID: the shared recorded order
		{"REQ-UNKNOWN", `{"t":"10:05"}`},
	}
	for i, tt := range tests {
		x, err := s.LookupFor(tt.requestID, "tools/call", "everything", params)
		if err != nil {
			t.Fatalf("step %d: LookupFor(%q): %v", i, tt.requestID, err)
		}
		if string(x.Response) != tt.want {
			t.Errorf("step %d: LookupFor(%q) = %s, want %s", i, tt.requestID, x.Response, tt.want)
		}
	}
	if id := ReplayRequestID("REQ-A"); id != "REQ-A.replay" {
		t.Errorf("ReplayRequestID = %q", id)
	}
	if rec, ok := RecordedRequestID("REQ-A.replay"); !ok || rec != "REQ-A" {
		t.Errorf("RecordedRequestID = %q, %v", rec, ok)
	}
	if _, ok := RecordedRequestID("REQ-A"); ok {
		t.Error("RecordedRequestID accepted an ID that is not a replay")
	}
}

func TestUnscoped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0123456789ab:REQ-A", "REQ-A"},
		{"0123456789ab:fedcba987654:X", "fedcba987654:X"},
		{"0123456789AB:REQ-A", ""}, // the gateway writes lower-case hex
		{"0123456789a:REQ-A", ""},
		{"01JCLIENTSUPPLIEDREQUEST01", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := unscoped(tt.in); got != tt.want {
			t.Errorf("unscoped(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
