package redact

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Key names are matched by their words, not their spelling: "db_password",
// "passwordHash", "X-Api-Key", "clientSecret" and "APIKey" are secrets
// because they contain a secret word. A key is split into words at every
// character that is not an ASCII letter or digit and at camelCase
// boundaries ("passwordHash" → password, hash; "APIKey" → api, key), and
// lower-cased. A bare key rule (itself split the same way) matches a key
// when
//
//   - its words occur in the key's words, consecutively ("api_key" matches
//     "x_api_key", "apiKey", "X-API-KEY"); or
//   - the rule, written without separators, is at least 6 letters long and
//     occurs in the key written without separators ("password" matches
//     "dbpassword", "apikey" matches "xapikey"); or
//   - a one-word rule ends one of the key's words ("token" matches
//     "accesstoken", "csrftoken").
//
// False positives are kept down by two exceptions, which a rule naming the
// word itself overrides:
//
//   - a key whose last word describes the secret rather than holds it
//     (metaWords: "token_count", "passwordPolicy", "secret_name",
//     "api_key_env", "tokenUrl") is not redacted;
//   - protocol fields that hold no secret (notSecretKeys: MCP's
//     progressToken) are not redacted.
//
// "tokens" (maxTokens, total_tokens: LLM usage counts) does not contain the
// word "token".

// metaWords are last words of a key that say it describes a secret (its
// count, type, policy, name, location) rather than holding it.
var metaWords = map[string]bool{
	"count": true, "counts": true, "type": true, "types": true, "limit": true, "limits": true,
	"length": true, "len": true, "size": true, "usage": true, "expires": true, "expiry": true,
	"expiration": true, "ttl": true, "at": true, "policy": true, "hint": true, "required": true,
	"enabled": true, "name": true, "names": true, "env": true, "file": true, "path": true,
	"url": true, "uri": true, "endpoint": true, "header": true, "format": true, "status": true,
}

// notSecretKeys are whole keys (lower-cased, separators removed) that
// contain a secret word but never hold a secret.
var notSecretKeys = map[string]bool{
	"progresstoken": true, // MCP progress notifications' correlation id
}

// wordRule is a bare key rule split into words.
type wordRule struct {
	name   string
	words  []string
	joined string
}

// keyMatcher decides whether an object key (or log attribute, header or
// form field name) is a secret by the rules above, caching its answers:
// payloads repeat the same few keys.
type keyMatcher struct {
	exact map[string]string // lower-cased bare rule → rule name
	rules []wordRule        // longest joined form first
	inKey func(string) bool // whether a key itself holds a secret
	// placeholder reports a key that is a placeholder already (a key
	// redacted before): no rule applies to it or its value.
	placeholder func(string) bool
	cache       sync.Map     // key → keyVerdict
	n           atomic.Int32 // entries in cache
}

type keyVerdict struct {
	rule string
	ok   bool // the key's value is a secret (by rule)
	// inKey: the key itself holds a secret (a map keyed by tokens).
	inKey bool
}

// maxCachedKeys bounds the cache: keys come from clients.
const maxCachedKeys = 8192

// maxKeyLen is the longest key the word rules look at; a longer key is
// checked by its first maxKeyLen bytes.
const maxKeyLen = 256

func newKeyMatcher(bare []string, inKey, placeholder func(string) bool) *keyMatcher {
	m := &keyMatcher{exact: map[string]string{}, inKey: inKey, placeholder: placeholder}
	for _, name := range bare {
		m.exact[name] = name
		words := splitWords(name, nil)
		if len(words) == 0 {
			continue
		}
		m.rules = append(m.rules, wordRule{name: name, words: words, joined: strings.Join(words, "")})
	}
	// Prefer the most specific rule when several match: "x-api-key" over
	// "api_key" for the key "X-Api-Key".
	slices.SortStableFunc(m.rules, func(a, b wordRule) int { return len(b.joined) - len(a.joined) })
	return m
}

// match reports the rule that makes key's value a secret.
func (m *keyMatcher) match(key string) (string, bool) {
	v := m.lookup(key)
	return v.rule, v.ok
}

// lookup returns what is known about key.
func (m *keyMatcher) lookup(key string) keyVerdict {
	if v, ok := m.cache.Load(key); ok {
		return v.(keyVerdict)
	}
	var v keyVerdict
	if m.placeholder == nil || !m.placeholder(key) {
		v.rule, v.ok = m.slow(key)
		v.inKey = m.inKey != nil && m.inKey(key)
	}
	if m.n.Load() < maxCachedKeys {
		if _, loaded := m.cache.LoadOrStore(strings.Clone(key), v); !loaded {
			m.n.Add(1)
		}
	}
	return v
}

func (m *keyMatcher) slow(key string) (string, bool) {
	if len(key) > maxKeyLen {
		key = key[:maxKeyLen]
	}
	if rule, ok := m.exact[strings.ToLower(key)]; ok {
		return rule, true
	}
	var buf [16]string
	words := splitWords(key, buf[:0])
	if len(words) == 0 {
		return "", false
	}
	joined := strings.Join(words, "")
	last := words[len(words)-1]
	for i := range m.rules {
		r := &m.rules[i]
		if !r.matches(words, joined) {
			continue
		}
		if r.joined != joined && (notSecretKeys[joined] || metaWords[last] && !slices.Contains(r.words, last)) {
			continue
		}
		return r.name, true
	}
	return "", false
}

func (r *wordRule) matches(words []string, joined string) bool {
	if !strings.Contains(joined, r.joined) {
		return false // every way of matching needs this
	}
	if len(r.joined) >= 6 {
		return true
	}
	if len(r.words) == 1 {
		for _, w := range words {
			if strings.HasSuffix(w, r.words[0]) {
				return true
			}
		}
		return false
	}
	for i := 0; i+len(r.words) <= len(words); i++ {
		if slices.Equal(words[i:i+len(r.words)], r.words) {
			return true
		}
	}
	return false
}

// splitWords appends the lower-cased words of s to dst (see the top of
// this file).
func splitWords(s string, dst []string) []string {
	isLower := func(c byte) bool { return c >= 'a' && c <= 'z' }
	isUpper := func(c byte) bool { return c >= 'A' && c <= 'Z' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			dst = append(dst, strings.ToLower(s[start:end]))
		}
		start = -1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isUpper(c) && !isDigit(c) {
			flush(i)
			continue
		}
		if start < 0 {
			start = i
			continue
		}
		p := s[i-1]
		switch {
		case isUpper(c) && (isLower(p) || isDigit(p)):
			flush(i) // passwordHash
			start = i
		case isUpper(c) && isUpper(p) && i+1 < len(s) && isLower(s[i+1]):
			flush(i) // APIKey
			start = i
		}
	}
	flush(len(s))
	return dst
}
