package redact

import (
	"regexp"
)

// Placeholder is one redaction token found in a payload.
type Placeholder struct {
	Token string // the whole «redacted:<rule>:hmac:<hex>» text
	Rule  string // the key rule or pattern name that fired
	HMAC  string // 16 hex digits
}

var placeholderRE = regexp.MustCompile(`«redacted:([^:«»\s"\\]+):hmac:([0-9a-f]{16})»`)

// isPlaceholder reports whether s is one placeholder of a rule r knows.
func (r *Redactor) isPlaceholder(s string) bool {
	m := placeholderRE.FindStringSubmatchIndex(s)
	return m != nil && m[0] == 0 && m[1] == len(s) && r.rules[s[m[2]:m[3]]]
}

// placeholderRanges returns the placeholders in s that redacting again
// must leave alone. Only placeholders of rules r knows count: text shaped
// like a placeholder around a secret («redacted:<secret>:hmac:…») does
// not protect it.
func (r *Redactor) placeholderRanges(s string) [][]int {
	if !containsMarker(s) {
		return nil
	}
	var out [][]int
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		if r.rules[s[m[2]:m[3]]] {
			out = append(out, m[:2])
		}
	}
	return out
}

func containsMarker(s string) bool {
	for i := 0; i+len("«redacted:") <= len(s); i++ {
		if s[i] == "«"[0] && s[i:i+len("«redacted:")] == "«redacted:" {
			return true
		}
	}
	return false
}

// FindPlaceholders returns the placeholders in b, in order.
func FindPlaceholders(b []byte) []Placeholder {
	var out []Placeholder
	for _, m := range placeholderRE.FindAllSubmatchIndex(b, -1) {
		out = append(out, Placeholder{
			Token: string(b[m[0]:m[1]]),
			Rule:  string(b[m[2]:m[3]]),
			HMAC:  string(b[m[4]:m[5]]),
		})
	}
	return out
}

// Fill replaces placeholders in b with secrets, looked up first by the full
// token and then by rule name. Placeholders always sit inside JSON strings,
// so each value is JSON-string-escaped. A value that was not a string before
// redaction (a number under a key rule) comes back as a string. unresolved
// lists the placeholders with no secret, in order; they are left as is.
func Fill(b []byte, secrets map[string]string) (out []byte, unresolved []Placeholder) {
	matches := placeholderRE.FindAllSubmatchIndex(b, -1)
	if len(matches) == 0 {
		return b, nil
	}
	out = make([]byte, 0, len(b))
	last := 0
	for _, m := range matches {
		token := string(b[m[0]:m[1]])
		rule := string(b[m[2]:m[3]])
		v, ok := secrets[token]
		if !ok {
			v, ok = secrets[rule]
		}
		out = append(out, b[last:m[0]]...)
		if ok {
			out = appendEscaped(out, v)
		} else {
			out = append(out, token...)
			unresolved = append(unresolved, Placeholder{Token: token, Rule: rule, HMAC: string(b[m[4]:m[5]])})
		}
		last = m[1]
	}
	return append(out, b[last:]...), unresolved
}
