package redact

import (
	"strings"
)

// Free text (a tool's text result, an error message, a log line, a URI, a
// tool name) is searched for secrets in three ways:
//
//   - JSON embedded after a prefix: `Echo: {"password":"…"}`, `failed:
//     {"error":…,"api_key":…}`; each JSON object found in the text is
//     redacted as JSON is, key rules included;
//   - key/value pairs whose key is a secret by the key rules (see keys.go):
//     form and query style `password=…&token=…`, header style
//     `Authorization: Bearer …`, `X-Api-Key: …`, quoted `"apiKey": "…"`
//     or `'secret': '…'` in text that is not valid JSON (a truncated
//     body, a Python repr), `secret => …`, XML `<password>…</password>`,
//     command-line flags `--password …`;
//   - the patterns of Config.Patterns.
//
// Values are cut at white space, & , ; quotes and closing brackets, or at
// the closing quote of a quoted value; a value that opens a bracket is
// taken whole. Limits: a secret announced in prose ("my password is
// hunter2"), a key written in another encoding (percent-encoded, HTML
// entities, base64) and a secret with neither a telling key nor a known
// format are not found.

// text redacts s, a string value found under the key path (nil outside
// JSON); depth is the JSON depth of s.
func (r *Redactor) text(s string, path []string, depth int) (string, int) {
	if s == "" {
		return s, 0
	}
	if looksLikeJSON(s) {
		if b := []byte(s); validJSON(b) {
			return r.walkText(s, b, path, depth)
		}
	}
	if strings.IndexByte(s, '{') < 0 {
		return r.matchPatterns(s)
	}
	return r.textWithJSON(s, path, depth)
}

// walkText redacts s, a whole JSON document held in a string, b its bytes.
func (r *Redactor) walkText(s string, b []byte, path []string, depth int) (string, int) {
	w := walker{r: r, in: b, out: make([]byte, 0, len(b)+len(b)/8), path: path[:len(path):len(path)]}
	w.value(depth+1, false)
	if w.count == 0 {
		return s, 0
	}
	return string(w.out), w.count
}

// maxJSONCandidates bounds the '{' positions tried as the start of an
// embedded JSON object that turn out not to be one, so that text full of
// braces costs a bounded number of scans.
const maxJSONCandidates = 8

// textWithJSON redacts each JSON object embedded in s as JSON, and the
// text around them with the patterns.
func (r *Redactor) textWithJSON(s string, path []string, depth int) (string, int) {
	type piece struct {
		start, end int
		red        string
	}
	var reps []piece
	count, last, misses := 0, 0, 0
	for i := 0; i < len(s) && misses < maxJSONCandidates; {
		j := strings.IndexByte(s[i:], '{')
		if j < 0 {
			break
		}
		start := i + j
		end := bracketEnd(s, start)
		if end < 0 || s[end-1] != '}' || !validJSON([]byte(s[start:end])) {
			misses++
			i = start + 1
			continue
		}
		if gap, n := r.matchPatterns(s[last:start]); n > 0 {
			reps = append(reps, piece{last, start, gap})
			count += n
		}
		if red, n := r.walkText(s[start:end], []byte(s[start:end]), path, depth); n > 0 {
			reps = append(reps, piece{start, end, red})
			count += n
		}
		last, i = end, end
	}
	if tail, n := r.matchPatterns(s[last:]); n > 0 {
		reps = append(reps, piece{last, len(s), tail})
		count += n
	}
	if count == 0 {
		return s, 0
	}
	var b strings.Builder
	b.Grow(len(s) + 40*count)
	at := 0
	for _, p := range reps {
		b.WriteString(s[at:p.start])
		b.WriteString(p.red)
		at = p.end
	}
	b.WriteString(s[at:])
	return b.String(), count
}

// findKV appends the values of secret key/value pairs in s to spans.
func (r *Redactor) findKV(s string, spans []span) []span {
	for i := 0; i < len(s); {
		j := strings.IndexAny(s[i:], "=:>")
		if j < 0 {
			break
		}
		sep := i + j
		i = sep + 1
		var rule string
		var ok bool
		var st, en int
		if s[sep] == '>' {
			rule, ok, st, en = r.xmlElement(s, sep)
		} else if rule, ok = r.kvKey(s, sep); ok {
			st, en = kvValue(s, sep)
		}
		if !ok {
			continue
		}
		if en <= st {
			continue
		}
		switch strings.ToLower(s[st:en]) {
		case "null", "true", "false":
			continue
		}
		spans = append(spans, span{st, en, rule})
		i = en
	}
	return spans
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// kvKey finds the key before the separator at s[sep] and reports the key
// rule that makes it a secret.
func (r *Redactor) kvKey(s string, sep int) (string, bool) {
	k := sep
	for n := 0; k > 0 && n < 3 && (s[k-1] == ' ' || s[k-1] == '\t'); n++ {
		k--
	}
	if k > 0 && (s[k-1] == '"' || s[k-1] == '\'') {
		k--
		if k > 0 && s[k-1] == '\\' {
			k--
		}
	}
	end := k
	for k > 0 && end-k < maxKeyLen && isKeyChar(s[k-1]) {
		k--
	}
	if k == end {
		return "", false
	}
	return r.keys.match(s[k:end])
}

// xmlElement finds <key>value</key> for a secret key, the '>' of its
// opening tag at s[sep].
func (r *Redactor) xmlElement(s string, sep int) (rule string, ok bool, st, en int) {
	k := sep
	for k > 0 && sep-k < maxKeyLen && (isKeyChar(s[k-1]) || s[k-1] == ':') {
		k--
	}
	if k == sep || k == 0 || s[k-1] != '<' {
		return "", false, 0, 0
	}
	if rule, ok = r.keys.match(s[k:sep]); !ok {
		return "", false, 0, 0
	}
	st = sep + 1
	en = strings.IndexByte(s[st:], '<')
	if en < 0 {
		return rule, true, st, len(s)
	}
	return rule, true, st, st + en
}

// findFlags appends the values of command-line flags named after a
// secret, --password value (--password=value is a key/value pair).
func (r *Redactor) findFlags(s string, spans []span) []span {
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "--")
		if j < 0 {
			break
		}
		k := i + j + 2
		e := k
		for e < len(s) && e-k < maxKeyLen && isKeyChar(s[e]) {
			e++
		}
		i = max(e, k)
		if e == k || e+1 >= len(s) || s[e] != ' ' {
			continue
		}
		rule, ok := r.keys.match(s[k:e])
		if !ok {
			continue
		}
		if en := valueEnd(s, e+1); en > e+1 && s[e+1] != '-' {
			spans = append(spans, span{e + 1, en, rule})
			i = en
		}
	}
	return spans
}

// authSchemes are the words that start an Authorization value: the
// credential is the word after them.
var authSchemes = []string{"bearer", "basic", "token", "digest", "negotiate", "apikey", "bot", "dpop", "aws4-hmac-sha256"}

// kvValue returns the span of the value after the separator at s[sep].
func kvValue(s string, sep int) (int, int) {
	v := sep + 1
	if v < len(s) && (s[sep] == '=' && s[v] == '>' || s[sep] == ':' && s[v] == '=') {
		v++ // => and :=
	} else if v < len(s) && (s[sep] == '=' && s[v] == '=' || s[sep] == ':' && s[v] == '/') {
		return 0, 0 // a comparison, or a URI scheme
	}
	for n := 0; v < len(s) && n < 3 && (s[v] == ' ' || s[v] == '\t'); n++ {
		v++
	}
	esc := false
	if v+1 < len(s) && s[v] == '\\' && (s[v+1] == '"' || s[v+1] == '\'') {
		esc = true
		v++
	}
	if v < len(s) && (s[v] == '"' || s[v] == '\'') {
		q, st := s[v], v+1
		for e := st; e < len(s); e++ {
			switch {
			case s[e] == '\n':
				return st, e
			case esc && s[e] == '\\' && e+1 < len(s) && s[e+1] == q:
				return st, e
			case !esc && s[e] == '\\':
				e++
			case !esc && s[e] == q:
				return st, e
			}
		}
		return st, len(s)
	}
	if v < len(s) && (s[v] == '{' || s[v] == '[') {
		if e := bracketEnd(s, v); e > 0 {
			return v, e // a structured value: all of it
		}
		return v, len(s)
	}
	st := v
	en := valueEnd(s, st)
	for _, scheme := range authSchemes {
		if en-st == len(scheme) && strings.EqualFold(s[st:en], scheme) && en+1 < len(s) && s[en] == ' ' {
			if e2 := valueEnd(s, en+1); e2 > en+1 {
				return en + 1, e2
			}
		}
	}
	return st, en
}

// bracketEnd returns the index after the bracket closing the one at
// s[start], skipping JSON strings, or -1 when it is not closed.
func bracketEnd(s string, start int) int {
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// valueEnd returns where an unquoted value starting at s[st] ends.
func valueEnd(s string, st int) int {
	for e := st; e < len(s); e++ {
		switch s[e] {
		case ' ', '\t', '\r', '\n', '&', ',', ';', '"', '\'', ')', ']', '}', '<', '>', '\\':
			return e
		}
	}
	return len(s)
}
