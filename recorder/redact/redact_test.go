package redact

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

var testKey = []byte("test-hmac-key-0123456789")

func mustNew(t testing.TB, cfg Config) *Redactor {
	t.Helper()
	r, err := New(cfg, testKey)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return r
}

// canonical re-encodes JSON so that comparisons ignore formatting.
func canonical(t testing.TB, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not valid JSON: %v\n%s", err, b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// Canary secrets: each must disappear from the output, replaced by a
// placeholder naming the rule.
var patternCases = []struct {
	rule, text, secret string
}{
	{"aws_access_key_id", "key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"},
	{"github_token", "ghp_" + strings.Repeat("a1B2", 9), "ghp_" + strings.Repeat("a1B2", 9)},
	{"github_token", "token=gho_" + strings.Repeat("Z9", 18) + ";", "gho_" + strings.Repeat("Z9", 18)},
	{"github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"},
	{"slack_token", "xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF"},
	{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
	{"bearer", "Authorization: Bearer abcdef0123456789xyz", "abcdef0123456789xyz"},
	{"bearer", "use bearer QWERTY-uiop.1234/x== ok", "QWERTY-uiop.1234/x=="},
	{"pem_private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA"},
	{"google_api_key", "AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA-1234567890abcdefghijklmnopqrstu"},
	{"stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
	{"email", "write to jane.doe+x@example.co.uk now", "jane.doe+x@example.co.uk"},
	{"phone", "call +1 415-555-0132 today", "415-555-0132"},
	{"phone", "tel (020) 7946 0958", "7946 0958"},
	{"ticket", "see TICKET-12345 please", "TICKET-12345"},
}

func TestPatterns(t *testing.T) {
	r := mustNew(t, Config{Patterns: []string{"secrets", "pii"}, Custom: []Pattern{{"ticket", `TICKET-\d+`}}})
	for _, tt := range patternCases {
		t.Run(tt.rule, func(t *testing.T) {
			got, n := r.String(tt.text)
			if n == 0 || strings.Contains(got, tt.secret) {
				t.Fatalf("String(%q) = %q, %d; want %s redacted", tt.text, got, n, tt.secret)
			}
			ps := FindPlaceholders([]byte(got))
			if len(ps) != 1 || ps[0].Rule != tt.rule {
				t.Errorf("String(%q) = %q: placeholders %+v, want one from rule %s", tt.text, got, ps, tt.rule)
			}
			// Inside JSON the same holds, and the output stays valid.
			doc, _ := json.Marshal(map[string]any{"note": tt.text})
			out, n := r.JSON(doc)
			if n == 0 || bytes.Contains(out, []byte(tt.secret)) || !json.Valid(out) {
				t.Errorf("JSON(%s) = %s, %d; want valid JSON with %s redacted", doc, out, n, tt.secret)
			}
		})
	}
}

func TestPatternsDefaultOffAndNoFalsePositives(t *testing.T) {
	r := mustNew(t, Config{})
	for _, s := range []string{
		"jane@example.com +1 415-555-0132", // pii is off by default
		"the bearer of bad news",           // short word after bearer
		"AKIA is a prefix",                 // too short
		"2025-06-18 12:00:00",              // a date
		"plain text with ghost and github", // hints without tokens
	} {
		if got, n := r.String(s); n != 0 || got != s {
			t.Errorf("String(%q) = %q, %d; want unchanged", s, got, n)
		}
	}
	none := mustNew(t, Config{Patterns: []string{}})
	if got, n := none.String("AKIAIOSFODNN7EXAMPLE"); n != 0 || got != "AKIAIOSFODNN7EXAMPLE" {
		t.Errorf("with Patterns empty String = %q, %d; want unchanged", got, n)
	}
}

func TestKeyRules(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		in   string
		want string // canonical JSON with placeholders shown as R(rule)
		n    int
	}{
		{"default bare key at depth", nil,
			`{"params":{"arguments":{"user":"bob","Password":"hunter2"}}}`,
			`{"params":{"arguments":{"Password":"R(password)","user":"bob"}}}`, 1},
		{"number and object values", nil,
			`{"token":12345,"api_key":{"a":1},"secret":null}`,
			`{"api_key":"R(api_key)","secret":null,"token":"R(token)"}`, 2},
		{"inside arrays", nil,
			`{"items":[{"cookie":"c1"},{"cookie":"c2","x":[1,2]}]}`,
			`{"items":[{"cookie":"R(cookie)"},{"cookie":"R(cookie)","x":[1,2]}]}`, 2},
		{"wildcard path", []string{"*.token"},
			`{"token":"top","a":{"token":"deep"}}`,
			`{"a":{"token":"R(*.token)"},"token":"top"}`, 1},
		{"dotted path suffix", []string{"arguments.card.number"},
			`{"params":{"arguments":{"card":{"number":"4111111111111111","cvc":"1"}},"card":{"number":"x"}}}`,
			`{"params":{"arguments":{"card":{"cvc":"1","number":"R(arguments.card.number)"}},"card":{"number":"x"}}}`, 1},
		{"escaped key", nil,
			`{"pass\u0077ord":"x"}`,
			`{"password":"R(password)"}`, 1},
		{"envelope untouched", []string{"id", "method", "jsonrpc", "token"},
			`{"jsonrpc":"2.0","id":"tok-1","method":"tools/call","params":{"id":"inner","token":"t"}}`,
			`{"id":"tok-1","jsonrpc":"2.0","method":"tools/call","params":{"id":"R(id)","token":"R(token)"}}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, Config{Keys: tt.keys})
			out, n := r.JSON([]byte(tt.in))
			got := placeholderRE.ReplaceAllString(canonical(t, out), "R($1)")
			if got != tt.want || n != tt.n {
				t.Errorf("JSON(%s) = %s, %d\nwant %s, %d", tt.in, got, n, tt.want, tt.n)
			}
		})
	}
}

func TestStructureAndFormattingPreserved(t *testing.T) {
	r := mustNew(t, Config{})
	in := "{\n  \"z\": 1.50e3,\n  \"a\": [true, false, null, \"\\u00e9\"],\n  \"password\" : \"p\",\n  \"n\": {}\n}"
	out, n := r.JSON([]byte(in))
	want := strings.Replace(in, `"p"`, `"`+r.placeholder("password", []byte("p"))+`"`, 1)
	if string(out) != want || n != 1 {
		t.Errorf("JSON(%q) =\n%s\nwant\n%s", in, out, want)
	}
	clean := []byte(`{"b":2,"a":[1,{"c":"d"}]}`)
	if out, n := r.JSON(clean); !bytes.Equal(out, clean) || n != 0 {
		t.Errorf("JSON(%s) = %s, %d; want unchanged", clean, out, n)
	}
}

func TestTokens(t *testing.T) {
	r1 := mustNew(t, Config{})
	a, _ := r1.String("Bearer sameSecretValue123")
	b, _ := r1.String("bearer sameSecretValue123 again")
	c, _ := r1.String("Bearer otherSecretValue456")
	pa, pb, pc := FindPlaceholders([]byte(a)), FindPlaceholders([]byte(b)), FindPlaceholders([]byte(c))
	if pa[0].Token != pb[0].Token {
		t.Errorf("equal secrets gave %s and %s, want equal tokens", pa[0].Token, pb[0].Token)
	}
	if pa[0].Token == pc[0].Token {
		t.Errorf("different secrets gave the same token %s", pa[0].Token)
	}
	r2, err := New(Config{}, []byte("another key"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := r2.String("Bearer sameSecretValue123")
	if FindPlaceholders([]byte(d))[0].Token == pa[0].Token {
		t.Errorf("different HMAC keys gave the same token")
	}
	// The key-rule token of a string equals the pattern token of the same text
	// (same HMAC input), and JSON escapes do not change it.
	out, _ := r1.JSON([]byte(`{"password":"s\u0065cret"}`))
	out2, _ := r1.JSON([]byte(`{"password":"secret"}`))
	if !bytes.Equal(out, out2) {
		t.Errorf("escaped and plain secret gave %s and %s", out, out2)
	}
	if !strings.Contains(a, "«redacted:bearer:hmac:") || len(pa[0].HMAC) != 16 {
		t.Errorf("token %q does not look like «redacted:bearer:hmac:<16 hex>»", pa[0].Token)
	}
}

func TestIdempotent(t *testing.T) {
	r := mustNew(t, Config{Patterns: []string{"secrets", "pii"}})
	in := []byte(`{"password":"x","note":"mail a@b.io, key AKIAIOSFODNN7EXAMPLE"}`)
	once, n1 := r.JSON(in)
	twice, n2 := r.JSON(once)
	if n1 != 3 || n2 != 0 || !bytes.Equal(once, twice) {
		t.Errorf("JSON twice: %s (%d) then %s (%d); want 3 then unchanged", once, n1, twice, n2)
	}
}

func TestInvalidJSONTreatedAsString(t *testing.T) {
	r := mustNew(t, Config{})
	in := []byte(`not json: Bearer abcdefgh12345678 {`)
	out, n := r.JSON(in)
	if n != 1 || bytes.Contains(out, []byte("abcdefgh12345678")) || !bytes.HasPrefix(out, []byte("not json: Bearer «")) {
		t.Errorf("JSON(%s) = %s, %d", in, out, n)
	}
	pout, pn, trunc, _ := r.Payload(in)
	if !json.Valid(pout) || pn != 1 || trunc {
		t.Errorf("Payload(invalid) = %s, %d, %v; want a valid JSON string", pout, pn, trunc)
	}
}

func TestPayloadCap(t *testing.T) {
	tests := []struct {
		name      string
		max       int
		in        string
		truncated bool
	}{
		{"fits", 100, `{"a":"short"}`, false},
		{"ascii", 120, `{"text":"` + strings.Repeat("x", 500) + `"}`, true},
		{"escapes grow preview", 90, `{"t":"` + strings.Repeat(`\"\\\n`, 100) + `"}`, true},
		{"multibyte", 80, `{"t":"` + strings.Repeat("é€😀", 60) + `"}`, true},
		{"tiny cap", 10, `{"t":"` + strings.Repeat("x", 50) + `"}`, true},
		{"no cap", -1, `{"t":"` + strings.Repeat("x", 70000) + `"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, Config{MaxPayloadBytes: tt.max})
			out, _, trunc, sum := r.Payload([]byte(tt.in))
			if trunc != tt.truncated || !json.Valid(out) {
				t.Fatalf("Payload = %s, truncated %v; want valid JSON, truncated %v", out, trunc, tt.truncated)
			}
			if tt.max >= 0 && len(out) > max(tt.max, 60) {
				t.Errorf("len(out) = %d over cap %d", len(out), tt.max)
			}
			if len(sum) != 64 {
				t.Errorf("sha256hex = %q", sum)
			}
			if trunc {
				var m struct {
					T       bool   `json:"_mcptrail_truncated"`
					Bytes   int    `json:"bytes"`
					Preview string `json:"preview"`
				}
				if err := json.Unmarshal(out, &m); err != nil || !m.T || m.Bytes != len(tt.in) {
					t.Errorf("marker = %s (%v), want _mcptrail_truncated and bytes %d", out, err, len(tt.in))
				}
				if !strings.HasPrefix(tt.in, m.Preview) && tt.name != "escapes grow preview" {
					t.Errorf("preview %q is not a prefix of the payload", m.Preview)
				}
			}
		})
	}
	// The digest is of the original, so it differs from a digest of the output.
	r := mustNew(t, Config{})
	in := []byte(`{"password":"p"}`)
	out, _, _, sum := r.Payload(in)
	_, _, _, sumOut := r.Payload(out)
	if sum == sumOut {
		t.Errorf("sha256 of original equals sha256 of the redacted output")
	}
}

func TestFill(t *testing.T) {
	r := mustNew(t, Config{})
	in := []byte(`{"password":"hunter\"2","h":"Bearer abcdefgh12345678","api_key":"k"}`)
	red, _ := r.JSON(in)
	ps := FindPlaceholders(red)
	if len(ps) != 3 {
		t.Fatalf("FindPlaceholders(%s) = %+v, want 3", red, ps)
	}
	out, unresolved := Fill(red, map[string]string{
		"password":  `hunter"2`,         // by rule
		ps[1].Token: "abcdefgh12345678", // by full token
	})
	if len(unresolved) != 1 || unresolved[0].Rule != "api_key" {
		t.Fatalf("unresolved = %+v, want the api_key placeholder", unresolved)
	}
	want := strings.Replace(string(in), `"k"`, `"`+unresolved[0].Token+`"`, 1)
	if canonical(t, out) != canonical(t, []byte(want)) {
		t.Errorf("Fill = %s\nwant %s", out, want)
	}
	if same, u := Fill([]byte(`{"a":1}`), nil); string(same) != `{"a":1}` || u != nil {
		t.Errorf("Fill without placeholders = %s, %v", same, u)
	}
}

func TestVersion(t *testing.T) {
	a := mustNew(t, Config{})
	b := mustNew(t, Config{})
	c := mustNew(t, Config{Patterns: []string{"secrets", "pii"}})
	if a.Version() != b.Version() || a.Version() == c.Version() {
		t.Errorf("Version: same config %s/%s, other config %s; want equal then different", a.Version(), b.Version(), c.Version())
	}
	e, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(e.Version(), "-ephemeral") || strings.HasSuffix(a.Version(), "-ephemeral") {
		t.Errorf("Version with random key = %s, with key = %s", e.Version(), a.Version())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		key  string
	}{
		{"unknown set", Config{Patterns: []string{"creditcards"}}, "redact.patterns"},
		{"bad regexp", Config{Custom: []Pattern{{"x", "("}}}, "redact.custom"},
		{"bad name", Config{Custom: []Pattern{{"a:b", "x"}}}, "redact.custom"},
		{"duplicate name", Config{Custom: []Pattern{{"jwt", "x"}}}, "duplicate"},
		{"bad key", Config{Keys: []string{"a..b"}}, "redact.keys"},
		{"bad cap", Config{MaxPayloadBytes: -5}, "redact.max_payload_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, testKey); err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Errorf("New(%+v) = %v, want error naming %s", tt.cfg, err, tt.key)
			}
		})
	}
}

type stringer struct{}

func (stringer) String() string { return "conn with Bearer abcdefgh12345678" }

func TestHandler(t *testing.T) {
	r := mustNew(t, Config{Keys: append([]string{"upstream.url"}, DefaultKeys...)})
	var buf bytes.Buffer
	base := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	log := slog.New(r.Handler(base)).With("api_key", "k-with", "session", "s1")
	log.WithGroup("upstream").Info("calling with Bearer abcdefgh12345678",
		"url", "https://x", "n", 3,
		slog.Group("auth", "password", "p", "user", "bob"),
		"err", os.ErrNotExist,
		"raw", json.RawMessage(`{"token":"t","ok":true}`),
		"obj", stringer{},
	)
	got := buf.String()
	for _, secret := range []string{"abcdefgh12345678", "k-with", `"p"`, `"t"`, "https://x"} {
		if strings.Contains(got, secret) {
			t.Errorf("log line leaks %s:\n%s", secret, got)
		}
	}
	for _, keep := range []string{`"session":"s1"`, `"n":3`, `"user":"bob"`, `"ok":true`, "«redacted:upstream.url:hmac:", "«redacted:password:hmac:"} {
		if !strings.Contains(got, keep) {
			t.Errorf("log line lacks %s:\n%s", keep, got)
		}
	}
	golden(t, "handler.golden", placeholderRE.ReplaceAll(buf.Bytes(), []byte("R($1)")))
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
		t.Fatalf("reading golden file (run go test ./recorder/redact -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test ./recorder/redact -update):\ngot  %s\nwant %s", path, got, want)
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"password":"p","q":"Bearer abcdefgh12345678"}}}`,
		`[1,"a",{"token":[1,{"x":null}]}]`, `"AKIAIOSFODNN7EXAMPLE"`, `{"a":"\u00ab\ud83d\ude00"}`, `not json`, ``, `{"password":"«redacted:password:hmac:0123456789abcdef»"}`,
		`{"content":[{"type":"text","text":"{\"token\":\"t\",\"x\":[1,\"{\\\"a\\\":{\\\"b\\\":{\\\"c\\\":2}}}\"]}"}]}`,
	} {
		f.Add([]byte(s))
	}
	for _, tt := range patternCases {
		f.Add([]byte(tt.text))
	}
	r := mustNew(f, Config{Patterns: []string{"secrets", "pii"}, Keys: append([]string{"*.x", "a.b.c"}, DefaultKeys...)})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, n := r.JSON(b)
		if !json.Valid(b) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("JSON(%q) = %q: invalid JSON", b, out)
		}
		if n == 0 && !bytes.Equal(out, b) {
			t.Fatalf("JSON(%q) changed the input without counting", b)
		}
		var in, got map[string]json.RawMessage
		if json.Unmarshal(b, &in) == nil && json.Unmarshal(out, &got) == nil {
			// Key rules never replace the envelope; only a secret pattern
			// inside it changes it.
			for _, k := range []string{"jsonrpc", "id", "method"} {
				if !bytes.Equal(in[k], got[k]) && len(FindPlaceholders(got[k])) == 0 {
					t.Fatalf("top-level %s changed: %s → %s", k, in[k], got[k])
				}
			}
		}
		var vin, vout any
		_ = json.Unmarshal(b, &vin)
		_ = json.Unmarshal(out, &vout)
		if !sameShape(vin, vout) {
			t.Fatalf("structure changed: %s → %s", b, out)
		}
	})
}

func hasRedactedKey(m map[string]any) bool {
	for k := range m {
		if strings.Contains(k, "«redacted:") {
			return true
		}
	}
	return false
}

// sameShape reports whether b has a's objects, keys and array lengths;
// leaves may change (redacted values become strings).
func sameShape(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			_, isStr := b.(string) // a whole object redacted under a key rule
			return isStr
		}
		if len(av) != len(bv) {
			return false
		}
		for k := range av {
			if _, ok := bv[k]; !ok {
				if !hasRedactedKey(bv) {
					return false
				}
				continue // a key holding a secret pattern was redacted
			}
			if !sameShape(av[k], bv[k]) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok {
			_, isStr := b.(string)
			return isStr
		}
		if len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !sameShape(av[i], bv[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.TypeOf(b) == reflect.TypeOf(a) || reflect.TypeOf(b) == reflect.TypeOf("")
	}
}

func BenchmarkJSON(b *testing.B) {
	r := mustNew(b, Config{})
	args := map[string]any{
		"query":    "select name, email from customers where region = 'emea' and status = 'active'",
		"limit":    50,
		"password": "hunter2",
		"headers":  map[string]string{"Authorization": "Bearer abcdefgh12345678", "Accept": "application/json"},
		"filters":  []any{map[string]any{"field": "created_at", "op": ">=", "value": "2025-01-01"}, map[string]any{"field": "tier", "op": "in", "value": []string{"gold", "silver"}}},
		"notes":    strings.Repeat("Customer asked for a follow-up about the renewal. ", 8),
	}
	params, _ := json.Marshal(map[string]any{"name": "crm.search", "arguments": args, "_meta": map[string]any{"progressToken": 7}})
	for len(params) < 1024 {
		args["notes"] = args["notes"].(string) + " more context"
		params, _ = json.Marshal(map[string]any{"name": "crm.search", "arguments": args})
	}
	b.SetBytes(int64(len(params)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		_, n = r.JSON(params)
	}
	if n != 2 { // password and Authorization (a key rule hides the bearer too)
		b.Fatalf("JSON redacted %d values, want 2", n)
	}
}

// Secrets must not survive inside other encodings: JSON text carried in a
// string value (an MCP tool result's content[].text, arguments passed as a
// JSON string), several levels deep, or a private key cut before its END
// line (error texts are capped before they are redacted).
func TestSecretsInNestedEncodings(t *testing.T) {
	tests := []struct {
		name   string
		keys   []string
		in     string
		secret string
		keep   string
	}{
		{"JSON text in a tool result", nil,
			`{"content":[{"type":"text","text":"{\"password\":\"hunter2\",\"user\":\"bob\"}"}],"isError":false}`,
			"hunter2", "bob"},
		{"JSON text two levels deep", nil,
			`{"arguments":"{\"config\":\"{\\\"api_key\\\":\\\"k-123456789\\\"}\",\"q\":\"acme\"}"}`,
			"k-123456789", "acme"},
		{"JSON array text", nil,
			`{"text":" [{\"token\":\"t-secret-1\"},{\"name\":\"n\"}]"}`,
			"t-secret-1", `\"name\"`},
		{"dotted path continues into JSON text", []string{"arguments.card.number"},
			`{"params":{"arguments":"{\"card\":{\"number\":\"4111111111111111\",\"cvc\":\"1\"}}"}}`,
			"4111111111111111", "cvc"},
		{"pattern in JSON text", nil,
			`{"text":"{\"headers\":{\"X\":\"Bearer abcdefgh12345678\"}}"}`,
			"abcdefgh12345678", "headers"},
		{"private key cut before END", nil,
			`{"error":"bad key -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretkeymaterial"}`,
			"MIIEpAIBAAKCAQEA", "bad key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.keys
			if keys != nil {
				keys = append(keys, DefaultKeys...)
			}
			r := mustNew(t, Config{Keys: keys})
			out, n := r.JSON([]byte(tt.in))
			if n == 0 || bytes.Contains(out, []byte(tt.secret)) || !bytes.Contains(out, []byte(tt.keep)) || !json.Valid(out) {
				t.Errorf("JSON(%s) = %s, %d; want valid JSON without %q, keeping %q", tt.in, out, n, tt.secret, tt.keep)
			}
			if again, n2 := r.JSON(out); n2 != 0 || !bytes.Equal(again, out) {
				t.Errorf("JSON twice = %s, %d; want unchanged", again, n2)
			}
			pout, _, _, _ := r.Payload([]byte(tt.in))
			if bytes.Contains(pout, []byte(tt.secret)) {
				t.Errorf("Payload(%s) = %s; leaks %q", tt.in, pout, tt.secret)
			}
		})
	}
}

// A log attribute holding a map or struct is checked against the key rules
// too: its keys are as telling as group names.
func TestHandlerRedactsKeysInsideValues(t *testing.T) {
	r := mustNew(t, Config{})
	type creds struct {
		User     string
		Password string
	}
	var buf bytes.Buffer
	log := slog.New(r.Handler(slog.NewTextHandler(&buf, nil)))
	log.Info("upstream call",
		"headers", map[string][]string{"Authorization": {"Basic dXNlcjpodW50ZXIy"}, "Accept": {"application/json"}},
		"login", creds{User: "bob", Password: "hunter2"},
		"plain", []int{1, 2, 3},
	)
	got := buf.String()
	for _, secret := range []string{"dXNlcjpodW50ZXIy", "hunter2"} {
		if strings.Contains(got, secret) {
			t.Errorf("log line leaks %s:\n%s", secret, got)
		}
	}
	for _, keep := range []string{"application/json", "bob", "plain=\"[1 2 3]\"", "«redacted:authorization:hmac:", "«redacted:password:hmac:"} {
		if !strings.Contains(got, keep) && !(keep == "plain=\"[1 2 3]\"" && strings.Contains(got, "plain=[1 2 3]")) {
			t.Errorf("log line lacks %s:\n%s", keep, got)
		}
	}
}

func BenchmarkPayload(b *testing.B) {
	r := mustNew(b, Config{MaxPayloadBytes: -1})
	rows := make([]map[string]any, 200)
	for i := range rows {
		rows[i] = map[string]any{"id": i, "name": "customer", "email_verified": true, "notes": strings.Repeat("renewal follow-up ", 4)}
	}
	result, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": "ok"}}, "structuredContent": rows})
	b.SetBytes(int64(len(result)))
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		out, _, _, _ = r.Payload(result)
	}
	if !bytes.Equal(out, result) {
		b.Fatal("Payload changed a payload without secrets")
	}
}

// An error text may be a JSON body (a tool's isError content, a backend's
// error.message): String applies the key rules to it as JSON does.
func TestStringRedactsJSONText(t *testing.T) {
	r := mustNew(t, Config{})
	tests := []struct {
		in, secret, keep string
		n                int
	}{
		{`{"error":"auth failed","api_key":"k-live-123456"}`, "k-live-123456", "auth failed", 1},
		{` [{"password":"hunter2"}]`, "hunter2", `[{"password":`, 1},
		{`{"note":"Bearer abcdefgh12345678"}`, "abcdefgh12345678", `"note"`, 1},
		{`{"truncated": "api_key=k-1`, "k-1", `{"truncated": "api_key=«redacted:api_key:`, 1}, // not JSON: patterns and key=value pairs
		{`plain text`, "", "plain text", 0},
	}
	for _, tt := range tests {
		got, n := r.String(tt.in)
		if n != tt.n || (tt.secret != "" && strings.Contains(got, tt.secret)) || !strings.Contains(got, tt.keep) {
			t.Errorf("String(%q) = %q, %d; want %d redactions, without %q, keeping %q", tt.in, got, n, tt.n, tt.secret, tt.keep)
		}
		if again, n2 := r.String(got); n2 != 0 || again != got {
			t.Errorf("String twice = %q, %d; want unchanged", again, n2)
		}
	}
}
