// Package auth authenticates MCP clients by bearer token and authorizes
// their tool calls against per-token allowlists.
//
// Tokens are configured by their sha256 only; a presented token is hashed
// and compared in constant time against every configured hash, so neither
// the config nor the timing of a failed attempt reveals a token. With no
// tokens configured authentication is off: every caller is the principal
// "anonymous" and may call every tool.
//
// An Authenticator is immutable after New and safe for concurrent use; the
// hot path (Authenticate then Allow) does not allocate.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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

// Results of a Decision.
const (
	ResultAllowed = "allowed"
	ResultDenied  = "denied"
	ResultNone    = "none" // authentication is off; nothing was decided
)

// Token is one accepted token, as configured.
type Token struct {
	Name      string   // identifies the token in audit records; unique
	SHA256    string   // hex sha256 of the bearer token
	Principal string   // who holds it; default Name
	Tools     []string // allowed tool patterns: "*", "crm.*", "files.read"
}

// Principal is an authenticated caller and what it may call.
type Principal struct {
	Name      string // the principal ("anonymous" when authentication is off)
	TokenName string // the token used ("" when authentication is off)

	all   bool     // anonymous, or holds a bare "*": every tool
	rules []string // patterns, in configured order
}

// Decision is the outcome of authorizing one call, in the shape the audit
// trail records.
type Decision struct {
	Principal string // principal name ("" when the caller was not authenticated)
	Result    string // ResultAllowed, ResultDenied or ResultNone
	Rule      string // the pattern that allowed the call ("" otherwise)
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
}

// New validates the tokens (hex hashes, unique names and hashes, patterns)
// and builds an Authenticator.
func New(tokens []Token) (*Authenticator, error) {
	a := &Authenticator{}
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
		for _, pat := range t.Tools {
			if err := CheckPattern(pat); err != nil {
				return nil, fmt.Errorf("token %s: %w", t.Name, err)
			}
			p.rules = append(p.rules, pat)
			if pat == "*" {
				p.all = true
			}
		}
		e.principal = p
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// CheckPattern validates a tool pattern: "*", a prefix ending in "*", or an
// exact name; "*" may appear only at the end.
func CheckPattern(p string) error {
	if p == "" {
		return errors.New("empty tool pattern")
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return fmt.Errorf("tool pattern %q: \"*\" is allowed only at the end", p)
	}
	if strings.ContainsFunc(p, unicode.IsSpace) {
		return fmt.Errorf("tool pattern %q contains spaces", p)
	}
	return nil
}

// Enabled reports whether any token is configured. When false, every call
// is allowed as the principal "anonymous".
func (a *Authenticator) Enabled() bool { return a != nil && len(a.entries) > 0 }

// anonymous is shared by every unauthenticated call; its fields are not
// meant to be modified.
var anonymous = &Principal{Name: Anonymous, all: true}

// Authenticate resolves an Authorization header value ("Bearer <token>") to
// a principal. When authentication is off it returns the anonymous
// principal whatever the header. Errors are ErrMissingToken or
// ErrUnknownToken, possibly wrapped with detail; they never contain the
// token.
func (a *Authenticator) Authenticate(authorizationHeader string) (*Principal, error) {
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

// Allow reports whether the principal may call the (namespaced) tool and
// which configured pattern allowed it. Patterns match in configured order:
// "*" any tool, "crm.*" any tool starting with "crm.", otherwise the exact
// name. The anonymous principal (authentication off) may call anything,
// with rule "". A nil principal may call nothing.
func (p *Principal) Allow(tool string) (ok bool, rule string) {
	if p == nil {
		return false, ""
	}
	if p.all && p.TokenName == "" {
		return true, ""
	}
	for _, r := range p.rules {
		if prefix, wild := strings.CutSuffix(r, "*"); wild {
			if strings.HasPrefix(tool, prefix) {
				return true, r
			}
		} else if r == tool {
			return true, r
		}
	}
	return false, ""
}

// Patterns returns the principal's tool patterns, in configured order.
func (p *Principal) Patterns() []string { return append([]string(nil), p.rules...) }

// Authorize decides whether principal p may call tool, as the audit trail
// records it. With authentication off the Result is ResultNone and the call
// is allowed.
func (a *Authenticator) Authorize(p *Principal, tool string) Decision {
	if !a.Enabled() {
		return Decision{Principal: Anonymous, Result: ResultNone}
	}
	if p == nil {
		return Decision{Result: ResultDenied, Reason: "not authenticated"}
	}
	if ok, rule := p.Allow(tool); ok {
		return Decision{Principal: p.Name, Result: ResultAllowed, Rule: rule}
	}
	return Decision{Principal: p.Name, Result: ResultDenied, Reason: "tool " + tool + " is not allowed for token " + p.TokenName}
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
