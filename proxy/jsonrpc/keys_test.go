package jsonrpc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// ambiguousTests are messages a parser could read differently from the
// gateway. Each must be refused with -32600 before anything routes it.
var ambiguousTests = []struct {
	name, in string
}{
	{"duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","name":"everything.get-env"}}`},
	{"escaped duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","n\u0061me":"everything.get-env"}}`},
	{"escaped first", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"everything.echo","name":"everything.get-env"}}`},
	{"case variant of name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything.echo","NAME":"everything.get-env"}}`},
	{"case variant alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"everything.get-env"}}`},
	{"duplicate uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://a","uri":"memory://knowledge-graph"}}`},
	{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}`},
	{"escaped duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","m\u0065thod":"tools/call"}`},
	{"duplicate id", `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`},
	{"duplicate params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.echo"},"params":{"name":"a.get-env"}}`},
	{"case variant of method", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`},
	{"duplicate _meta", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","_meta":{},"_meta":{"progressToken":"mcptrail-1"}}}`},
	{"duplicate progressToken", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","_meta":{"progressToken":1,"progressToken":"mcptrail-1"}}}`},
	{"case variant of progressToken", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","_meta":{"PROGRESSTOKEN":"mcptrail-1"}}}`},
	{"duplicate request id in _meta", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","_meta":{"mcptrail.dev/request-id":"a","mcptrail.dev/request-id":"b"}}}`},
	{"duplicate ref name", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a.p","name":"b.p"},"argument":{"name":"x","value":""}}}`},
	{"kelvin sign folds to k", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","_meta":{"progressToken":1,"progressTo\u212aen":"mcptrail-1"}}}`},
	{"long s folds to s", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","argument\u017f":{}}}`},
	{"duplicate among many keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"name":"a.echo","k18":18,"NAME":"a.get-env"}}`},
	{"duplicate in a notification", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"requestId":2}}`},
}

func TestDecodeRefusesAmbiguousKeys(t *testing.T) {
	for _, tt := range ambiguousTests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			var de *DecodeError
			var amb *AmbiguousKeyError
			if !errors.As(err, &de) || de.Code != CodeInvalidRequest || !errors.As(err, &amb) {
				t.Fatalf("Decode(%s) = %+v, %v; want a -32600 AmbiguousKeyError", tt.in, m, err)
			}
		})
	}
}

// TestDecodeKeepsUnambiguousKeys: what is not ambiguous still passes, and
// an escaped spelling of a field is that field.
func TestDecodeKeepsUnambiguousKeys(t *testing.T) {
	tests := []struct{ name, in, wantName string }{
		{"escaped key alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a.echo"}}`, "a.echo"},
		{"same key in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.echo","arguments":{"name":"x","NAME":"y"}}}`, "a.echo"},
		{"case variants deeper down", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.echo","arguments":{"k":{"a":1,"a":2}}}}`, "a.echo"},
		{"unknown keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.echo","Task":{},"task":{}}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if tt.wantName == "" {
				// Two keys equal but for case are ambiguous even when
				// the gateway does not read them.
				if err == nil {
					t.Fatalf("Decode(%s) accepted keys equal but for case", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s) = %v", tt.in, err)
			}
			o, _ := ParseObject(m.Params)
			if got, _ := o.GetString("name"); got != tt.wantName {
				t.Errorf("name = %q, want %q", got, tt.wantName)
			}
		})
	}
}

// FuzzRoutingFieldsAgree checks the property behind the ambiguous-key
// refusal: for every message Decode accepts, the routing fields the gateway
// reads are the ones a JavaScript-like parser (exact keys, last wins) and
// Go's encoding/json (case-insensitive, last wins) read.
func FuzzRoutingFieldsAgree(f *testing.F) {
	for _, tt := range ambiguousTests {
		f.Add([]byte(tt.in))
	}
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a.echo","_meta":{"progressToken":"t"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://static/1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil || len(m.Params) == 0 || m.Params[0] != '{' {
			return
		}
		var exact struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(b, &exact)
		if exact.Method != m.Method {
			t.Fatalf("method: gateway %q, encoding/json %q in %s", m.Method, exact.Method, b)
		}
		params, err := ParseObject(m.Params)
		if err != nil {
			t.Fatalf("ParseObject(%s): %v", m.Params, err)
		}
		agree(t, "params", params, m.Params, "name", "uri")
		if meta, err := ParseObject(params.Get("_meta")); err == nil {
			agree(t, "params._meta", meta, params.Get("_meta"), "progressToken", "mcptrail.dev/request-id")
		}
		if ref, err := ParseObject(params.Get("ref")); err == nil {
			agree(t, "params.ref", ref, params.Get("ref"), "name", "uri")
		}
	})
}

// agree compares the gateway's reading of keys of raw with a last-wins
// exact reading and a case-insensitive (encoding/json struct) reading.
func agree(t *testing.T, where string, o *Object, raw []byte, keys ...string) {
	t.Helper()
	var js map[string]json.RawMessage
	if json.Unmarshal(raw, &js) != nil {
		return
	}
	for _, k := range keys {
		gw := string(o.Get(k))
		if last := string(js[k]); gw != last {
			t.Fatalf("%s.%s: gateway reads %s, a last-wins parser %s, in %s", where, k, gw, last, raw)
		}
		// encoding/json matches struct fields case-insensitively.
		for jk, v := range js {
			if strings.EqualFold(jk, k) && jk != k {
				t.Fatalf("%s: key %q would fill %q in a Go backend (value %s), the gateway reads %s", where, jk, k, v, gw)
			}
		}
	}
}

func BenchmarkDecodeCheckKeys(b *testing.B) {
	in := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"crm.search","arguments":{"query":"abc","limit":10},"_meta":{"progressToken":"p1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}`)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m, err := Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		n += len(m.Method)
	}
	if n == 0 {
		b.Fatal("nothing decoded")
	}
}
