package secrets

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	tokKey   = "«redacted:api_key:hmac:0123456789abcdef»"
	tokKey2  = "«redacted:api_key:hmac:fedcba9876543210»"
	tokPass  = "«redacted:db-password:hmac:00000000000000aa»"
	tokOther = "«redacted:unknown:hmac:1111111111111111»"
)

func TestFindPlaceholders(t *testing.T) {
	tests := []struct {
		in   string
		want []string // rule:hmac
	}{
		{`{"a":"` + tokKey + `","b":"x ` + tokPass + ` y"}`, []string{"api_key:0123456789abcdef", "db-password:00000000000000aa"}},
		{`{"a":"«redacted:api_key:hmac:0123»"}`, nil},             // too short
		{`{"a":"«redacted:api key:hmac:0123456789abcdef»"}`, nil}, // space in rule
		{`{"a":"«redacted:api_key:hmac:0123456789ABCDEF»"}`, nil}, // upper-case hex
		{`{"a":"redacted:api_key:hmac:0123456789abcdef"}`, nil},   // no guillemets
	}
	for _, tt := range tests {
		var got []string
		for _, p := range FindPlaceholders([]byte(tt.in)) {
			got = append(got, p.Rule+":"+p.HMAC)
			if !strings.Contains(tt.in, p.Token) {
				t.Errorf("token %q not in %q", p.Token, tt.in)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("FindPlaceholders(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestLoadAndFill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "replay.env")
	file := "# secrets for replay\n" +
		"api_key=sk-general\n" +
		tokKey2 + "=sk-specific\n" +
		"export DB_PASSWORD=\"p\\\"w\\nx\"\n" +
		"\n" +
		"quoted='lit $x'\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, []string{"MCPTRAIL_SECRET_API_KEY=from-env", "MCPTRAIL_SECRET_TOKEN=tok-env", "PATH=/bin", "MCPTRAIL_SECRET_="})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		unresolved     []string
	}{
		{"rule from file wins over env", `{"k":"` + tokKey + `"}`, `{"k":"sk-general"}`, nil},
		{"exact token wins over rule", `{"k":"` + tokKey2 + `"}`, `{"k":"sk-specific"}`, nil},
		{"normalized rule, value JSON-escaped", `{"p":"` + tokPass + `"}`, `{"p":"p\"w\nx"}`, nil},
		{"env only", `{"t":"«redacted:token:hmac:2222222222222222»"}`, `{"t":"tok-env"}`, nil},
		{"inside a longer string", `{"h":"Bearer ` + tokKey + `!"}`, `{"h":"Bearer sk-general!"}`, nil},
		{"single-quoted literal", `{"q":"«redacted:quoted:hmac:3333333333333333»"}`, `{"q":"lit $x"}`, nil},
		{"unresolved kept and reported", `{"a":"` + tokOther + `","k":"` + tokKey + `"}`, `{"a":"` + tokOther + `","k":"sk-general"}`, []string{"unknown"}},
		{"nothing to fill", `{"a":1}`, `{"a":1}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, un := s.Fill([]byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("Fill(%s) = %s, want %s", tt.in, got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("Fill result is not valid JSON: %s", got)
			}
			var rules []string
			for _, p := range un {
				rules = append(rules, p.Rule)
			}
			if strings.Join(rules, ",") != strings.Join(tt.unresolved, ",") {
				t.Errorf("unresolved = %v, want %v", rules, tt.unresolved)
			}
		})
	}
	_, err = s.FillAll([]byte(`{"a":"` + tokOther + `"}`))
	var ue *UnresolvedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "MCPTRAIL_SECRET_UNKNOWN") {
		t.Errorf("FillAll with unknown rule: err = %v, want *UnresolvedError naming MCPTRAIL_SECRET_UNKNOWN", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"novalue\n", "f.env:1: expected KEY=VALUE"},
		{"a=1\n\na=2\n", "f.env:3: A already set on line 1"},
		{"=x\n", "f.env:1: empty key"},
		{`k="open` + "\n", "f.env:1: value of k"},
		{"«redacted:x:hmac:zz»=v\n", "looks like a placeholder"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.in), "f.env")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) err = %v, want %q", tt.in, err, tt.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.env"), nil); err == nil || !strings.Contains(err.Error(), "opening secrets file") {
		t.Errorf("Load(missing) err = %v", err)
	}
	var zero *Secrets
	if _, un := zero.Fill([]byte(`"` + tokKey + `"`)); len(un) != 1 {
		t.Errorf("nil Secrets resolved a placeholder")
	}
}

func FuzzFill(f *testing.F) {
	f.Add([]byte(`{"k":"`+tokKey+`"}`), "v\"\\\n")
	f.Add([]byte(`{"k":"«redacted:a:hmac:0123456789abcdef» x «redacted:b:hmac:0123456789abcdef»"}`), "")
	f.Fuzz(func(t *testing.T, payload []byte, value string) {
		if strings.Contains(value, "redacted") {
			return // a value that is itself a placeholder would remain one
		}
		s, err := Parse(strings.NewReader("api_key="+strings.ReplaceAll(value, "\n", " ")+"\na="+"x\nb=y\n"), "fuzz")
		if err != nil {
			return
		}
		out, un := s.Fill(payload)
		if json.Valid(payload) && !json.Valid(out) {
			t.Fatalf("Fill broke valid JSON: %s → %s", payload, out)
		}
		if len(un) != len(FindPlaceholders(out)) {
			t.Fatalf("unresolved %d but %d placeholders remain in %s", len(un), len(FindPlaceholders(out)), out)
		}
	})
}

func TestMask(t *testing.T) {
	s, err := Parse(strings.NewReader("api_key=sk-general\n"+tokKey2+"=sk-specific-longer\nquoted=\"a\\\"b\\\"c\"\nshort=abc\n"), "t.env")
	if err != nil {
		t.Fatal(err)
	}
	s.AddEnv([]string{"MCPTRAIL_SECRET_TOKEN=tok-env-1"})
	for _, tt := range []struct{ in, want string }{
		{`"x sk-general y"`, `"x «secret:API_KEY» y"`},
		{`"sk-specific-longer"`, `"` + tokKey2 + `"`},
		{`{"a":"a\"b\"c"}`, `{"a":"«secret:QUOTED»"}`}, // as JSON string content
		{`error: a"b"c`, `error: «secret:QUOTED»`},     // as plain text
		{`tok-env-1`, `«secret:TOKEN»`},
		{`abc stays`, `abc stays`}, // shorter than MinMaskBytes
		{`nothing`, `nothing`},
		{``, ``},
	} {
		in := []byte(tt.in)
		if got := string(s.Mask(in)); got != tt.want {
			t.Errorf("Mask(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if string(in) != tt.in {
			t.Errorf("Mask modified its input: %s", in)
		}
	}
	var none *Secrets
	if got := string(none.Mask([]byte("sk-general"))); got != "sk-general" {
		t.Errorf("nil Mask = %s", got)
	}
}
