package diff

import (
	"fmt"
	"path"
	"strings"
)

// EscapeToken escapes one reference token of an RFC 6901 JSON Pointer.
func EscapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// SplitPointer splits an RFC 6901 JSON Pointer into unescaped tokens. The
// empty pointer (the whole document) has no tokens.
func SplitPointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q must start with /", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// IgnoreRule hides differences below a JSON Pointer pattern. Pattern tokens
// are literal except "*", which matches any one token, and "**", which matches
// any number of tokens (including none). A rule matches a path when it matches
// the path or one of its ancestors, so "/content/*/text" hides
// "/content/0/text" and everything inside it.
type IgnoreRule struct {
	// Server limits the rule to one backend namespace; empty or "*" means all.
	Server string `json:"server,omitempty" yaml:"server,omitempty"`
	// Target limits the rule to a tool, prompt or resource as the client named
	// it (e.g. "everything.echo"); a path.Match glob, empty means all.
	Target string `json:"target,omitempty" yaml:"target,omitempty"`
	// Path is the JSON Pointer pattern, e.g. "/content/*/text" or "/**/timestamp".
	Path string `json:"path" yaml:"path"`

	toks []string
}

// ParseIgnoreRule parses the command-line form of a rule:
// "[server:][target:]/pointer/pattern" — e.g. "/_meta", "everything.echo:/content/*/text"
// or "everything:*:/structuredContent/ts".
func ParseIgnoreRule(s string) (IgnoreRule, error) {
	i := strings.Index(s, "/")
	if i < 0 {
		return IgnoreRule{}, fmt.Errorf("ignore rule %q: no JSON pointer (must contain /)", s)
	}
	prefix, ptr := s[:i], s[i:]
	var r IgnoreRule
	if prefix != "" {
		if !strings.HasSuffix(prefix, ":") {
			return IgnoreRule{}, fmt.Errorf("ignore rule %q: expected [server:][target:]/pointer", s)
		}
		parts := strings.Split(strings.TrimSuffix(prefix, ":"), ":")
		switch len(parts) {
		case 1:
			r.Target = parts[0]
		case 2:
			r.Server, r.Target = parts[0], parts[1]
		default:
			return IgnoreRule{}, fmt.Errorf("ignore rule %q: too many ':' before the pointer", s)
		}
	}
	r.Path = ptr
	if err := r.compile(); err != nil {
		return IgnoreRule{}, err
	}
	return r, nil
}

func (r *IgnoreRule) compile() error {
	toks, err := SplitPointer(r.Path)
	if err != nil {
		return fmt.Errorf("ignore rule: %w", err)
	}
	if _, err := path.Match(r.Target, ""); err != nil {
		return fmt.Errorf("ignore rule target %q: %w", r.Target, err)
	}
	r.toks = toks
	return nil
}

// Applies reports whether the rule concerns this server and target.
func (r *IgnoreRule) Applies(server, target string) bool {
	if r.Server != "" && r.Server != "*" && r.Server != server {
		return false
	}
	if r.Target == "" || r.Target == "*" {
		return true
	}
	ok, _ := path.Match(r.Target, target)
	return ok
}

// MatchPath reports whether the pointer tokens lie at or below the pattern.
func (r *IgnoreRule) MatchPath(toks []string) bool {
	if r.toks == nil && r.Path != "" {
		if r.compile() != nil {
			return false
		}
	}
	return matchPrefix(r.toks, toks)
}

func matchPrefix(pat, toks []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(toks); i++ {
				if matchPrefix(pat[1:], toks[i:]) {
					return true
				}
			}
			return false
		}
		if len(toks) == 0 || (pat[0] != "*" && pat[0] != toks[0]) {
			return false
		}
		pat, toks = pat[1:], toks[1:]
	}
	return true
}

// IgnoreRules is a set of rules; a path is ignored when any rule matches.
type IgnoreRules []IgnoreRule

// ParseIgnoreRules parses several rules in ParseIgnoreRule form.
func ParseIgnoreRules(ss []string) (IgnoreRules, error) {
	rs := make(IgnoreRules, 0, len(ss))
	for _, s := range ss {
		r, err := ParseIgnoreRule(s)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// For returns the rules that apply to one server and target, compiled.
func (rs IgnoreRules) For(server, target string) IgnoreRules {
	var out IgnoreRules
	for _, r := range rs {
		if r.Applies(server, target) {
			if r.toks == nil && r.compile() != nil {
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

// Ignored reports whether a path (as tokens) is hidden by any rule,
// regardless of server and target (filter with For first).
func (rs IgnoreRules) Ignored(toks []string) bool {
	for i := range rs {
		if rs[i].MatchPath(toks) {
			return true
		}
	}
	return false
}
