// Package secrets fills redaction placeholders back in before a recorded
// request is replayed against a live backend.
//
// The recorder replaces sensitive values by placeholders of the form
// «redacted:<rule>:hmac:<16 hex>». Replay needs the real values: they come
// from a --secrets file (KEY=VALUE lines, the key being either a rule name or
// a full placeholder token) and from environment variables
// MCPTRAIL_SECRET_<RULE>. A request with any placeholder left unresolved must
// not be sent; Fill reports those placeholders.
//
// The token format and the substitution itself belong to recorder/redact;
// this package decides which value each placeholder gets.
package secrets

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mcptrail/mcptrail/recorder/redact"
)

// EnvPrefix prefixes the environment variables that hold secrets by rule.
const EnvPrefix = "MCPTRAIL_SECRET_"

// Placeholder is one redaction placeholder found in a payload (see
// recorder/redact).
type Placeholder = redact.Placeholder

// FindPlaceholders returns the placeholders in b, in order.
func FindPlaceholders(b []byte) []Placeholder { return redact.FindPlaceholders(b) }

// Secrets maps placeholders to real values. The zero value resolves nothing.
type Secrets struct {
	tokens map[string]string // full token → value
	rules  map[string]string // normalized rule name → value (file)
	env    map[string]string // normalized rule name → value (environment)
}

// normRule maps a rule name to its environment form: upper case, every
// character other than A-Z and 0-9 replaced by '_'.
func normRule(rule string) string {
	b := []byte(strings.ToUpper(rule))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// EnvName is the environment variable consulted for rule.
func EnvName(rule string) string { return EnvPrefix + normRule(rule) }

// Load reads the secrets file at path (skipped when path is empty) and the
// MCPTRAIL_SECRET_* variables of environ (os.Environ() form).
func Load(path string, environ []string) (*Secrets, error) {
	s := &Secrets{}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("opening secrets file: %w", err)
		}
		defer f.Close()
		if s, err = Parse(f, path); err != nil {
			return nil, err
		}
	}
	s.AddEnv(environ)
	return s, nil
}

// Parse reads KEY=VALUE lines. Blank lines and lines starting with # are
// skipped, a leading "export " is allowed, and values may be double-quoted
// (Go escapes) or single-quoted (literal). A key is a full placeholder token
// or a rule name. name is used in error messages.
func Parse(r io.Reader, name string) (*Secrets, error) {
	s := &Secrets{tokens: map[string]string{}, rules: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	seen := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected KEY=VALUE", name, n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "" {
			return nil, fmt.Errorf("%s:%d: empty key", name, n)
		}
		v, err := unquote(val)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: value of %s: %w", name, n, key, err)
		}
		if ps := FindPlaceholders([]byte(key)); len(ps) == 1 && ps[0].Token == key {
			s.tokens[key] = v
		} else if strings.Contains(key, "redacted:") {
			return nil, fmt.Errorf("%s:%d: key %q looks like a placeholder but is not «redacted:<rule>:hmac:<16 hex>»", name, n, key)
		} else {
			key = normRule(key)
			s.rules[key] = v
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s already set on line %d", name, n, key, prev)
		}
		seen[key] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return s, nil
}

func unquote(v string) (string, error) {
	switch {
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		return strconv.Unquote(v)
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		return v[1 : len(v)-1], nil
	case strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `'`):
		return "", fmt.Errorf("unterminated quote")
	}
	return v, nil
}

// AddEnv adds the MCPTRAIL_SECRET_<RULE> variables from environ. File
// entries take precedence over the environment.
func (s *Secrets) AddEnv(environ []string) {
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) || len(k) == len(EnvPrefix) {
			continue
		}
		if s.env == nil {
			s.env = map[string]string{}
		}
		s.env[normRule(k[len(EnvPrefix):])] = v
	}
}

// Lookup returns the value for a placeholder: a value for the exact token
// first, then for its rule from the file, then from the environment.
func (s *Secrets) Lookup(p Placeholder) (string, bool) {
	if s == nil {
		return "", false
	}
	if v, ok := s.tokens[p.Token]; ok {
		return v, true
	}
	r := normRule(p.Rule)
	if v, ok := s.rules[r]; ok {
		return v, true
	}
	v, ok := s.env[r]
	return v, ok
}

// Fill returns payload with every resolvable placeholder replaced by its
// value, escaped as JSON string content (placeholders live inside JSON
// strings), and the placeholders that could not be resolved, left in place.
// The payload is not modified. A request with unresolved placeholders must
// not be sent.
func (s *Secrets) Fill(payload []byte) (filled []byte, unresolved []Placeholder) {
	ps := FindPlaceholders(payload)
	if len(ps) == 0 {
		return payload, nil
	}
	values := make(map[string]string, len(ps))
	for _, p := range ps {
		if v, ok := s.Lookup(p); ok {
			values[p.Token] = v
		}
	}
	return redact.Fill(payload, values)
}

// MinMaskBytes is the shortest secret value Mask hides: shorter values are
// too likely to occur by chance, and masking them would garble the output.
const MinMaskBytes = 4

// Mask returns b with every secret value this set can supply replaced, so
// that output derived from filled-in payloads (replay reports, stored
// results) never shows a secret. A value supplied for a full placeholder is
// replaced by that placeholder, one supplied for a rule by «secret:<RULE>».
// Values are matched both as JSON string content and as plain text. b is
// not modified; it is returned as is when nothing matched.
func (s *Secrets) Mask(b []byte) []byte {
	if s == nil || len(b) == 0 {
		return b
	}
	type sub struct{ value, with string }
	var subs []sub
	add := func(v, with string) {
		if len(v) < MinMaskBytes {
			return
		}
		subs = append(subs, sub{v, with})
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(v) == nil {
			if esc := strings.TrimSuffix(buf.String(), "\n"); len(esc) >= 2 && esc[1:len(esc)-1] != v {
				subs = append(subs, sub{esc[1 : len(esc)-1], with})
			}
		}
	}
	for tok, v := range s.tokens {
		add(v, tok)
	}
	for rule, v := range s.rules {
		add(v, "«secret:"+rule+"»")
	}
	for rule, v := range s.env {
		add(v, "«secret:"+rule+"»")
	}
	// Longest first, so that a secret containing another is hidden whole.
	slices.SortFunc(subs, func(a, b sub) int { return cmp.Or(len(b.value)-len(a.value), strings.Compare(a.value, b.value)) })
	out := b
	for _, x := range subs {
		if bytes.Contains(out, []byte(x.value)) {
			out = bytes.ReplaceAll(out, []byte(x.value), []byte(x.with))
		}
	}
	return out
}

// UnresolvedError lists placeholders without a secret.
type UnresolvedError struct {
	Placeholders []Placeholder
}

func (e *UnresolvedError) Error() string {
	var rules []string
	for _, p := range e.Placeholders {
		if !slices.Contains(rules, p.Rule) {
			rules = append(rules, p.Rule)
		}
	}
	hints := make([]string, len(rules))
	for i, r := range rules {
		hints[i] = fmt.Sprintf("%s (set %s=… in the --secrets file or %s)", r, r, EnvName(r))
	}
	return fmt.Sprintf("%d redacted value(s) have no secret; not sending the request: rules %s",
		len(e.Placeholders), strings.Join(hints, ", "))
}

// FillAll fills a request payload and returns an *UnresolvedError when any
// placeholder stays unresolved, so the caller can skip the request.
func (s *Secrets) FillAll(payload []byte) ([]byte, error) {
	out, un := s.Fill(payload)
	if len(un) > 0 {
		return nil, &UnresolvedError{Placeholders: un}
	}
	return out, nil
}
