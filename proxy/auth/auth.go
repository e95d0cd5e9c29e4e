// Package auth authenticates MCP clients by bearer token and decides what
// each token may do.
//
// Tokens are configured by their sha256 only; a presented token is hashed
// and compared in constant time against every configured hash, so neither
// the config nor the timing of a failed attempt reveals a token. With no
// tokens configured authentication is off: every caller is the principal
// "anonymous" and may do everything.
//
// A token carries one list of patterns per Kind of target: tools, prompts,
// resources, completions and (other) methods. What no pattern of the
// matching list allows is denied: a token that lists only tools gets no
// prompt, resource or completion, and no method the gateway does not know.
// Targets are named as the backend will execute them (see Kind), so a
// decision never depends on how the client spelled or routed a name.
//
// An Authenticator is immutable after New and safe for concurrent use; the
// hot path (Authenticate then Allow) does not allocate.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Errors returned by Authenticate. Callers answer both with HTTP 401.
var (
	// ErrMissingToken: no Authorization header, or not a Bearer token.
	ErrMissingToken = errors.New("missing bearer token")
	// ErrUnknownToken: a bearer token that matches no configured hash.
	ErrUnknownToken = errors.New("unknown bearer token")
)

// Anonymous is the principal name used when authentication is off.
const Anonymous = "anonymous"

// Reserved principals. Sessions, cached results, request-ID namespaces and
// tasks are owned by a principal's OwnerKey: a JWT user's is
// OAuthOwnerPrefix + its name, every caller's is Anonymous while
// authentication is off, and the gateway records its own events (reloads,
// tool changes) as Gateway. A static token with one of these principals
// would own what they own, or be recorded as the gateway.
const (
	OAuthOwnerPrefix = "oauth:"
	Gateway          = "mcptrail"
)

// CheckStaticPrincipal reports why name cannot be a static token's
// principal: it is reserved (see OAuthOwnerPrefix); nil when it can.
func CheckStaticPrincipal(name string) error {
	switch {
	case len(name) >= len(OAuthOwnerPrefix) && strings.EqualFold(name[:len(OAuthOwnerPrefix)], OAuthOwnerPrefix):
		return fmt.Errorf("principal %q: the prefix %q is reserved for OAuth (JWT) principals, whose sessions, cached results and request IDs it would own; choose another name", name, OAuthOwnerPrefix)
	case strings.EqualFold(name, Anonymous):
		return fmt.Errorf("principal %q is reserved for every caller while authentication is off, whose sessions it would own; choose another name", name)
	case strings.EqualFold(name, Gateway):
		return fmt.Errorf("principal %q is reserved for the gateway's own audit events (reloads, tool changes); choose another name", name)
	}
	return nil
}

// Results of a Decision.
const (
	ResultAllowed = "allowed"
	ResultDenied  = "denied"
	ResultNone    = "none" // authentication is off; nothing was decided
)

// Kind is what a request acts on; each has its own pattern list.
type Kind uint8

// Kinds of target, and the form of the target string Allow matches:
//
//	Tools        "<server><sep><tool>"      the server's own tool name, namespaced by the server name
//	Prompts      "<server><sep><prompt>"    likewise
//	Resources    "<server>:<uri>"           the URI as the server knows it (also resource templates)
//	Completions  "<server><sep><prompt>" for a prompt reference, "<server>:<uri>" for a resource one
//	Methods      "<method>"                 a JSON-RPC method the gateway does not know
const (
	Tools Kind = iota
	Prompts
	Resources
	Completions
	Methods
	NumKinds
)

var kindNames = [NumKinds]string{"tools", "prompts", "resources", "completions", "methods"}

// String is the config key of the kind's pattern list.
func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Token is one accepted token, as configured.
type Token struct {
	Name      string // identifies the token in audit records; unique
	SHA256    string // hex sha256 of the bearer token
	Principal string // who holds it; default Name
	// Patterns per kind: "*" (all), a prefix ending in "*" ("crm.*",
	// "memory:*", "everything:test://static/*") or an exact target.
	Tools, Prompts, Resources, Completions, Methods []string
}

// Patterns returns the token's pattern list for kind k.
func (t *Token) Patterns(k Kind) []string {
	switch k {
	case Tools:
		return t.Tools
	case Prompts:
		return t.Prompts
	case Resources:
		return t.Resources
	case Completions:
		return t.Completions
	case Methods:
		return t.Methods
	}
	return nil
}

// Principal is an authenticated caller and what it may do.
type Principal struct {
	Name      string // the principal ("anonymous" when authentication is off)
	TokenName string // the token used ("" when authentication is off; "oauth" for a JWT)
	// Roles are the roles a JWT's claims gave (auth.oauth.bindings), in
	// binding order; nil for a static token.
	Roles []string

	anonymous bool
	jwt       bool             // authenticated by a JWT access token
	rules     [NumKinds][]rule // in configured order
	idPrefix  string           // see ScopeRequestID
}

// ScopeRequestID puts a request ID the client chose into the principal's
// own namespace: "<12 hex digits of sha256(principal)>:<id>". Two principals
// can then never share a request ID, so one cannot add records to another's
// request or trace by reusing its ID; the client gets the scoped ID back.
// The anonymous principal (authentication off: nobody to tell apart) and a
// nil one keep the ID as it is.
func (p *Principal) ScopeRequestID(id string) string {
	if p == nil || p.idPrefix == "" {
		return id
	}
	return p.idPrefix + id
}

// OwnerKey identifies the principal for what it owns (sessions, streams,
// its request ID namespace): its name, put apart for a JWT ("oauth:<name>"),
// so a JWT subject that happens to equal a static token's principal name
// gets none of that token's sessions. A nil principal's key is "".
func (p *Principal) OwnerKey() string {
	if p == nil {
		return ""
	}
	if p.jwt {
		return OAuthOwnerPrefix + p.Name
	}
	return p.Name
}

// requestIDPrefix derives a principal's request ID namespace.
func requestIDPrefix(principal string) string {
	sum := sha256.Sum256([]byte("mcptrail request-id namespace\x00" + principal))
	return hex.EncodeToString(sum[:6]) + ":"
}

// rule is one pattern, precomputed for matching.
type rule struct {
	prefix string // the pattern without its trailing "*"
	wild   bool   // the pattern ended in "*"
	// pathPrefix: the pattern limits a resource URI to a prefix, so a URI
	// whose path could resolve outside it (dot segments, encoded
	// separators) does not match.
	pathPrefix bool
	name       string // as recorded: "<kind>:<pattern>", "role:<role>/<kind>:<pattern>"
	pat        string // the pattern as configured
}

// newRule precomputes pattern pat of kind k; origin prefixes its recorded name.
func newRule(k Kind, pat, origin string) rule {
	r := rule{name: origin + k.String() + ":" + pat, pat: pat}
	r.prefix, r.wild = strings.CutSuffix(pat, "*")
	if k == Resources || k == Completions {
		if _, uri, ok := strings.Cut(r.prefix, ":"); ok && uri != "" {
			r.pathPrefix = true
		}
	}
	return r
}

func (r *rule) match(target string) bool {
	if !r.wild {
		return target == r.prefix
	}
	if !strings.HasPrefix(target, r.prefix) {
		return false
	}
	return !r.pathPrefix || !escapesPrefix(target[len(r.prefix):])
}

// escapesPrefix reports whether the rest of a URI after an allowed prefix
// could name something outside it once a server resolves it: dot segments,
// backslashes, percent-encoded dots, slashes and backslashes, or control
// characters (a WHATWG URL parser, Node's, drops tabs and newlines, so
// "\t.." is ".." to the backend).
func escapesPrefix(rest string) bool {
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 0x20 || c == 0x7f {
			return true
		}
		switch rest[i] {
		case '\\':
			return true
		case '.':
			// "..", or "." as a whole segment, at the start of rest
			// (the prefix may end in "/") or after a "/".
			if (i == 0 || rest[i-1] == '/') && (i+1 == len(rest) || rest[i+1] == '/' || rest[i+1] == '.' || rest[i+1] == '?' || rest[i+1] == '#') {
				return true
			}
		case '%':
			if i+2 < len(rest) {
				switch strings.ToLower(rest[i+1 : i+3]) {
				case "2e", "2f", "5c", "25":
					return true
				}
			}
		}
	}
	return false
}

// DenyRule names the rule of a denial by default: no pattern of the kind's
// list matched.
func DenyRule(k Kind) string {
	if k < NumKinds {
		return denyRules[k]
	}
	return k.String() + ":default-deny"
}

var denyRules = func() (r [NumKinds]string) {
	for k := range NumKinds {
		r[k] = k.String() + ":default-deny"
	}
	return r
}()

// Decision is the outcome of authorizing one call, in the shape the audit
// trail records.
type Decision struct {
	Principal string // principal name ("" when the caller was not authenticated)
	Result    string // ResultAllowed, ResultDenied or ResultNone
	Rule      string // the rule that decided: "tools:crm.*", "tools:default-deny" ("" when auth is off)
	Reason    string // why it was denied, for the audit trail and the client
}

type entry struct {
	hash      [sha256.Size]byte
	principal *Principal
}

// Authenticator checks bearer tokens. The zero value and New(nil) have
// authentication off.
type Authenticator struct {
	entries []entry
	oauth   *oauthValidator
}

// New validates the tokens (hex hashes, unique names and hashes, patterns)
// and builds an Authenticator.
func New(tokens []Token) (*Authenticator, error) { return NewWithOAuth(tokens, nil) }

// NewWithOAuth is New with JWT access tokens accepted too (o may be nil).
// Static tokens keep working beside them: a bearer token that matches a
// configured hash is that token; any other that has the shape of a JWT is
// verified as one.
func NewWithOAuth(tokens []Token, o *OAuth) (*Authenticator, error) {
	a := &Authenticator{}
	if o != nil {
		v, err := newOAuthValidator(o)
		if err != nil {
			return nil, err
		}
		a.oauth = v
	}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, t := range tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("token %d: name is required", i)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("token %s: duplicate name", t.Name)
		}
		names[t.Name] = true
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("token %s: sha256 must be %d hex digits", t.Name, 2*sha256.Size)
		}
		var e entry
		copy(e.hash[:], b)
		if other, dup := hashes[e.hash]; dup {
			return nil, fmt.Errorf("token %s: same hash as token %s", t.Name, other)
		}
		hashes[e.hash] = t.Name
		p := &Principal{Name: t.Principal, TokenName: t.Name}
		if p.Name == "" {
			p.Name = t.Name
		}
		if err := CheckStaticPrincipal(p.Name); err != nil {
			return nil, fmt.Errorf("token %s: %w", t.Name, err)
		}
		p.idPrefix = requestIDPrefix(p.Name)
		for k := range NumKinds {
			for _, pat := range t.Patterns(k) {
				if err := CheckPattern(k, pat); err != nil {
					return nil, fmt.Errorf("token %s: %s: %w", t.Name, k, err)
				}
				p.rules[k] = append(p.rules[k], newRule(k, pat, ""))
			}
		}
		e.principal = p
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// CheckPattern validates a pattern of kind k: "*", a prefix ending in "*",
// or an exact target; "*" may appear only at the end. A resource pattern
// other than "*" names its server: "<server>:<uri pattern>".
func CheckPattern(k Kind, p string) error {
	what := strings.TrimSuffix(k.String(), "s")
	if p == "" {
		return fmt.Errorf("empty %s pattern", what)
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return fmt.Errorf("%s pattern %q: \"*\" is allowed only at the end", what, p)
	}
	if strings.ContainsFunc(p, unicode.IsSpace) {
		return fmt.Errorf("%s pattern %q contains spaces", what, p)
	}
	if k == Resources && p != "*" {
		if server, uri, ok := strings.Cut(p, ":"); !ok || server == "" || strings.HasPrefix(uri, "//") {
			return fmt.Errorf("resource pattern %q: want \"<server>:<uri pattern>\" (e.g. \"memory:*\", \"everything:test://static/*\") or \"*\"", p)
		}
	}
	return nil
}

// Enabled reports whether any token is configured. When false, every call
// is allowed as the principal "anonymous".
func (a *Authenticator) Enabled() bool { return a != nil && (len(a.entries) > 0 || a.oauth != nil) }

// OAuth returns the OAuth configuration in force (defaults applied), nil
// when JWTs are not accepted.
func (a *Authenticator) OAuth() *OAuth {
	if a == nil || a.oauth == nil {
		return nil
	}
	return &a.oauth.cfg
}

// anonymous is shared by every unauthenticated call; its fields are not
// meant to be modified.
var anonymous = &Principal{Name: Anonymous, anonymous: true}

// Authenticate resolves an Authorization header value ("Bearer <token>") to
// a principal. When authentication is off it returns the anonymous
// principal whatever the header. Errors are ErrMissingToken or
// ErrUnknownToken, possibly wrapped with detail; they never contain the
// token.
func (a *Authenticator) Authenticate(authorizationHeader string) (*Principal, error) {
	return a.AuthenticateContext(context.Background(), authorizationHeader)
}

// AuthenticateContext is Authenticate; ctx bounds fetching the provider's
// discovery document and keys for a JWT. With OAuth configured it may also
// return ErrProviderUnavailable (503) or an *InsufficientScopeError (403).
func (a *Authenticator) AuthenticateContext(ctx context.Context, authorizationHeader string) (*Principal, error) {
	if !a.Enabled() {
		return anonymous, nil
	}
	token, err := BearerToken(authorizationHeader)
	if err != nil {
		return nil, err
	}
	sum := hashString(token)
	// Compare against every entry so the time taken does not reveal which
	// (or whether a) token matched.
	var found *Principal
	for i := range a.entries {
		if subtle.ConstantTimeCompare(sum[:], a.entries[i].hash[:]) == 1 {
			found = a.entries[i].principal
		}
	}
	if found == nil && a.oauth != nil && looksLikeJWT(token) {
		return a.oauth.verify(ctx, token, time.Now())
	}
	if found == nil {
		return nil, ErrUnknownToken
	}
	return found, nil
}

// BearerToken extracts the token from an Authorization header value. The
// scheme is case-insensitive (RFC 9110); surrounding spaces are ignored.
func BearerToken(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", ErrMissingToken
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		if strings.EqualFold(header, "Bearer") {
			return "", ErrMissingToken
		}
		return "", errNotBearer
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsFunc(token, unicode.IsSpace) {
		return "", errMalformed
	}
	return token, nil
}

var (
	errNotBearer = fmt.Errorf("%w: authorization scheme is not Bearer", ErrMissingToken)
	errMalformed = fmt.Errorf("%w: malformed Bearer credentials", ErrMissingToken)
)

// hashString hashes without converting the string to a heap []byte.
func hashString(s string) [sha256.Size]byte {
	var buf [256]byte
	if len(s) <= len(buf) {
		n := copy(buf[:], s)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(s))
}

// HashToken returns the hex sha256 of a token, the form the config holds.
func HashToken(token string) string {
	sum := hashString(token)
	return hex.EncodeToString(sum[:])
}

// Allow reports whether the principal may act on target (in the form its
// kind documents) and the rule that decided, as recorded: "tools:crm.*"
// when a pattern allowed it, DenyRule(k) when none did. Patterns match in
// configured order. The anonymous principal (authentication off) may do
// anything, with rule "". A nil principal may do nothing.
func (p *Principal) Allow(k Kind, target string) (ok bool, rule string) {
	if p == nil {
		return false, "unauthenticated"
	}
	if p.anonymous {
		return true, ""
	}
	if k >= NumKinds {
		return false, "unknown-kind"
	}
	rules := p.rules[k]
	for i := range rules {
		if rules[i].match(target) {
			return true, rules[i].name
		}
	}
	return false, denyRules[k]
}

// MayUse reports whether some pattern of the principal could allow a tool,
// prompt, resource or completion of server (sep is the namespace
// separator). What a server sends outside any call (log messages, other
// notifications) reaches only the sessions of principals that may use it.
// The anonymous principal may use every server; a nil one none.
func (p *Principal) MayUse(server, sep string) bool {
	if p == nil {
		return false
	}
	if p.anonymous {
		return true
	}
	for k := range Methods {
		for _, r := range p.rules[k] {
			for _, ns := range [2]string{server + sep, server + ":"} {
				if strings.HasPrefix(r.prefix, ns) || (r.wild && strings.HasPrefix(ns, r.prefix)) {
					return true
				}
			}
		}
	}
	return false
}

// Patterns returns the principal's patterns of kind k, in configured order.
func (p *Principal) Patterns(k Kind) []string {
	if k >= NumKinds {
		return nil
	}
	out := make([]string, 0, len(p.rules[k]))
	for _, r := range p.rules[k] {
		out = append(out, r.pat)
	}
	return out
}

// Authorize decides whether principal p may act on target, as the audit
// trail records it. With authentication off the Result is ResultNone and
// the request is allowed.
func (a *Authenticator) Authorize(p *Principal, k Kind, target string) Decision {
	if !a.Enabled() {
		return Decision{Principal: Anonymous, Result: ResultNone}
	}
	if p == nil {
		return Decision{Result: ResultDenied, Rule: "unauthenticated", Reason: "not authenticated"}
	}
	ok, rule := p.Allow(k, target)
	if ok {
		return Decision{Principal: p.Name, Result: ResultAllowed, Rule: rule}
	}
	who := "token " + p.TokenName
	if p.jwt {
		who = "principal " + p.Name
	}
	return Decision{Principal: p.Name, Result: ResultDenied, Rule: rule,
		Reason: strings.TrimSuffix(k.String(), "s") + " " + target + " is not allowed for " + who}
}

// Denied describes a failed authentication as a Decision.
func Denied(err error) Decision {
	reason := "unauthenticated"
	if err != nil {
		reason = err.Error()
	}
	return Decision{Result: ResultDenied, Reason: reason}
}

// Allowed reports whether the decision lets the call proceed.
func (d Decision) Allowed() bool { return d.Result != ResultDenied }

// PrincipalsNamed returns the principals of the static tokens held by
// principal name, in configured order. The audit trail names principals,
// not tokens: `mcptrail policy whatif` re-evaluates a recorded request with
// the principal a candidate config would give it.
func (a *Authenticator) PrincipalsNamed(name string) []*Principal {
	if a == nil {
		return nil
	}
	var out []*Principal
	for _, e := range a.entries {
		if e.principal.Name == name {
			out = append(out, e.principal)
		}
	}
	return out
}

// PrincipalWithRoles is the principal a JWT for subject name would be
// whose bindings gave it roles: the rules of those roles as this config
// defines them (a role it does not define gives nothing). ok is false when
// OAuth is off. The claims themselves are not recorded, so what bindings
// would give is not re-evaluated: the recorded roles are taken as given.
func (a *Authenticator) PrincipalWithRoles(name string, roles []string) (p *Principal, ok bool) {
	if a == nil || a.oauth == nil {
		return nil, false
	}
	p = &Principal{Name: name, TokenName: "oauth", jwt: true, Roles: roles}
	for _, r := range roles {
		if rs := a.oauth.roles[r]; rs != nil {
			for k := range NumKinds {
				p.rules[k] = append(p.rules[k], rs[k]...)
			}
		}
	}
	return p, true
}

// AnonymousPrincipal is the principal of a request when authentication is
// off: it may do anything.
func AnonymousPrincipal() *Principal { return anonymous }
