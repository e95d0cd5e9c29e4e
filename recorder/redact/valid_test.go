package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `{}`, `[]`, `""`, `"a"`, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`,
	`-1.25e10`, `true`, `false`, `null`, `tru`, `nul`, `truex`, `True`, ` {"a":1} `, `{"a":1,}`, `{"a" 1}`,
	`{"a":1 "b":2}`, `{a:1}`, `[1,2,3]`, `[1,]`, `[,1]`, `[1 2]`, `{"a":[{"b":null}]}`, `"\u00e9"`, `"\u00g9"`,
	`"\u12"`, `"\x"`, `"\/\b\f\n\r\t\"\\"`, "\"a\tb\"", "\"a\x7fb\"", "\"\xff\xfe\"", `"unterminated`,
	`{"a":1}{"b":2}`, `1 2`, "\ufeff{}", "{}\x00", `[[[[]]]]`, `{"":""}`, `[1,{"a":[true,false,null,"x",-1.5e-3]}]`,
}

func TestValidJSONIsJSONValid(t *testing.T) {
	deep := strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting)
	tooDeep := strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1)
	deepObj := strings.Repeat(`{"a":`, maxNesting) + "1" + strings.Repeat("}", maxNesting)
	tooDeepObj := strings.Repeat(`{"a":`, maxNesting+1) + "1" + strings.Repeat("}", maxNesting+1)
	for _, s := range append(validCases, deep, tooDeep, deepObj, tooDeepObj) {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid = %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	p := []byte(`{"content":[{"type":"text","text":"Echo: m12345` + strings.Repeat("p", 200) + `"}],"_meta":{"requestId":"01JBENCH00000000000000000","n":-1.5e3}}`)
	for _, tc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"encoding/json", json.Valid}, {"validJSON", validJSON}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if !tc.valid(p) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
