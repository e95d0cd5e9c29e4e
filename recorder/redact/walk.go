package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"unsafe"
)

// walker copies a valid JSON document from in to out, redacting as it goes.
// Bytes that need no change are copied verbatim, so whitespace, number
// spelling and key order survive.
type walker struct {
	r     *Redactor
	in    []byte
	pos   int
	out   []byte
	count int
	path  []string // keys from the root to the current value, as written
	memo  *Memo    // remembers top-level members' redaction; may be nil
	// member counts the top-level members walked (memo.ends indexes them).
	member int
}

func (w *walker) ws() {
	start := w.pos
	for w.pos < len(w.in) {
		switch w.in[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
			continue
		}
		break
	}
	w.out = append(w.out, w.in[start:w.pos]...)
}

// value processes the value at pos. verbatim copies it without looking.
func (w *walker) value(depth int, verbatim bool) {
	w.ws()
	if w.pos >= len(w.in) {
		return
	}
	if verbatim {
		end := skipValue(w.in, w.pos)
		w.out = append(w.out, w.in[w.pos:end]...)
		w.pos = end
		w.ws()
		return
	}
	switch w.in[w.pos] {
	case '{':
		w.object(depth)
	case '[':
		w.out = append(w.out, '[')
		w.pos++
		w.ws()
		if w.in[w.pos] == ']' {
			w.out = append(w.out, ']')
			w.pos++
			break
		}
		for {
			w.value(depth+1, false)
			c := w.in[w.pos]
			w.out = append(w.out, c)
			w.pos++
			if c == ']' {
				break
			}
		}
	case '"':
		end := skipString(w.in, w.pos)
		raw := w.in[w.pos:end]
		w.pos = end
		red, n := w.r.text(unquote(raw), w.path, depth)
		if n == 0 {
			w.out = append(w.out, raw...)
		} else {
			w.count += n
			w.out = appendJSONString(w.out, red)
		}
	default: // number, true, false, null
		end := skipValue(w.in, w.pos)
		w.out = append(w.out, w.in[w.pos:end]...)
		w.pos = end
	}
	w.ws()
}

func (w *walker) object(depth int) {
	w.out = append(w.out, '{')
	w.pos++
	w.ws()
	if w.in[w.pos] == '}' {
		w.out = append(w.out, '}')
		w.pos++
		return
	}
	for {
		w.ws()
		end := skipString(w.in, w.pos)
		rawKey := w.in[w.pos:end]
		key := unquote(rawKey)
		v := w.r.keys.lookup(key)
		if v.inKey {
			// A key that is itself a secret (a map keyed by tokens).
			red, n := w.r.matchPatterns(key)
			w.out = appendJSONString(w.out, red)
			w.count += n
		} else {
			w.out = append(w.out, rawKey...)
		}
		w.pos = end
		w.ws()
		w.out = append(w.out, ':') // the colon
		w.pos++
		w.path = append(w.path, key)
		// The envelope's own members are never replaced by key rules; a
		// secret pattern in them (a JSON-RPC id carrying a token) is.
		envelope := depth == 0 && (key == "jsonrpc" || key == "id" || key == "method") && string(rawKey[1:len(rawKey)-1]) == key
		rule, ok := v.rule, v.ok
		if !ok {
			rule, ok = w.r.matchPath(w.path)
		}
		switch {
		case ok && !envelope:
			w.replace(rule)
		case w.memo != nil && depth == 0 && len(w.path) == 1:
			w.memberValue(depth + 1)
		default:
			w.value(depth+1, false)
		}
		w.path = w.path[:len(w.path)-1]
		if depth == 0 {
			w.member++
		}
		c := w.in[w.pos]
		w.out = append(w.out, c)
		w.pos++
		if c == '}' {
			return
		}
	}
}

// replace swaps the whole value at pos for a placeholder string. null stays
// null, and a value that already is a placeholder is kept, so redacting
// twice is a no-op.
func (w *walker) replace(rule string) {
	w.ws()
	end := skipValue(w.in, w.pos)
	raw := w.in[w.pos:end]
	w.pos = end
	secret := raw
	if raw[0] == '"' {
		s := unquote(raw)
		if w.r.isPlaceholder(s) {
			w.out = append(w.out, raw...)
			w.ws()
			return
		}
		secret = []byte(s)
	}
	if bytes.Equal(raw, []byte("null")) {
		w.out = append(w.out, raw...)
	} else {
		w.out = appendJSONString(w.out, w.r.placeholder(rule, secret))
		w.count++
	}
	w.ws()
}

// matchKey reports the key rule matching the key path, if any: a bare
// rule by the words of the last key (keys.go), a dotted rule by the last
// keys, ignoring case.
func (r *Redactor) matchKey(path []string) (string, bool) {
	if rule, ok := r.keys.match(path[len(path)-1]); ok {
		return rule, true
	}
	return r.matchPath(path)
}

// matchPath reports the dotted key rule matching the key path, if any.
func (r *Redactor) matchPath(path []string) (string, bool) {
	for _, k := range r.paths {
		if len(k.segs) > len(path) {
			continue
		}
		tail := path[len(path)-len(k.segs):]
		ok := true
		for i, s := range k.segs {
			if s != "*" && !strings.EqualFold(s, tail[i]) {
				ok = false
				break
			}
		}
		if ok {
			return k.name, true
		}
	}
	return "", false
}

// unquote decodes a JSON string literal known to be valid. Without
// escapes it returns a view of raw, not a copy: callers use it only while
// the input is alive and unmodified (the walk), and keep copies otherwise.
func unquote(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return unsafe.String(unsafe.SliceData(inner), len(inner))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(inner)
	}
	return s
}

// skipString returns the index after the string literal starting at i.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the JSON value starting at i (valid
// JSON assumed).
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}
