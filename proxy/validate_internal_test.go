package proxy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestArgumentErrorMessages(t *testing.T) {
	s, err := compileInputSchema("t", json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"tags":{"type":"array","items":{"type":"string"}},"a/b~c":{"type":"string"}},"required":["a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want string }{
		{`{"a":1}`, ""},
		{`{"a":"x"}`, "at /a: keyword type"},
		{`{}`, `at "": keyword required`},
		{`{"a":1,"tags":["x",2]}`, "at /tags/1: keyword type"},
		{`{"a":1,"a/b~c":3}`, "at /a~1b~0c: keyword type"},
		{`[1]`, `at "": keyword type`},
		{`{"a":`, "arguments are not JSON"},
	} {
		msg, _ := argumentError(s, json.RawMessage(tc.args))
		if (tc.want == "") != (msg == "") || !strings.Contains(msg, tc.want) {
			t.Errorf("argumentError(%s) = %q, want %q", tc.args, msg, tc.want)
		}
	}
}

// TestInputSchemaRefsStayInside: a backend's schema cannot make the gateway
// read a file or fetch a URL.
func TestInputSchemaRefsStayInside(t *testing.T) {
	for _, ref := range []string{"file:///etc/passwd", "http://127.0.0.1:1/x.json", "other.json"} {
		_, err := compileInputSchema("t", json.RawMessage(`{"type":"object","properties":{"a":{"$ref":"`+ref+`"}}}`))
		if err == nil || !strings.Contains(err.Error(), "only references inside the schema are followed") {
			t.Errorf("$ref %s: %v", ref, err)
		}
	}
	if _, err := compileInputSchema("t", json.RawMessage(`{"$defs":{"n":{"type":"number"}},"type":"object","properties":{"a":{"$ref":"#/$defs/n"}}}`)); err != nil {
		t.Errorf("a local $ref: %v", err)
	}
	if _, err := compileInputSchema("t", json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","definitions":{"n":{"type":"number"}},"type":"object","properties":{"a":{"$ref":"#/definitions/n"}}}`)); err != nil {
		t.Errorf("a draft-07 schema: %v", err)
	}
}

// FuzzArgumentError: any arguments against a type-object schema either
// pass (an object) or get a message naming a pointer and keyword; never a
// panic.
func FuzzArgumentError(f *testing.F) {
	s, err := compileInputSchema("t", json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer","minimum":0},"s":{"type":"string","pattern":"^[a-z]+$"}},"additionalProperties":false}`))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{}`, `{"n":1}`, `{"n":-1}`, `{"s":"A"}`, `[]`, `null`, `"x"`, `{"x":1}`, `{"n":1e400}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		msg, _ := argumentError(s, args)
		var v any
		d := json.NewDecoder(bytes.NewReader(args))
		d.UseNumber() // as the validator reads numbers: 1e400 is one
		isObj := d.Decode(&v) == nil && d.InputOffset() > 0
		if _, ok := v.(map[string]any); !ok {
			isObj = false
		}
		if len(args) == 0 || string(args) == "null" {
			isObj = true // absent arguments are {}
		}
		if !isObj && msg == "" {
			t.Errorf("%q passed a type-object schema", args)
		}
		if msg != "" && !strings.HasPrefix(msg, "at ") && !strings.HasPrefix(msg, "arguments are not JSON") {
			t.Errorf("%q: message %q names no pointer", args, msg)
		}
	})
}
