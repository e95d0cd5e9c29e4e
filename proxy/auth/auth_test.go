package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

var testTokens = []Token{
	{Name: "ci", SHA256: HashToken("ci-secret"), Principal: "ci@example.com", Tools: []string{"crm.*", "files.read"}},
	{Name: "admin", SHA256: HashToken("admin-secret"), Tools: []string{"*"}},
	{Name: "none", SHA256: HashToken("none-secret"), Tools: []string{"nothing.here"}},
	{Name: "mixed", SHA256: strings.ToUpper(HashToken("mixed-secret")), Principal: "m", Tools: []string{"files.read", "files*", "*"}},
}

func mustNew(t testing.TB, tokens []Token) *Authenticator {
	t.Helper()
	a, err := New(tokens)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func TestHashToken(t *testing.T) {
	sum := sha256.Sum256([]byte("test"))
	if got, want := HashToken("test"), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("HashToken(test) = %s, want %s", got, want)
	}
	long := strings.Repeat("x", 1000) // beyond the stack buffer
	sum = sha256.Sum256([]byte(long))
	if got, want := HashToken(long), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("HashToken(long) = %s, want %s", got, want)
	}
}

func TestAuthenticate(t *testing.T) {
	a := mustNew(t, testTokens)
	if !a.Enabled() {
		t.Fatal("Enabled() = false with tokens")
	}
	tests := []struct {
		header        string
		wantPrincipal string
		wantToken     string
		wantErr       error
	}{
		{"Bearer ci-secret", "ci@example.com", "ci", nil},
		{"bearer ci-secret", "ci@example.com", "ci", nil},
		{"BEARER   ci-secret  ", "ci@example.com", "ci", nil},
		{"Bearer admin-secret", "admin", "admin", nil}, // principal defaults to the token name
		{"Bearer mixed-secret", "m", "mixed", nil},     // upper-case hex in config
		{"", "", "", ErrMissingToken},
		{"   ", "", "", ErrMissingToken},
		{"Bearer", "", "", ErrMissingToken},
		{"Bearer ", "", "", ErrMissingToken},
		{"Basic Y2k6c2VjcmV0", "", "", ErrMissingToken},
		{"ci-secret", "", "", ErrMissingToken},
		{"Bearer ci-secret extra", "", "", ErrMissingToken},
		{"Bearer ci-secreT", "", "", ErrUnknownToken},
		{"Bearer " + HashToken("ci-secret"), "", "", ErrUnknownToken}, // the hash is not the token
	}
	for _, tt := range tests {
		p, err := a.Authenticate(tt.header)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || p != nil {
				t.Errorf("Authenticate(%q) = %+v, %v; want nil, %v", tt.header, p, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Authenticate(%q) error %q leaks the token", tt.header, err)
			}
			continue
		}
		if err != nil || p.Name != tt.wantPrincipal || p.TokenName != tt.wantToken {
			t.Errorf("Authenticate(%q) = %+v, %v; want principal %s token %s", tt.header, p, err, tt.wantPrincipal, tt.wantToken)
		}
	}
}

func TestDisabled(t *testing.T) {
	for _, a := range []*Authenticator{mustNew(t, nil), {}, nil} {
		if a.Enabled() {
			t.Fatal("Enabled() = true without tokens")
		}
		for _, h := range []string{"", "Bearer whatever", "garbage"} {
			p, err := a.Authenticate(h)
			if err != nil || p.Name != Anonymous || p.TokenName != "" {
				t.Errorf("Authenticate(%q) with auth off = %+v, %v; want anonymous", h, p, err)
			}
			for k := range NumKinds {
				if ok, rule := p.Allow(k, "any.tool"); !ok || rule != "" {
					t.Errorf("anonymous Allow(%s) = %v, %q; want true, \"\"", k, ok, rule)
				}
			}
			if d := a.Authorize(p, Tools, "any.tool"); d != (Decision{Principal: Anonymous, Result: ResultNone}) || !d.Allowed() {
				t.Errorf("Authorize with auth off = %+v", d)
			}
		}
	}
}

// TestAllowMatrix checks every token against every tool.
func TestAllowMatrix(t *testing.T) {
	a := mustNew(t, testTokens)
	tools := []string{"crm.search", "crm.", "crm", "crmx.search", "files.read", "files.readall", "files.write", "filesystem.ls", "nothing.here", ""}
	// want[token][tool] is the pattern that allows it, "-" for denied.
	want := map[string][]string{
		"ci":    {"crm.*", "crm.*", "-", "-", "files.read", "-", "-", "-", "-", "-"},
		"admin": {"*", "*", "*", "*", "*", "*", "*", "*", "*", "*"},
		"none":  {"-", "-", "-", "-", "-", "-", "-", "-", "nothing.here", "-"},
		"mixed": {"*", "*", "*", "*", "files.read", "files*", "files*", "files*", "*", "*"},
	}
	for _, tok := range testTokens {
		p, err := a.Authenticate("Bearer " + tok.Name + "-secret")
		if err != nil {
			t.Fatalf("token %s: %v", tok.Name, err)
		}
		for i, tool := range tools {
			ok, rule := p.Allow(Tools, tool)
			w := want[tok.Name][i]
			if w == "-" {
				if ok || rule != "tools:default-deny" {
					t.Errorf("%s.Allow(%q) = %v, %q; want denied by tools:default-deny", tok.Name, tool, ok, rule)
				}
				d := a.Authorize(p, Tools, tool)
				if d.Result != ResultDenied || d.Allowed() || !strings.Contains(d.Reason, tool) || d.Principal != p.Name || d.Rule != "tools:default-deny" {
					t.Errorf("Authorize(%s, %q) = %+v; want denied naming the tool", tok.Name, tool, d)
				}
				continue
			}
			w = "tools:" + w
			if !ok || rule != w {
				t.Errorf("%s.Allow(%q) = %v, %q; want true, %q", tok.Name, tool, ok, rule, w)
			}
			if d := a.Authorize(p, Tools, tool); d != (Decision{Principal: p.Name, Result: ResultAllowed, Rule: w}) {
				t.Errorf("Authorize(%s, %q) = %+v", tok.Name, tool, d)
			}
		}
	}
	var nilP *Principal
	if ok, _ := nilP.Allow(Tools, "crm.search"); ok {
		t.Error("nil principal allowed")
	}
	if d := a.Authorize(nil, Tools, "crm.search"); d.Result != ResultDenied {
		t.Errorf("Authorize(nil) = %+v", d)
	}
	if d := Denied(ErrUnknownToken); d.Result != ResultDenied || d.Reason != "unknown bearer token" {
		t.Errorf("Denied = %+v", d)
	}
}

func TestNewRejects(t *testing.T) {
	h := HashToken("x")
	tests := []struct {
		name   string
		tokens []Token
		want   string
	}{
		{"no name", []Token{{SHA256: h, Tools: []string{"*"}}}, "name is required"},
		{"duplicate name", []Token{{Name: "a", SHA256: h, Tools: []string{"*"}}, {Name: "a", SHA256: HashToken("y"), Tools: []string{"*"}}}, "duplicate name"},
		{"duplicate hash", []Token{{Name: "a", SHA256: h, Tools: []string{"*"}}, {Name: "b", SHA256: h, Tools: []string{"*"}}}, "same hash as token a"},
		{"short hash", []Token{{Name: "a", SHA256: h[:10], Tools: []string{"*"}}}, "64 hex digits"},
		{"not hex", []Token{{Name: "a", SHA256: strings.Repeat("g", 64), Tools: []string{"*"}}}, "64 hex digits"},
		{"star in middle", []Token{{Name: "a", SHA256: h, Tools: []string{"*.read"}}}, "only at the end"},
		{"empty pattern", []Token{{Name: "a", SHA256: h, Tools: []string{""}}}, "empty tool pattern"},
		{"space in pattern", []Token{{Name: "a", SHA256: h, Tools: []string{"a b"}}}, "spaces"},
		{"resource without server", []Token{{Name: "a", SHA256: h, Resources: []string{"test://static/*"}}}, "<server>:<uri pattern>"},
		{"resource with wild server", []Token{{Name: "a", SHA256: h, Resources: []string{"mem*:x"}}}, "only at the end"},
		{"star in middle of a prompt", []Token{{Name: "a", SHA256: h, Prompts: []string{"a*b"}}}, "prompt pattern"},
		// Reserved principals: a JWT user's owner key, the principal of
		// every caller while authentication is off, the gateway's own.
		{"oauth principal", []Token{{Name: "a", SHA256: h, Principal: "oauth:alice", Tools: []string{"*"}}}, `"oauth:alice": the prefix "oauth:" is reserved`},
		{"oauth principal by name", []Token{{Name: "OAuth:alice", SHA256: h, Tools: []string{"*"}}}, `the prefix "oauth:" is reserved`},
		{"anonymous principal", []Token{{Name: "a", SHA256: h, Principal: "anonymous", Tools: []string{"*"}}}, `"anonymous" is reserved`},
		{"gateway principal", []Token{{Name: "a", SHA256: h, Principal: "mcptrail", Tools: []string{"*"}}}, `"mcptrail" is reserved`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.tokens)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	a := mustNew(t, testTokens)
	p, _ := a.Authenticate("Bearer ci-secret")
	got := p.Patterns(Tools)
	got[0] = "mutated"
	if again := p.Patterns(Tools); again[0] != "crm.*" || len(again) != 2 {
		t.Errorf("Patterns() = %q; must be a copy of the configured order", again)
	}
}

func FuzzAuthenticate(f *testing.F) {
	for _, s := range []string{"", "Bearer ci-secret", "bearer  x", "Basic abc", "Bearer", "Bearer a b", "Bearer\tci-secret", "\x00Bearer ci-secret"} {
		f.Add(s)
	}
	a := mustNew(f, testTokens)
	f.Fuzz(func(t *testing.T, header string) {
		p, err := a.Authenticate(header)
		if (p == nil) == (err == nil) {
			t.Fatalf("Authenticate(%q) = %v, %v: exactly one must be nil", header, p, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMissingToken) && !errors.Is(err, ErrUnknownToken) {
				t.Fatalf("Authenticate(%q) error %v is not a sentinel", header, err)
			}
			return
		}
		tok, terr := BearerToken(header)
		if terr != nil || HashToken(tok) != strings.ToLower(tokenHash(p.TokenName)) {
			t.Fatalf("Authenticate(%q) accepted token %q as %s", header, tok, p.TokenName)
		}
	})
}

func tokenHash(name string) string {
	for _, t := range testTokens {
		if t.Name == name {
			return t.SHA256
		}
	}
	return ""
}

func BenchmarkAuthenticateAllow(b *testing.B) {
	tokens := make([]Token, 0, 20)
	for i := range 20 {
		tokens = append(tokens, Token{Name: "t" + string(rune('a'+i)), SHA256: HashToken("secret-" + string(rune('a'+i))), Tools: []string{"files.read", "crm.*"}})
	}
	a := mustNew(b, tokens)
	header := "Bearer secret-t"
	allowed := 0
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Authenticate(header)
		if err != nil {
			b.Fatal(err)
		}
		if ok, _ := p.Allow(Tools, "crm.search"); ok {
			allowed++
		}
	}
	if allowed != b.N {
		b.Fatalf("allowed %d of %d", allowed, b.N)
	}
}

// TestKinds: each kind has its own list; a token that lists only tools
// gets nothing else; resource prefixes do not stretch past dot segments.
func TestKinds(t *testing.T) {
	a := mustNew(t, []Token{
		{Name: "tools-only", SHA256: HashToken("t1"), Tools: []string{"*"}},
		{Name: "all", SHA256: HashToken("t2"), Tools: []string{"*"}, Prompts: []string{"*"}, Resources: []string{"*"}, Completions: []string{"*"}, Methods: []string{"*"}},
		{Name: "scoped", SHA256: HashToken("t3"), Prompts: []string{"everything.simple*"},
			Resources: []string{"everything:test://static/*", "memory:*"}, Completions: []string{"everything.complex_prompt"}, Methods: []string{"tasks/*"}},
	})
	tests := []struct {
		token  string
		kind   Kind
		target string
		want   string // the deciding rule; "-" for denied by default
	}{
		{"tools-only", Tools, "everything.echo", "tools:*"},
		{"tools-only", Prompts, "everything.simple-prompt", "-"},
		{"tools-only", Resources, "memory:memory://knowledge-graph", "-"},
		{"tools-only", Completions, "everything.complex_prompt", "-"},
		{"tools-only", Methods, "tasks/get", "-"},
		{"all", Methods, "anything/else", "methods:*"},
		{"all", Resources, "everything:test://../../etc/passwd", "resources:*"},
		{"scoped", Tools, "everything.echo", "-"},
		{"scoped", Prompts, "everything.simple-prompt", "prompts:everything.simple*"},
		{"scoped", Prompts, "memory.simple", "-"},
		{"scoped", Resources, "everything:test://static/resource/1", "resources:everything:test://static/*"},
		{"scoped", Resources, "everything:test://static/../secret", "-"},
		{"scoped", Resources, "everything:test://static/%2e%2e/secret", "-"},
		{"scoped", Resources, "everything:test://static/a/./b", "-"},
		{"scoped", Resources, "everything:test://static/a\\..\\b", "-"},
		// A WHATWG URL parser (Node's URL, so the TypeScript SDK's servers)
		// drops tabs and newlines: "\t.." is ".." to the backend.
		{"scoped", Resources, "everything:test://static/\t../secret", "-"},
		{"scoped", Resources, "everything:test://static/.\n./secret", "-"},
		{"scoped", Resources, "everything:test://static/a/\r..\r/secret", "-"},
		{"scoped", Resources, "everything:test://static/a/\x00..\x7f/secret", "-"},
		{"scoped", Resources, "everything:test://static/file.txt", "resources:everything:test://static/*"},
		{"scoped", Resources, "everything:test://dynamic/1", "-"},
		{"scoped", Resources, "memory:memory://knowledge-graph", "resources:memory:*"},
		{"scoped", Resources, "memory:memory://../anything", "resources:memory:*"},
		{"scoped", Resources, "memoryx:memory://knowledge-graph", "-"},
		{"scoped", Completions, "everything.complex_prompt", "completions:everything.complex_prompt"},
		{"scoped", Completions, "everything:test://static/{id}", "-"},
		{"scoped", Methods, "tasks/get", "methods:tasks/*"},
		{"scoped", Methods, "tools/call", "-"},
	}
	secret := map[string]string{"tools-only": "t1", "all": "t2", "scoped": "t3"}
	for _, tt := range tests {
		p, err := a.Authenticate("Bearer " + secret[tt.token])
		if err != nil {
			t.Fatal(err)
		}
		ok, rule := p.Allow(tt.kind, tt.target)
		want := tt.want
		if want == "-" {
			want = DenyRule(tt.kind)
		}
		if ok != (tt.want != "-") || rule != want {
			t.Errorf("%s.Allow(%s, %q) = %v, %q; want %v, %q", tt.token, tt.kind, tt.target, ok, rule, tt.want != "-", want)
		}
	}
}
