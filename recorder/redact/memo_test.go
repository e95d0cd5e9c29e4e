package redact

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// memoCases are payloads whose members recur across payloads, as a call's
// hops carry them: the same arguments under another tool name, the same
// result with _meta added, the same value under another top-level key, the
// same value as a top-level envelope member, the same value nested deeper,
// members at the size limits, invalid JSON, and text that is JSON.
func memoCases() [][]byte {
	pad := strings.Repeat("p", memoMinBytes)
	args := `{"query":"select * from customers where region = 'emea'","password":"hunter2","nested":{"token":"t-123456789","note":"Bearer abcdefgh12345678"},"pad":"` + pad + `"}`
	result := `[{"type":"text","text":"Echo: {\"api_key\":\"k-live-123456\",\"ok\":true} ` + pad + `"}]`
	long := `"` + strings.Repeat("x", memoMaxBytes) + `"`
	atMin := `"` + strings.Repeat("y", memoMinBytes-2) + `"`
	return [][]byte{
		[]byte(`{"name":"crm.search","arguments":` + args + `}`),
		[]byte(`{"name":"search","arguments":` + args + `}`),
		[]byte(`{ "name" : "search" , "arguments" :  ` + args + `  }`),
		[]byte(`{"name":"search","password":` + args + `}`),      // a key rule replaces the member whole
		[]byte(`{"name":"search","credentials_x":` + args + `}`), // another key: walked under it
		[]byte(`{"name":"search","id":` + args + `}`),            // an envelope key at the top
		[]byte(`{"name":"search","method":` + args + `}`),
		[]byte(`{"outer":{"arguments":` + args + `}}`),
		[]byte(`[{"arguments":` + args + `}]`),
		[]byte(`{"content":` + result + `,"isError":false}`),
		[]byte(`{"content":` + result + `,"isError":false,"_meta":{"io.mcptrail/request-id":"01JABCDEFGHJKMNPQRSTVWXYZ0"}}`),
		[]byte(`{"long":` + long + `,"min":` + atMin + `}`),
		[]byte(`{"long":` + long + `,"min":` + atMin + `,"x":1}`),
		[]byte(`{"a\u0072guments":` + args + `}`), // the same key, escaped
		[]byte(`{"arguments":` + args + `,"arguments":` + args + `}`),
		[]byte(`{"arguments":` + args[:40]), // invalid
		[]byte(`"{\"arguments\":` + strings.ReplaceAll(args, `"`, `\"`) + `}"`),
		[]byte(`{"arguments":"` + strings.Repeat("z", memoMinBytes) + ` password=hunter2 ` + `"}`),
		[]byte(`{"arguments":null,"x":` + args + `}`),
	}
}

// TestPayloadMemoSameAsPayload: whatever the memo holds, PayloadMemo's
// result is Payload's, byte for byte, under several rule sets, in any
// order of payloads, and after the memo was emptied for its budget.
func TestPayloadMemoSameAsPayload(t *testing.T) {
	configs := []Config{
		{},
		{Keys: []string{"password", "arguments.query", "arguments.nested.token", "*.note"}, MaxPayloadBytes: -1},
		{Patterns: []string{"secrets", "pii"}, MaxPayloadBytes: 200},
	}
	cases := memoCases()
	for ci, cfg := range configs {
		r := mustNew(t, cfg)
		m := NewMemo()
		for round := range 3 {
			for i := range cases {
				b := cases[(i*7+round)%len(cases)]
				want, wn, wt, ws := r.Payload(b)
				got, gn, gt, gs := r.PayloadMemo(b, m)
				if !bytes.Equal(got, want) || gn != wn || gt != wt || gs != ws {
					t.Fatalf("config %d, round %d, %s:\nPayloadMemo = %s, %d, %v\nPayload     = %s, %d, %v", ci, round, b, got, gn, gt, want, wn, wt)
				}
			}
		}
		if len(m.entries) == 0 {
			t.Errorf("config %d: the memo remembered nothing", ci)
		}
	}
}

// TestPayloadMemoReuses: the second payload carrying a member is served
// from the memo (its walk would find the secret; the memo's copy is what
// comes out), and a member under another key or at another depth is not.
func TestPayloadMemoReuses(t *testing.T) {
	r := mustNew(t, Config{})
	m := NewMemo()
	args := `{"query":"` + strings.Repeat("q", memoMinBytes) + `","password":"hunter2"}`
	r.PayloadMemo([]byte(`{"name":"crm.search","arguments":`+args+`}`), m)
	if len(m.entries) != 1 {
		t.Fatalf("memo holds %d entries after one payload, want 1 (the arguments)", len(m.entries))
	}
	key := string(m.keyOf("arguments", []byte(args)))
	e := m.entries[key]
	e.out = []byte(`"from the memo"`)
	m.entries[key] = e
	out, _, _, _ := r.PayloadMemo([]byte(`{"name":"search","arguments":`+args+`}`), m)
	if want := `{"name":"search","arguments":"from the memo"}`; string(out) != want {
		t.Errorf("second payload = %s, want %s", out, want)
	}
	for _, other := range []string{`{"name":"search","args":` + args + `}`, `{"x":{"arguments":` + args + `}}`} {
		out, _, _, _ := r.PayloadMemo([]byte(other), m)
		if bytes.Contains(out, []byte("from the memo")) || bytes.Contains(out, []byte("hunter2")) {
			t.Errorf("%s = %s: served from another key's entry, or not redacted", other, out)
		}
	}
}

// TestMemoBudget: the memo stays within its budget however many distinct
// members it meets, and whatever their keys' size.
func TestMemoBudget(t *testing.T) {
	r := mustNew(t, Config{})
	m := NewMemo()
	for i := range 5000 {
		r.PayloadMemo(fmt.Appendf(nil, `{"arguments":{"n":%d,"pad":"%s"}}`, i, strings.Repeat("p", 400)), m)
		if m.bytes > memoBudget {
			t.Fatalf("after %d payloads the memo holds %d bytes, budget %d", i+1, m.bytes, memoBudget)
		}
	}
	// A key as large as the budget is not remembered with its value.
	big := strings.Repeat("k", memoBudget)
	r.PayloadMemo([]byte(`{"`+big+`":"`+strings.Repeat("v", memoMinBytes)+`"}`), m)
	if m.bytes > memoBudget {
		t.Errorf("after a %d-byte key the memo holds %d bytes, budget %d", len(big), m.bytes, memoBudget)
	}
	got := 0
	for k, e := range m.entries {
		got += len(k) + len(e.out)
	}
	if got != m.bytes {
		t.Errorf("memo counts %d bytes, holds %d", m.bytes, got)
	}
}

// FuzzPayloadMemo: for any two payloads, redacting them through one memo
// in the order a, b, a gives Payload's results.
func FuzzPayloadMemo(f *testing.F) {
	var cases [][]byte
	for _, c := range memoCases() {
		if len(c) < 4096 { // the size limits are TestPayloadMemoSameAsPayload's: large seeds slow the fuzzer down
			cases = append(cases, c)
		}
	}
	for i := range cases {
		f.Add(cases[i], cases[(i+1)%len(cases)])
	}
	r := mustNew(f, Config{Keys: append([]string{"arguments.query", "arguments.nested.token", "*.note"}, DefaultKeys...)})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m := NewMemo()
		for _, p := range [][]byte{a, b, a, b} {
			want, wn, wt, _ := r.Payload(p)
			got, gn, gt, _ := r.PayloadMemo(p, m)
			if !bytes.Equal(got, want) || gn != wn || gt != wt {
				t.Fatalf("%q:\nPayloadMemo = %s, %d, %v\nPayload     = %s, %d, %v", p, got, gn, gt, want, wn, wt)
			}
		}
	})
}

// TestMemoBoundedEntries: an entry whose redacted form outgrew the limit
// (many one-character secrets, each now a placeholder) is not kept, and
// the member offsets of a payload of many members are not kept after it.
// Both held megabytes past the budget before (found by review).
func TestMemoBoundedEntries(t *testing.T) {
	r := mustNew(t, Config{Custom: []Pattern{{Name: "digit", Regexp: `[0-9]`}}, MaxPayloadBytes: -1})
	m := NewMemo()
	r.PayloadMemo([]byte(`{"a":"`+strings.Repeat("7", memoMaxBytes-10)+`"}`), m)
	if m.bytes > memoMaxBytes {
		t.Errorf("after one member of many secrets the memo holds %d bytes, limit per entry %d", m.bytes, memoMaxBytes)
	}
	var b bytes.Buffer
	b.WriteString(`{"":0`)
	for b.Len() < 4<<20 {
		b.WriteString(`,"":0`)
	}
	b.WriteString(`}`)
	r.PayloadMemo(b.Bytes(), m)
	if n := cap(m.ends) * 8; n > memoMaxEnds*8 {
		t.Errorf("after a payload of %d members the memo keeps %d bytes of offsets", b.Len()/5, n)
	}
}

// TestMemoOneRedactor: a memo used by another Redactor (other rules or
// key) gives that Redactor's redactions, not the first one's.
func TestMemoOneRedactor(t *testing.T) {
	a := mustNew(t, Config{})
	b := mustNew(t, Config{Keys: []string{"arguments.query"}})
	m := NewMemo()
	p := []byte(`{"arguments":{"query":"` + strings.Repeat("q", memoMinBytes) + `"}}`)
	for _, r := range []*Redactor{a, b, a} {
		want, _, _, _ := r.Payload(p)
		if got, _, _, _ := r.PayloadMemo(p, m); !bytes.Equal(got, want) {
			t.Errorf("PayloadMemo = %.60s…, want %.60s…", got, want)
		}
	}
}
