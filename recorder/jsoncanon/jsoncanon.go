// Package jsoncanon is the one canonical form of JSON in mcptrail: object
// keys sorted, no insignificant whitespace, numbers in one spelling and
// strings escaped minimally, so that equal JSON values have equal bytes.
// Replay diffs answers with it; tool pinning hashes tool definitions with
// it. It imports nothing of mcptrail.
package jsoncanon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Parse decodes JSON into a tree of map[string]any, []any, string, bool, nil
// and json.Number, the form Canonical (and replay's diff) work on. Trailing data after
// the value is an error.
func Parse(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding JSON: trailing data after value")
	}
	return v, nil
}

// Canonical returns the canonical form of a JSON document: object keys
// sorted, no insignificant whitespace, numbers in one spelling (1, 1.0 and
// 1e0 are all "1"), strings escaped minimally. Equal JSON values have equal
// canonical forms.
func Canonical(b []byte) ([]byte, error) {
	v, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return AppendCanonical(nil, v), nil
}

// AppendCanonical appends the canonical encoding of a parsed value to dst.
func AppendCanonical(dst []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, t)
	case json.Number:
		return append(dst, CanonicalNumber(t)...)
	case float64:
		return append(dst, CanonicalNumber(json.Number(strconv.FormatFloat(t, 'g', -1, 64)))...)
	case string:
		return appendString(dst, t)
	case []any:
		dst = append(dst, '[')
		for i, e := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendCanonical(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = AppendCanonical(dst, t[k])
		}
		return append(dst, '}')
	}
	// Values not produced by Parse: fall back to encoding/json.
	b, err := json.Marshal(v)
	if err != nil {
		return append(dst, "null"...)
	}
	return append(dst, b...)
}

// CanonicalNumber spells a JSON number canonically. Numbers that float64
// holds exactly (at most 15 significant digits) are formatted like
// encoding/json formats a float64; longer ones keep their literal spelling,
// minus a redundant sign on zero, so big integer ids are never rounded.
func CanonicalNumber(n json.Number) string {
	s := string(n)
	if sigDigits(s) <= 15 {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			if f == 0 {
				return "0"
			}
			b, err := json.Marshal(f)
			if err == nil {
				return string(b)
			}
		}
	}
	if s == "-0" {
		return "0"
	}
	return strings.ToLower(s)
}

// sigDigits counts the mantissa digits of a JSON number without leading zeros.
func sigDigits(s string) int {
	n, leading := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 'e' || c == 'E':
			return n
		case c >= '0' && c <= '9':
			if leading && c == '0' {
				continue
			}
			leading = false
			n++
		}
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// Equal reports whether two JSON documents are equal after canonicalisation.
// Invalid JSON is compared byte-wise.
func Equal(a, b []byte) bool {
	ca, errA := Canonical(a)
	cb, errB := Canonical(b)
	if errA != nil || errB != nil {
		return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
	}
	return bytes.Equal(ca, cb)
}

// DuplicateKeyError reports an object with the same key twice: parsers
// disagree on which one counts (encoding/json takes the last, others the
// first), so such a document has no single meaning to canonicalise.
type DuplicateKeyError struct {
	Key string
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("decoding JSON: key %q appears twice in one object", e.Key)
}

// ParseStrict is Parse that refuses a document where any object repeats a
// key (a *DuplicateKeyError).
func ParseStrict(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		var dup *DuplicateKeyError
		if errors.As(err, &dup) {
			return nil, err
		}
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding JSON: trailing data after value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				if _, dup := m[k]; dup {
					return nil, &DuplicateKeyError{Key: k}
				}
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			_, err := dec.Token() // '}'
			return m, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token() // ']'
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil // string, json.Number, bool, nil
	}
}

// UnionKeys returns the keys of a and b, sorted, each once: the order in
// which two objects are compared member by member.
func UnionKeys(a, b map[string]any) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
