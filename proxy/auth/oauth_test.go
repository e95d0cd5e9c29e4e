package auth_test

// Unit tests of the claim rules (skew, scopes, groups, roles) with tokens
// signed here by go-jose; the provider integration (discovery, rotation,
// refusals) is TestOAuthHydra in cmd/mcptrail, against a real Ory Hydra.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcptrail/mcptrail/proxy/auth"
)

type idp struct {
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	jwksHits atomic.Int64
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key}
	mux := http.NewServeMux()
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	return p
}

func (p *idp) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOAuthClaims(t *testing.T) {
	p := newIDP(t)
	const res = "https://mcp.example/mcp"
	a, err := auth.NewWithOAuth(nil, &auth.OAuth{
		Issuer: p.srv.URL, Resource: res, ClockSkew: 10 * time.Second, RequiredScopes: []string{"mcp"},
		Bindings: []auth.Binding{{Role: "ops", Groups: []string{"ops"}}, {Role: "reader", Scopes: []string{"read"}}, {Role: "ops", Subjects: []string{"root"}}},
		Roles:    []auth.Role{{Name: "reader", Tools: []string{"crm.get"}}, {Name: "ops", Tools: []string{"*"}, Resources: []string{"files:file:///srv/*"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	base := func(kv ...any) map[string]any {
		c := map[string]any{"iss": p.srv.URL, "aud": []string{res}, "sub": "alice", "exp": now + 60, "scope": "mcp read"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	tests := []struct {
		name   string
		claims map[string]any
		roles  []string // nil with err
		err    error
	}{
		{"scope string", base(), []string{"reader"}, nil},
		{"scp array", base("scope", nil, "scp", []string{"mcp", "read"}), []string{"reader"}, nil},
		{"groups array", base("groups", []string{"ops"}), []string{"ops", "reader"}, nil},
		{"groups string", base("groups", "x ops"), []string{"ops", "reader"}, nil},
		{"subject, role once", base("sub", "root", "groups", []string{"ops"}), []string{"ops", "reader"}, nil},
		{"no role", base("scope", "mcp"), nil, nil},
		{"aud string", base("aud", res), []string{"reader"}, nil},
		{"expired within skew", base("exp", now-5), []string{"reader"}, nil},
		{"expired beyond skew", base("exp", now-15), nil, auth.ErrUnknownToken},
		{"no exp", base("exp", nil), nil, auth.ErrUnknownToken},
		{"nbf within skew", base("nbf", now+5), []string{"reader"}, nil},
		{"nbf beyond skew", base("nbf", now+30), nil, auth.ErrUnknownToken},
		{"wrong aud", base("aud", []string{"https://other/"}), nil, auth.ErrUnknownToken},
		{"wrong iss", base("iss", "https://evil/"), nil, auth.ErrUnknownToken},
		{"no sub", base("sub", nil), nil, auth.ErrUnknownToken},
		{"missing scope", base("scope", "read"), nil, &auth.InsufficientScopeError{}},
	}
	for _, tt := range tests {
		pr, err := a.AuthenticateContext(context.Background(), "Bearer "+p.sign(t, tt.claims))
		var scopeErr *auth.InsufficientScopeError
		switch {
		case tt.err == nil && err != nil:
			t.Errorf("%s: Authenticate = %v, want ok", tt.name, err)
		case tt.err != nil && errors.As(tt.err, &scopeErr):
			if !errors.As(err, &scopeErr) || scopeErr.Scope != "mcp" {
				t.Errorf("%s: Authenticate = %v, want insufficient scope mcp", tt.name, err)
			}
		case tt.err != nil && !errors.Is(err, tt.err):
			t.Errorf("%s: Authenticate = %v, want %v", tt.name, err, tt.err)
		case tt.err == nil && !slices.Equal(pr.Roles, tt.roles):
			t.Errorf("%s: roles = %v, want %v", tt.name, pr.Roles, tt.roles)
		}
	}

	// Roles → rules: deny by default; the rule names the role.
	pr, err := a.AuthenticateContext(context.Background(), "Bearer "+p.sign(t, base()))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k      auth.Kind
		target string
		ok     bool
		rule   string
	}{
		{auth.Tools, "crm.get", true, "role:reader/tools:crm.get"},
		{auth.Tools, "crm.delete", false, "tools:default-deny"},
		{auth.Prompts, "crm.p", false, "prompts:default-deny"},
		{auth.Resources, "files:file:///srv/a", false, "resources:default-deny"},
	} {
		if ok, rule := pr.Allow(c.k, c.target); ok != c.ok || rule != c.rule {
			t.Errorf("reader Allow(%s, %s) = %v %q, want %v %q", c.k, c.target, ok, rule, c.ok, c.rule)
		}
	}
	if pr.Name != "alice" || pr.ScopeRequestID("x") == "x" {
		t.Errorf("principal %q, request ID scope %q", pr.Name, pr.ScopeRequestID("x"))
	}
	ops, _ := a.AuthenticateContext(context.Background(), "Bearer "+p.sign(t, base("groups", []string{"ops"})))
	if ok, rule := ops.Allow(auth.Resources, "files:file:///srv/a/../../etc"); ok {
		t.Errorf("ops may read a climbing URI (rule %q)", rule)
	}
	if ok, rule := ops.Allow(auth.Tools, "crm.delete"); !ok || rule != "role:ops/tools:*" {
		t.Errorf("ops Allow(crm.delete) = %v %q", ok, rule)
	}
}

func TestOAuthConfigRefusesSymmetricAlgs(t *testing.T) {
	for _, alg := range []string{"none", "HS256"} {
		if _, err := auth.NewWithOAuth(nil, &auth.OAuth{Issuer: "https://i/", Resource: "https://r/", Algorithms: []string{alg}}); err == nil {
			t.Errorf("algorithm %s accepted", alg)
		}
	}
}

func TestOAuthProviderDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	a, err := auth.NewWithOAuth([]auth.Token{{Name: "s", SHA256: auth.HashToken("static"), Tools: []string{"*"}}},
		&auth.OAuth{Issuer: srv.URL, Resource: "https://r/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthenticateContext(context.Background(), "Bearer a.b.c"); !errors.Is(err, auth.ErrProviderUnavailable) {
		t.Errorf("JWT with the provider down: %v, want ErrProviderUnavailable", err)
	}
	if p, err := a.AuthenticateContext(context.Background(), "Bearer static"); err != nil || p.TokenName != "s" {
		t.Errorf("static token with the provider down: %v %v", p, err)
	}
}

// A JWT whose subject equals a static token's principal name is not that
// principal for what it owns: sessions and the request ID namespace.
func TestOAuthSubjectIsNotStaticPrincipal(t *testing.T) {
	p := newIDP(t)
	a, err := auth.NewWithOAuth([]auth.Token{{Name: "ops-token", Principal: "ops", SHA256: auth.HashToken("static"), Tools: []string{"*"}}},
		&auth.OAuth{Issuer: p.srv.URL, Resource: "https://r/"})
	if err != nil {
		t.Fatal(err)
	}
	static, err := a.Authenticate("Bearer static")
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := a.AuthenticateContext(context.Background(), "Bearer "+p.sign(t, map[string]any{
		"iss": p.srv.URL, "aud": "https://r/", "sub": "ops", "exp": time.Now().Unix() + 60}))
	if err != nil {
		t.Fatal(err)
	}
	if jwt.Name != static.Name {
		t.Fatalf("names %q and %q, want both ops", jwt.Name, static.Name)
	}
	if jwt.OwnerKey() == static.OwnerKey() || jwt.ScopeRequestID("1") == static.ScopeRequestID("1") {
		t.Errorf("JWT sub ops and static principal ops share owner key %q / request ID %q", jwt.OwnerKey(), jwt.ScopeRequestID("1"))
	}
}

// BenchmarkOAuthAuthenticate is the cost of authenticating one request with
// an ES256 JWT (keys cached): signature, claims, roles.
func BenchmarkOAuthAuthenticate(b *testing.B) {
	t := &testing.T{}
	p := newIDP(t)
	b.Cleanup(p.srv.Close)
	a, err := auth.NewWithOAuth(nil, &auth.OAuth{Issuer: p.srv.URL, Resource: "https://r/",
		Bindings: []auth.Binding{{Role: "r", Groups: []string{"g"}}}, Roles: []auth.Role{{Name: "r", Tools: []string{"*"}}}})
	if err != nil {
		b.Fatal(err)
	}
	h := "Bearer " + p.sign(t, map[string]any{"iss": p.srv.URL, "aud": "https://r/", "sub": "u", "groups": []string{"g"}, "exp": time.Now().Unix() + 3600})
	ctx := context.Background()
	if _, err := a.AuthenticateContext(ctx, h); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.AuthenticateContext(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOAuthTamper: whatever is done to a valid token's bytes, the result is
// refused, or it is the same principal with the same roles (a change that
// decodes to the same bytes, as unused base64 bits can).
func FuzzOAuthTamper(f *testing.F) {
	t := &testing.T{}
	p := newIDP(t)
	f.Cleanup(p.srv.Close)
	a, err := auth.NewWithOAuth(nil, &auth.OAuth{Issuer: p.srv.URL, Resource: "https://r/",
		Bindings: []auth.Binding{{Role: "r", Groups: []string{"g"}}}, Roles: []auth.Role{{Name: "r", Tools: []string{"*"}}}})
	if err != nil {
		f.Fatal(err)
	}
	tok := p.sign(t, map[string]any{"iss": p.srv.URL, "aud": "https://r/", "sub": "u", "groups": []string{"g"}, "exp": time.Now().Unix() + 3600})
	f.Add(0, byte('A'), "")
	f.Add(len(tok)-1, byte('B'), "")
	f.Add(strings.IndexByte(tok, '.')+3, byte('x'), "")
	f.Add(-1, byte(0), `{"alg":"none"}`)
	f.Fuzz(func(t *testing.T, pos int, b byte, header string) {
		mut := []byte(tok)
		if pos >= 0 && pos < len(mut) {
			mut[pos] = b
		}
		s := string(mut)
		if header != "" {
			s = base64.RawURLEncoding.EncodeToString([]byte(header)) + s[strings.IndexByte(s, '.'):]
		}
		if s == tok {
			return
		}
		pr, err := a.AuthenticateContext(context.Background(), "Bearer "+s)
		if err == nil && (pr.Name != "u" || !slices.Equal(pr.Roles, []string{"r"})) {
			t.Fatalf("tampered token %q authenticated as %q %v", s, pr.Name, pr.Roles)
		}
	})
}

// Bad tokens do not make the gateway fetch the provider's keys each time
// (go-oidc refetches the JWKS for every signature its cached keys do not
// verify): 50 tampered tokens cost at most one fetch after the first.
// Fails before the fix (51 fetches).
func TestOAuthBadTokensDoNotHammerJWKS(t *testing.T) {
	p := newIDP(t)
	a, err := auth.NewWithOAuth(nil, &auth.OAuth{Issuer: p.srv.URL, Resource: "https://r/"})
	if err != nil {
		t.Fatal(err)
	}
	tok := p.sign(t, map[string]any{"iss": p.srv.URL, "aud": "https://r/", "sub": "u", "exp": time.Now().Unix() + 60})
	if _, err := a.AuthenticateContext(context.Background(), "Bearer "+tok); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		bad := []byte(tok)
		bad[len(bad)-2-i%20] ^= 1
		if _, err := a.AuthenticateContext(context.Background(), "Bearer "+string(bad)); !errors.Is(err, auth.ErrUnknownToken) {
			t.Fatalf("tampered token %d: %v, want ErrUnknownToken", i, err)
		}
	}
	if n := p.jwksHits.Load(); n > 2 {
		t.Errorf("the JWKS was fetched %d times for 1 good and 50 bad tokens, want at most 2", n)
	}
}

// slowIssuer is an IDP whose discovery document waits for release.
func slowIssuer(t *testing.T) (p *idp, asked <-chan struct{}, release func()) {
	t.Helper()
	p = newIDP(t)
	inner := p.srv.Config.Handler
	ask := make(chan struct{}, 16)
	rel := make(chan struct{})
	p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/openid-configuration") {
			ask <- struct{}{}
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release)
	return p, ask, release
}

// TestOAuthSlowIssuerStallsNoOne: while the issuer's discovery document is
// slow, a request that gives up gets its own error at once rather than
// waiting behind the discovery under a lock, and its giving up does not
// fail discovery for the requests that wait (fails before the fix: the
// lock was held across the fetch, on the first request's context, and its
// failure was remembered for discoveryRetry).
func TestOAuthSlowIssuerStallsNoOne(t *testing.T) {
	p, asked, release := slowIssuer(t)
	a, err := auth.NewWithOAuth(nil, &auth.OAuth{Issuer: p.srv.URL, Resource: "https://r/"})
	if err != nil {
		t.Fatal(err)
	}
	tok := p.sign(t, map[string]any{"iss": p.srv.URL, "aud": "https://r/", "sub": "u", "exp": time.Now().Unix() + 60})

	// The first request starts discovery, then its client goes away.
	first, cancelFirst := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := a.AuthenticateContext(first, "Bearer "+tok)
		firstErr <- err
	}()
	<-asked
	cancelFirst()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Errorf("the request that gave up got %v, want its own context.Canceled", err)
	}
	// Another one that gives up while discovery is still under way.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.AuthenticateContext(gone, "Bearer "+tok); !errors.Is(err, context.Canceled) || !errors.Is(err, auth.ErrProviderUnavailable) {
		t.Errorf("a cancelled request during discovery got %v, want ErrProviderUnavailable wrapping context.Canceled", err)
	}
	// The issuer answers: the discovery the first request started
	// completes, and a patient request is verified.
	waiting := make(chan error, 1)
	go func() {
		_, err := a.AuthenticateContext(context.Background(), "Bearer "+tok)
		waiting <- err
	}()
	release()
	if err := <-waiting; err != nil {
		t.Errorf("a request after the issuer answered: %v, want verified", err)
	}
	select {
	case <-asked:
		t.Error("the discovery document was fetched twice, want one discovery shared by every request")
	default:
	}
}
