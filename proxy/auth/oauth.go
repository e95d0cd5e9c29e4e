package auth

// OAuth 2.1 resource server: JWT access tokens from an OIDC provider.
//
// The library is github.com/coreos/go-oidc/v3 (on github.com/go-jose/go-jose/v4):
// it finds the JWKS by OIDC discovery, caches the keys and fetches them again
// when a token names a key it does not know (key rotation), and verifies
// signature, issuer and audience with an explicit algorithm list, so "none"
// and HMAC-with-the-public-key confusions never verify. Expiry and not-before
// are checked here, with the configured bounded skew (go-oidc's own nbf
// leeway is a fixed 5 minutes).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Defaults of OAuth.
const (
	DefaultClockSkew      = 30 * time.Second
	MaxClockSkew          = 5 * time.Minute
	DefaultPrincipalClaim = "sub"
	DefaultGroupsClaim    = "groups"
	// discoveryRetry is how long a failed discovery is remembered before
	// the next request tries again.
	discoveryRetry = 5 * time.Second
)

// DefaultAlgorithms are the JWS algorithms accepted when none are configured:
// asymmetric only.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// ErrProviderUnavailable: the issuer's discovery document or keys could not
// be fetched, so no JWT can be verified now. Callers answer 503.
var ErrProviderUnavailable = errors.New("identity provider unavailable")

// InsufficientScopeError: a valid token lacks a required scope. Callers
// answer 403 with error="insufficient_scope" and the Scope.
type InsufficientScopeError struct{ Scope string }

func (e *InsufficientScopeError) Error() string {
	return "insufficient scope: the token lacks scope " + e.Scope
}

// OAuth configures JWT access tokens.
type OAuth struct {
	// Issuer is the authorization server; its OIDC discovery document is
	// at Issuer + "/.well-known/openid-configuration".
	Issuer string
	// Resource is this gateway's resource URI: tokens must name it in aud.
	Resource string
	// ClockSkew is tolerated on exp and nbf (default DefaultClockSkew, at
	// most MaxClockSkew).
	ClockSkew time.Duration
	// Algorithms accepted (default DefaultAlgorithms).
	Algorithms []string
	// RequiredScopes must all be in the token's scope (or scp) claim.
	RequiredScopes []string
	// PrincipalClaim names the principal (default "sub"); GroupsClaim holds
	// the groups (default "groups"), a string array or a string.
	PrincipalClaim, GroupsClaim string
	// Bindings give roles to tokens by subject, group or scope.
	Bindings []Binding
	// Roles are the rules of each role.
	Roles []Role
	// HTTPClient fetches discovery and keys (default http.DefaultClient
	// with a 10 s timeout).
	HTTPClient *http.Client
}

// Binding gives Role to a token whose subject, any group or any scope is listed.
type Binding struct {
	Role                     string
	Subjects, Groups, Scopes []string
}

// Role is a named set of patterns, one list per kind, as a Token has.
type Role struct {
	Name                                            string
	Tools, Prompts, Resources, Completions, Methods []string
}

func (r *Role) patterns(k Kind) []string {
	t := Token{Tools: r.Tools, Prompts: r.Prompts, Resources: r.Resources, Completions: r.Completions, Methods: r.Methods}
	return t.Patterns(k)
}

// oauthValidator verifies JWTs and maps their claims to principals.
type oauthValidator struct {
	cfg   OAuth
	skew  time.Duration
	roles map[string]*[NumKinds][]rule

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	lastTry  time.Time
	lastErr  error
	pending  *discovery // the discovery under way, if any

	// cache holds verified tokens by sha256 until they expire, so a
	// client's repeated requests cost a hash, not a signature check.
	cacheMu sync.RWMutex
	cache   map[[32]byte]cached
}

// cached is a verified token: its principal and when it is valid.
type cached struct {
	p                   *Principal
	notBefore, notAfter time.Time // with the skew applied
}

// minRefetch is the least time between two fetches of the provider's keys
// (or discovery document): a key rotated in is seen at most this late.
const minRefetch = 5 * time.Second

// throttledGet answers a GET of a URL fetched less than min ago with that
// fetch's answer (only 200s are kept).
type throttledGet struct {
	next http.RoundTripper
	min  time.Duration
	mu   sync.Mutex
	last map[string]fetched
}

type fetched struct {
	at     time.Time
	header http.Header
	body   []byte
}

func (t *throttledGet) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet {
		return t.next.RoundTrip(r)
	}
	key := r.URL.String()
	t.mu.Lock()
	f, ok := t.last[key]
	t.mu.Unlock()
	if ok && time.Since(f.at) < t.min {
		return f.response(r), nil
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	f = fetched{at: time.Now(), header: resp.Header.Clone(), body: body}
	t.mu.Lock()
	t.last[key] = f
	t.mu.Unlock()
	return f.response(r), nil
}

func (f fetched) response(r *http.Request) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: f.header.Clone(), Body: io.NopCloser(bytes.NewReader(f.body)), ContentLength: int64(len(f.body)), Request: r}
}

// maxCached bounds the verified-token cache; when full, expired entries
// go, and if none had, all of them.
const maxCached = 4096

func newOAuthValidator(o *OAuth) (*oauthValidator, error) {
	if o.Issuer == "" {
		return nil, errors.New("oauth: issuer is required")
	}
	if o.Resource == "" {
		return nil, errors.New("oauth: resource is required")
	}
	v := &oauthValidator{cfg: *o, skew: o.ClockSkew, roles: map[string]*[NumKinds][]rule{}}
	if v.skew == 0 {
		v.skew = DefaultClockSkew
	}
	if v.skew < 0 || v.skew > MaxClockSkew {
		return nil, fmt.Errorf("oauth: clock_skew %s: want between 0 and %s", o.ClockSkew, MaxClockSkew)
	}
	if len(v.cfg.Algorithms) == 0 {
		v.cfg.Algorithms = DefaultAlgorithms
	}
	for _, a := range v.cfg.Algorithms {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return nil, fmt.Errorf("oauth: algorithm %q is not allowed (asymmetric algorithms only)", a)
		}
	}
	if v.cfg.PrincipalClaim == "" {
		v.cfg.PrincipalClaim = DefaultPrincipalClaim
	}
	if v.cfg.GroupsClaim == "" {
		v.cfg.GroupsClaim = DefaultGroupsClaim
	}
	if v.cfg.HTTPClient == nil {
		v.cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	// go-oidc fetches the JWKS again for every token its cached keys do not
	// verify, so each bad token would cost the provider a request: repeat
	// fetches of a URL within minRefetch get the last answer instead.
	hc := *v.cfg.HTTPClient
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = &throttledGet{next: next, min: minRefetch, last: map[string]fetched{}}
	v.cfg.HTTPClient = &hc
	for _, r := range o.Roles {
		if r.Name == "" {
			return nil, errors.New("oauth: a role needs a name")
		}
		if _, dup := v.roles[r.Name]; dup {
			return nil, fmt.Errorf("oauth: role %s: duplicate name", r.Name)
		}
		var rules [NumKinds][]rule
		for k := range NumKinds {
			for _, pat := range r.patterns(k) {
				if err := CheckPattern(k, pat); err != nil {
					return nil, fmt.Errorf("role %s: %s: %w", r.Name, k, err)
				}
				rules[k] = append(rules[k], newRule(k, pat, "role:"+r.Name+"/"))
			}
		}
		v.roles[r.Name] = &rules
	}
	for i, b := range o.Bindings {
		if _, ok := v.roles[b.Role]; !ok {
			return nil, fmt.Errorf("oauth: bindings[%d]: no role %q", i, b.Role)
		}
	}
	return v, nil
}

// discovery is one run of OIDC discovery; done is closed when it ends.
type discovery struct {
	done     chan struct{}
	verifier *oidc.IDTokenVerifier
	err      error
}

// discoveryTimeout bounds one discovery of the issuer.
const discoveryTimeout = 10 * time.Second

// getVerifier discovers the provider once; a failure is retried by a
// request at most every discoveryRetry. Discovery runs on its own, not
// under the lock nor on the asking request's context: a slow issuer stalls
// only the requests that need it, each up to its own deadline, and a
// client that gives up cannot fail discovery for everyone else.
func (v *oauthValidator) getVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	if v.verifier != nil {
		v.mu.Unlock()
		return v.verifier, nil
	}
	if v.lastErr != nil && time.Since(v.lastTry) < discoveryRetry {
		err := v.lastErr
		v.mu.Unlock()
		return nil, err
	}
	d := v.pending
	if d == nil {
		d = &discovery{done: make(chan struct{})}
		v.pending = d
		v.lastTry = time.Now()
		go v.discover(d)
	}
	v.mu.Unlock()
	select {
	case <-d.done:
		return d.verifier, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the discovery of %s: %w", ErrProviderUnavailable, v.cfg.Issuer, ctx.Err())
	}
}

// discover runs d and publishes its outcome.
func (v *oauthValidator) discover(d *discovery) {
	defer close(d.done)
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.Background(), v.cfg.HTTPClient), discoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, v.cfg.Issuer)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pending = nil
	if err != nil {
		d.err = fmt.Errorf("%w: discovering %s: %v", ErrProviderUnavailable, v.cfg.Issuer, err)
		v.lastErr, v.lastTry = d.err, time.Now()
		return
	}
	// The key set outlives this request: it refetches the JWKS on an
	// unknown key ID with its own (background) context.
	d.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), v.cfg.HTTPClient), &oidc.Config{
		ClientID:             v.cfg.Resource,
		SupportedSigningAlgs: v.cfg.Algorithms,
		SkipExpiryCheck:      true, // checked in verify, with the configured skew
	})
	v.verifier, v.lastErr = d.verifier, nil
}

// looksLikeJWT reports whether a bearer token has the compact JWS shape.
func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// verify checks a JWT access token and returns its principal, from the
// cache when this token was verified before and is still within exp/nbf.
func (v *oauthValidator) verify(ctx context.Context, raw string, now time.Time) (*Principal, error) {
	key := hashString(raw)
	v.cacheMu.RLock()
	c, ok := v.cache[key]
	v.cacheMu.RUnlock()
	if ok && !now.Before(c.notBefore) && !now.After(c.notAfter) {
		return c.p, nil
	}
	e, err := v.verifyUncached(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	v.cacheMu.Lock()
	if v.cache == nil {
		v.cache = make(map[[32]byte]cached)
	}
	if len(v.cache) >= maxCached {
		for k, e := range v.cache {
			if now.After(e.notAfter) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= maxCached {
			clear(v.cache)
		}
	}
	v.cache[key] = *e
	v.cacheMu.Unlock()
	return e.p, nil
}

// verifyUncached is the full check: signature, iss, aud, exp, nbf, scopes.
func (v *oauthValidator) verifyUncached(ctx context.Context, raw string, now time.Time) (*cached, error) {
	ver, err := v.getVerifier(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		if strings.Contains(err.Error(), "fetching keys") {
			return nil, fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnknownToken, err)
	}
	var c map[string]json.RawMessage
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrUnknownToken, err)
	}
	if tok.Expiry.IsZero() {
		return nil, fmt.Errorf("%w: no exp claim", ErrUnknownToken)
	}
	if now.After(tok.Expiry.Add(v.skew)) {
		return nil, fmt.Errorf("%w: token expired at %s", ErrUnknownToken, tok.Expiry.UTC().Format(time.RFC3339))
	}
	var notBefore time.Time
	if nb, ok := c["nbf"]; ok {
		var sec float64
		if json.Unmarshal(nb, &sec) != nil {
			return nil, fmt.Errorf("%w: malformed nbf", ErrUnknownToken)
		}
		notBefore = time.Unix(int64(sec), 0).Add(-v.skew)
		if now.Before(notBefore) {
			return nil, fmt.Errorf("%w: token not valid yet", ErrUnknownToken)
		}
	}
	name := claimString(c[v.cfg.PrincipalClaim])
	if name == "" {
		return nil, fmt.Errorf("%w: no %s claim", ErrUnknownToken, v.cfg.PrincipalClaim)
	}
	scopes := claimList(c["scope"])
	scopes = append(scopes, claimList(c["scp"])...)
	for _, s := range v.cfg.RequiredScopes {
		if !slices.Contains(scopes, s) {
			return nil, &InsufficientScopeError{Scope: strings.Join(v.cfg.RequiredScopes, " ")}
		}
	}
	groups := claimList(c[v.cfg.GroupsClaim])
	p := &Principal{Name: name, TokenName: "oauth", jwt: true, idPrefix: requestIDPrefix(OAuthOwnerPrefix + name)}
	for _, b := range v.cfg.Bindings {
		if slices.Contains(p.Roles, b.Role) {
			continue
		}
		if slices.Contains(b.Subjects, name) || anyIn(b.Groups, groups) || anyIn(b.Scopes, scopes) {
			p.Roles = append(p.Roles, b.Role)
		}
	}
	// Rules in role order (the order of the bindings that gave them);
	// no role: every kind denies by default.
	for _, r := range p.Roles {
		rs := v.roles[r]
		for k := range NumKinds {
			p.rules[k] = append(p.rules[k], rs[k]...)
		}
	}
	return &cached{p: p, notBefore: notBefore, notAfter: tok.Expiry.Add(v.skew)}, nil
}

func anyIn(want, have []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// claimString reads a string claim.
func claimString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// claimList reads a claim that is a space-separated string (scope, RFC
// 8693) or an array of strings (scp, groups).
func claimList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.Fields(s)
	}
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return l
	}
	return nil
}
