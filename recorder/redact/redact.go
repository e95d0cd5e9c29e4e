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
	keys      *keyMatcher     // bare key rules, matched by words (keys.go)
	paths     []keyRule       // dotted path rules
	rules     map[string]bool // every rule name, as placeholders carry it
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
	r := &Redactor{patterns: pats, maxBytes: cfg.MaxPayloadBytes}
	var bare []string
	for _, k := range keys {
		if k.bare {
			bare = append(bare, k.name)
		} else {
			r.paths = append(r.paths, k)
		}
	}
	r.keys = newKeyMatcher(bare, func(k string) bool { return len(r.find(k)) > 0 }, r.isPlaceholder)
	r.rules = map[string]bool{}
	for _, k := range keys {
		r.rules[k.name] = true
	}
	for _, p := range pats {
		r.rules[p.name] = true
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
	fmt.Fprintf(h, "v2 words\nkeys=%q\n", names)
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

// digest returns the keyed digest of a whole payload: HMAC-SHA256, hex.
// A plain hash of a payload whose only unknown is a short secret would let
// anyone holding the table guess the secret offline.
func (r *Redactor) digest(b []byte) string {
	h := r.hmacs.Get().(hash.Hash)
	h.Reset()
	h.Write(b)
	var sum [sha256.Size]byte
	out := hex.EncodeToString(h.Sum(sum[:0]))
	r.hmacs.Put(h)
	return out
}

// placeholder returns the token for secret found by rule.
func (r *Redactor) placeholder(rule string, secret []byte) string {
	return "«redacted:" + rule + ":hmac:" + r.mac(secret) + "»"
}

// String redacts free text (an error message, a log line, a URI, a tool
// name) and returns how many values it replaced: pattern matches, values
// of secret key/value pairs, and JSON embedded in the text, or the whole
// text when it is a JSON document, with key rules (see text.go). Existing
// placeholders are left alone, so redacting twice changes nothing.
func (r *Redactor) String(s string) (string, int) {
	return r.text(s, nil, -1)
}

// looksLikeJSON reports whether s starts, after white space, like a JSON
// object or array: the cheap test before validJSON.
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

// matchPatterns redacts pattern matches and secret key/value pairs in s.
func (r *Redactor) matchPatterns(s string) (string, int) {
	if s == "" {
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
	set := bytesIn(s)
	for i := range r.patterns {
		p := &r.patterns[i]
		if !p.hinted(s, &set) {
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
	// After the patterns: when both find the same value, the pattern's
	// more telling rule name wins (the sort below is stable).
	if set.has('=') || set.has(':') || set.has('>') {
		spans = r.findKV(s, spans)
	}
	if set.has('-') {
		spans = r.findFlags(s, spans)
	}
	if len(spans) == 0 {
		return nil
	}
	protected := r.placeholderRanges(s)
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

func (p *compiled) hinted(s string, set *byteSet) bool {
	if len(p.hints) == 0 {
		return true
	}
	for _, h := range p.hints {
		if !set.hasAll(h) {
			continue // a byte of the hint is missing: no need to search
		}
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

// byteSet is the set of bytes in a string, with every ASCII letter also
// counted in lower case (so that case-folded hints can be checked).
type byteSet [4]uint64

// bytesIn returns the byteSet of s. It runs on every string value of every
// recorded payload: four sets filled from every fourth byte (independent
// chains of updates), and the lower case of the letters added at the end
// in one shift, not per byte.
func bytesIn(s string) byteSet {
	var a, b, c, d byteSet
	i := 0
	for ; i+3 < len(s); i += 4 {
		w, x, y, z := s[i], s[i+1], s[i+2], s[i+3]
		a[w>>6] |= 1 << (w & 63)
		b[x>>6] |= 1 << (x & 63)
		c[y>>6] |= 1 << (y & 63)
		d[z>>6] |= 1 << (z & 63)
	}
	for ; i < len(s); i++ {
		a[s[i]>>6] |= 1 << (s[i] & 63)
	}
	for k := range a {
		a[k] |= b[k] | c[k] | d[k]
	}
	// 'A'..'Z' (65..90) are bits 1..26 of word 1, 'a'..'z' (97..122)
	// bits 33..58.
	const upper = (1<<26 - 1) << 1
	a[1] |= (a[1] & upper) << 32
	return a
}

func (set *byteSet) has(c byte) bool { return set[c>>6]&(1<<(c&63)) != 0 }

func (set *byteSet) hasAll(h string) bool {
	for i := 0; i < len(h); i++ {
		if !set.has(h[i]) {
			return false
		}
	}
	return true
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
	return r.json(b, validJSON(b), nil)
}

// json is JSON for b whose validity is known, with the members of its
// top-level object remembered in memo (which may be nil).
func (r *Redactor) json(b []byte, valid bool, memo *Memo) (out []byte, count int) {
	if !valid {
		s, n := r.text(string(b), nil, -1)
		return []byte(s), n
	}
	w := walker{r: r, in: b, out: make([]byte, 0, len(b)+len(b)/8), memo: memo}
	w.value(0, false)
	return w.out, w.count
}

// Payload redacts b with JSON, then caps it at MaxPayloadBytes. The result
// is always valid JSON: invalid input becomes a JSON string, and a capped
// payload becomes {"_mcptrail_truncated":true,"bytes":<original size>,
// "preview":"<start of the redacted text>"}. sha256hex is the keyed digest
// (HMAC-SHA256 with the redaction key, hex) of the original b, so equal
// payloads stay comparable after redaction while a short secret in an
// otherwise known payload cannot be guessed from it without the key.
func (r *Redactor) Payload(b []byte) (out []byte, count int, truncated bool, sha256hex string) {
	return r.PayloadMemo(b, nil)
}

// PayloadMemo is Payload, reusing from memo the redaction of members of
// b's top-level object met in earlier payloads and remembering the others
// (see Memo). Its result is Payload's. A nil memo remembers nothing.
// A memo serves one Redactor at a time (it is emptied for another).
func (r *Redactor) PayloadMemo(b []byte, memo *Memo) (out []byte, count int, truncated bool, sha256hex string) {
	sha256hex = r.digest(b)
	var valid bool
	if memo != nil {
		memo.use(r)
		memo.ends, valid = validMembers(b, memo.ends)
	} else {
		valid = validJSON(b)
	}
	out, count = r.json(b, valid, memo)
	if memo != nil {
		memo.done()
	}
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
