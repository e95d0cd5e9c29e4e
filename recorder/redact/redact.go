// Package redact removes secrets from payloads, error texts and logs before
// anything leaves the process.
//
// A redacted value is replaced by a placeholder «redacted:<rule>:hmac:<16 hex>»
// where <rule> is the key rule or pattern that fired and the hex is a keyed
// HMAC-SHA256 of the secret: equal secrets give equal placeholders (so that
// recorded calls stay comparable and replayable) but the secret cannot be
// recovered without guessing it and holding the key. Fill puts secrets back
// into placeholders for replay.
package redact

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Redactor applies one rule set. It is safe for concurrent use.
type Redactor struct {
	keys      []keyRule
	bare      map[string]string // lower-cased bare key → rule name
	paths     []keyRule
	patterns  []compiled
	maxBytes  int
	version   string
	hmacs     sync.Pool // hash.Hash keyed with the HMAC key
	ephemeral bool
}

// New compiles cfg. hmacKey keys the placeholders' HMAC; the caller reads
// it from the environment. If it is empty a random per-process key is used,
// so placeholders are only comparable within this process, and Version
// says so.
func New(cfg Config, hmacKey []byte) (*Redactor, error) {
	cfg = cfg.withDefaults()
	keys, pats, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("configuring redaction: %w", err)
	}
	r := &Redactor{keys: keys, bare: map[string]string{}, patterns: pats, maxBytes: cfg.MaxPayloadBytes}
	for _, k := range keys {
		if k.bare {
			r.bare[k.name] = k.name
		} else {
			r.paths = append(r.paths, k)
		}
	}
	if len(hmacKey) == 0 {
		hmacKey = make([]byte, 32)
		if _, err := rand.Read(hmacKey); err != nil {
			return nil, fmt.Errorf("generating a per-process redaction key: %w", err)
		}
		r.ephemeral = true
	}
	key := append([]byte(nil), hmacKey...)
	r.hmacs.New = func() any { return hmac.New(sha256.New, key) }
	r.version = version(cfg, keys, pats, r.mac([]byte("mcptrail key id"))[:8], r.ephemeral)
	return r, nil
}

// version hashes everything that changes the output for a given input.
func version(cfg Config, keys []keyRule, pats []compiled, keyID string, ephemeral bool) string {
	h := sha256.New()
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		names = append(names, k.name)
	}
	sort.Strings(names)
	fmt.Fprintf(h, "v1\nkeys=%q\n", names)
	for _, p := range pats {
		fmt.Fprintf(h, "pattern %q %q\n", p.name, p.re.String())
	}
	fmt.Fprintf(h, "max=%d\n", cfg.MaxPayloadBytes)
	v := "r1-" + hex.EncodeToString(h.Sum(nil))[:12]
	if ephemeral {
		return v + "-ephemeral"
	}
	return v + "-k" + keyID
}

// Version identifies the rule set and key: "r1-<rules hash>-k<key id>", or
// "r1-<rules hash>-ephemeral" with a random per-process key. It is stamped
// on every recorded event.
func (r *Redactor) Version() string { return r.version }

// mac returns the 16-hex-digit keyed digest of secret.
func (r *Redactor) mac(secret []byte) string {
	h := r.hmacs.Get().(hash.Hash)
	h.Reset()
	h.Write(secret)
	var sum [sha256.Size]byte
	out := hex.EncodeToString(h.Sum(sum[:0])[:8])
	r.hmacs.Put(h)
	return out
}

// placeholder returns the token for secret found by rule.
func (r *Redactor) placeholder(rule string, secret []byte) string {
	return "«redacted:" + rule + ":hmac:" + r.mac(secret) + "»"
}

// String redacts pattern matches in s and returns how many it replaced.
// When s is itself a JSON document (an error text carrying a JSON body, a
// tool's error result) it is redacted as JSON is, key rules included.
// Existing placeholders are left alone, so redacting twice changes nothing.
func (r *Redactor) String(s string) (string, int) {
	if looksLikeJSON(s) {
		if b := []byte(s); json.Valid(b) {
			w := walker{r: r, in: b, out: make([]byte, 0, len(b)+len(b)/8)}
			w.value(0, false)
			if w.count == 0 {
				return s, 0
			}
			return string(w.out), w.count
		}
	}
	return r.matchPatterns(s)
}

// looksLikeJSON reports whether s starts, after white space, like a JSON
// object or array: the cheap test before json.Valid.
func looksLikeJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// matchPatterns redacts pattern matches in s.
func (r *Redactor) matchPatterns(s string) (string, int) {
	if len(r.patterns) == 0 || s == "" {
		return s, 0
	}
	spans := r.find(s)
	if len(spans) == 0 {
		return s, 0
	}
	var b strings.Builder
	b.Grow(len(s) + 40*len(spans))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(r.placeholder(sp.rule, []byte(s[sp.start:sp.end])))
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String(), len(spans)
}

type span struct {
	start, end int
	rule       string
}

// find returns non-overlapping pattern matches in s, in order, that do not
// touch an existing placeholder.
func (r *Redactor) find(s string) []span {
	var spans []span
	for i := range r.patterns {
		p := &r.patterns[i]
		if !p.hinted(s) {
			continue
		}
		for _, m := range p.re.FindAllStringSubmatchIndex(s, -1) {
			st, en := m[2*p.group], m[2*p.group+1]
			if st < 0 || st == en {
				continue
			}
			spans = append(spans, span{st, en, p.name})
		}
	}
	if len(spans) == 0 {
		return nil
	}
	protected := placeholderRanges(s)
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	out := spans[:0]
	end := 0
	for _, sp := range spans {
		if sp.start < end || overlaps(sp, protected) {
			continue
		}
		out = append(out, sp)
		end = sp.end
	}
	return out
}

func overlaps(sp span, ranges [][]int) bool {
	for _, r := range ranges {
		if sp.start < r[1] && r[0] < sp.end {
			return true
		}
	}
	return false
}

func (p *compiled) hinted(s string) bool {
	if len(p.hints) == 0 {
		return true
	}
	for _, h := range p.hints {
		if p.foldHn {
			if containsFold(s, h) {
				return true
			}
		} else if strings.Contains(s, h) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// ignoring ASCII case.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

// JSON redacts a JSON document: values under matching keys are replaced
// whole, and pattern matches inside string values are replaced. Structure,
// key order and formatting are kept; the top-level "jsonrpc", "id" and
// "method" members are never touched. Input that is not valid JSON is
// redacted as a plain string.
func (r *Redactor) JSON(b []byte) (out []byte, count int) {
	if !json.Valid(b) {
		s, n := r.matchPatterns(string(b))
		return []byte(s), n
	}
	w := walker{r: r, in: b, out: make([]byte, 0, len(b)+len(b)/8)}
	w.value(0, false)
	return w.out, w.count
}

// Payload redacts b with JSON, then caps it at MaxPayloadBytes. The result
// is always valid JSON: invalid input becomes a JSON string, and a capped
// payload becomes {"_mcptrail_truncated":true,"bytes":<original size>,
// "preview":"<start of the redacted text>"}. sha256hex is the digest of the
// original b, so equal payloads stay comparable after redaction.
func (r *Redactor) Payload(b []byte) (out []byte, count int, truncated bool, sha256hex string) {
	sum := sha256.Sum256(b)
	sha256hex = hex.EncodeToString(sum[:])
	valid := json.Valid(b)
	out, count = r.JSON(b)
	if !valid {
		out = appendJSONString(nil, string(out))
	}
	if r.maxBytes < 0 || len(out) <= r.maxBytes {
		return out, count, false, sha256hex
	}
	return r.truncate(out, len(b)), count, true, sha256hex
}

// truncate builds the truncation marker for a redacted payload red,
// keeping as much preview as fits in maxBytes.
func (r *Redactor) truncate(red []byte, origLen int) []byte {
	head := `{"_mcptrail_truncated":true,"bytes":` + strconv.Itoa(origLen) + `,"preview":`
	room := r.maxBytes - len(head) - 1 // closing brace
	n := min(len(red), max(room-2, 0))
	for {
		for n > 0 && !utf8.Valid(red[:n]) {
			n-- // do not cut a rune in half
		}
		out := appendJSONString([]byte(head), string(red[:n]))
		out = append(out, '}')
		if len(out) <= r.maxBytes || n == 0 {
			return out
		}
		// Escaping grew the preview; shrink by the excess and retry.
		n -= max(len(out)-r.maxBytes, 1)
		n = max(n, 0)
	}
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped appends the JSON string escaping of s, without quotes.
// Invalid UTF-8 becomes U+FFFD.
func appendEscaped(dst []byte, s string) []byte {
	const hexd = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
			}
			i++
			start = i
			continue
		}
		rn, size := utf8.DecodeRuneInString(s[i:])
		if rn == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		if rn == '\u2028' || rn == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexd[rn&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
