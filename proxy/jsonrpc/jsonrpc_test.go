package jsonrpc

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantKind Kind
		wantCode int // 0: no error
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, KindRequest, 0},
		{"string id", `{"jsonrpc":"2.0","id":"a-1","method":"ping"}`, KindRequest, 0},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, KindNotification, 0},
		{"result", `{"jsonrpc":"2.0","id":1,"result":{}}`, KindResponse, 0},
		{"error", `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope","data":{"a":[1,2]}}}`, KindResponse, 0},
		{"malformed", `{"jsonrpc":"2.0",`, KindInvalid, CodeParseError},
		{"empty", ``, KindInvalid, CodeParseError},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, KindInvalid, CodeInvalidRequest},
		{"scalar", `42`, KindInvalid, CodeInvalidRequest},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, KindInvalid, CodeInvalidRequest},
		{"empty method", `{"jsonrpc":"2.0","id":1,"method":""}`, KindInvalid, CodeInvalidRequest},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, KindInvalid, CodeInvalidRequest},
		{"scalar params", `{"jsonrpc":"2.0","id":1,"method":"ping","params":3}`, KindInvalid, CodeInvalidRequest},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`, KindInvalid, CodeInvalidRequest},
		{"neither", `{"jsonrpc":"2.0"}`, KindInvalid, CodeInvalidRequest},
		{"wrong field type", `{"jsonrpc":"2.0","id":1,"method":5}`, KindInvalid, CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if tt.wantCode != 0 {
				var de *DecodeError
				if !errors.As(err, &de) || de.Code != tt.wantCode {
					t.Fatalf("Decode(%s) error = %v, want code %d", tt.in, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s) = %v", tt.in, err)
			}
			if m.Kind() != tt.wantKind {
				t.Errorf("Decode(%s).Kind() = %d, want %d", tt.in, m.Kind(), tt.wantKind)
			}
		})
	}
}

// TestRoundTripKeepsRawParts: params, results and error data come back byte
// for byte.
func TestRoundTripKeepsRawParts(t *testing.T) {
	in := `{"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"boom \"q\"","data":{"z":1,"a":[1.50,"\u00e9"]}}}`
	m, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(m.Marshal()); got != in {
		t.Errorf("Marshal = %s, want %s", got, in)
	}
	params := `{"b":2,"a":{"$schema":"x","required":[]},"name":"ns.tool"}`
	m = NewRequest(IntID(3), "tools/call", json.RawMessage(params))
	o, err := ParseObject(m.Params)
	if err != nil {
		t.Fatal(err)
	}
	o.SetString("name", "tool")
	if got, want := string(o.Marshal()), `{"b":2,"a":{"$schema":"x","required":[]},"name":"tool"}`; got != want {
		t.Errorf("Object edit = %s, want %s (order and other members kept)", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b","arguments":{"x":[1,2,{"y":null}]},"_meta":{"progressToken":"t"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}`,
		`{"jsonrpc":"2.0","id":"s","result":{"content":[{"type":"text","text":"hi"}],"isError":true}}`,
		`{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"bad","data":null}}`,
		`[{"jsonrpc":"2.0"}]`, `{"jsonrpc":"2.0",`, `null`, `{"id":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || (de.Code != CodeParseError && de.Code != CodeInvalidRequest) {
				t.Fatalf("Decode error %v is not a DecodeError with a JSON-RPC code", err)
			}
			return
		}
		out := m.Marshal()
		if !json.Valid(out) {
			t.Fatalf("Marshal produced invalid JSON %q from %q", out, b)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", out, err)
		}
		if m2.Kind() != m.Kind() || m2.Method != m.Method || string(m2.ID) != string(m.ID) {
			t.Fatalf("round trip changed the envelope: %q → %q", b, out)
		}
		if m.Result != nil {
			if _, has := Lookup(m.Result, "_meta"); !has {
				if out, err := AppendMember(m.Result, "_meta", []byte(`{"k":"v"}`)); err == nil && !json.Valid(out) {
					t.Fatalf("AppendMember produced invalid JSON %q from %q", out, m.Result)
				}
			}
		}
		if o, err := ParseObject(m.Params); err == nil {
			o.SetString("_probe", "x")
			if !json.Valid(o.Marshal()) {
				t.Fatalf("Object edit produced invalid JSON from params %q", m.Params)
			}
		}
	})
}

// BenchmarkDecodeRouteEncode is the gateway's per-call message work: decode
// the envelope, rewrite the tool name and stamp _meta, encode.
func BenchmarkDecodeRouteEncode(b *testing.B) {
	in := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"crm.search","arguments":{"query":"` +
		`aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","limit":10},"_meta":{"progressToken":"p1"}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var n int
	for b.Loop() {
		m, err := Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		o, err := ParseObject(m.Params)
		if err != nil {
			b.Fatal(err)
		}
		o.SetString("name", "search")
		meta, _ := ParseObject(o.Get("_meta"))
		meta.Set("progressToken", json.RawMessage(`"mcptrail-1"`))
		meta.SetString("mcptrail.dev/request-id", "01JCLIENTSUPPLIEDREQUEST01")
		o.Set("_meta", meta.Marshal())
		m.Params = o.Marshal()
		n += len(m.Marshal())
	}
	if n == 0 {
		b.Fatal("no output")
	}
}

func TestLookupAndAppendMember(t *testing.T) {
	tests := []struct {
		in, key  string
		wantVal  string
		wantOK   bool
		appended string // AppendMember(in, "_meta", {"x":1}) when !wantOK
	}{
		{`{"content":[],"isError":true}`, "isError", "true", true, ""},
		{`{"content":[{"isError":true}]}`, "isError", "", false, `{"content":[{"isError":true}],"_meta":{"x":1}}`},
		{`{}`, "isError", "", false, `{"_meta":{"x":1}}`},
		{` { } `, "x", "", false, ` { "_meta":{"x":1}}`},
		{`{"a\u0062":2}`, "ab", "2", true, ""},
		{`[1]`, "a", "", false, "error"},
	}
	for _, tt := range tests {
		v, ok := Lookup([]byte(tt.in), tt.key)
		if ok != tt.wantOK || string(v) != tt.wantVal {
			t.Errorf("Lookup(%s, %q) = %s, %v; want %s, %v", tt.in, tt.key, v, ok, tt.wantVal, tt.wantOK)
		}
		if tt.wantOK {
			continue
		}
		out, err := AppendMember([]byte(tt.in), "_meta", []byte(`{"x":1}`))
		if tt.appended == "error" {
			if err == nil {
				t.Errorf("AppendMember(%s) = %s, want an error", tt.in, out)
			}
			continue
		}
		if err != nil || string(out) != tt.appended || !json.Valid(out) {
			t.Errorf("AppendMember(%s) = %s, %v; want %s", tt.in, out, err, tt.appended)
		}
	}
}

func TestErrorCode(t *testing.T) {
	tests := []struct {
		in       string
		wantCode int
		wantID   string
	}{
		{`{"jsonrpc":"2.0",`, CodeParseError, ""},
		{`[1]`, CodeInvalidRequest, ""},
		{`{"jsonrpc":"1.0","id":4,"method":"x"}`, CodeInvalidRequest, "4"},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.in))
		if code, id := ErrorCode(err); code != tt.wantCode || string(id) != tt.wantID {
			t.Errorf("ErrorCode(Decode(%s)) = %d, %s; want %d, %q", tt.in, code, id, tt.wantCode, tt.wantID)
		}
	}
	if code, id := ErrorCode(errors.New("not a decode error")); code != CodeParseError || id != nil {
		t.Errorf("ErrorCode(other) = %d, %s; want %d, nil", code, id, CodeParseError)
	}
}
