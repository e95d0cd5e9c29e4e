package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decoderValue is what the JSON Schema library makes of b
// (jsonschema.UnmarshalJSON): a Decoder with UseNumber, then nothing but
// white space.
func decoderValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid character after top-level value")
	}
	return v, nil
}

var valueCases = []string{
	`{"message":"hi","n":12,"f":-1.5e+3,"ok":true,"no":false,"nil":null,"a":[1,"x",{"y":[]}],"o":{}}`,
	` [ ] `, `""`, `"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00"`, `"lone \ud800 surrogate"`, "\"bad \xff utf8\"",
	`0`, `-0`, `0.5`, `1E9`, `1e-9`, `-12.34e+56`, `{"dup":1,"dup":2}`, `{"k\u0041":1}`,
	`01`, `1.`, `.5`, `-`, `1e`, `+1`, `tru`, `nul`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{} {}`, `{}x`,
	"\"ctl \x01\"", `"unterminated`, `{"a":`, ``, `   `, `"\x"`, `"\u12"`, `[` + strings.Repeat(`[`, 20) + strings.Repeat(`]`, 21),
}

func TestValueMatchesDecoder(t *testing.T) {
	for _, c := range valueCases {
		checkValue(t, []byte(c))
	}
}

func checkValue(t *testing.T, b []byte) {
	t.Helper()
	got, ok := Value(b)
	want, err := decoderValue(b)
	if ok != (err == nil) {
		t.Fatalf("Value(%q) ok = %v; the Decoder says %v", b, ok, err)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("Value(%q) = %#v, the Decoder makes %#v", b, got, want)
	}
}

// Deeper than encoding/json allows, Value declines like the Decoder.
func TestValueDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, ok := Value([]byte(deep)); ok {
		t.Fatal("Value accepted a document nested past encoding/json's limit")
	}
	if _, err := decoderValue([]byte(deep)); err == nil {
		t.Fatal("the Decoder accepted it: the limit differs")
	}
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	checkValue(t, []byte(ok))
}

func FuzzValue(f *testing.F) {
	for _, c := range valueCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkValue(t, b) })
}

// BenchmarkValue decodes a tool call's arguments, against the Decoder
// the JSON Schema library uses.
func BenchmarkValue(b *testing.B) {
	args := []byte(`{"message":"m12345` + strings.Repeat("p", 200) + `","count":3,"tags":["a","b"],"opts":{"deep":true}}`)
	b.Run("Value", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := Value(args); !ok {
				b.Fatal("not ok")
			}
		}
	})
	b.Run("Decoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decoderValue(args); err != nil {
				b.Fatal(err)
			}
		}
	})
}
