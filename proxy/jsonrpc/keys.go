package jsonrpc

import (
	"bytes"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Ambiguous keys.
//
// JSON parsers disagree about an object with two members of the same name:
// the gateway's Object.Get returns the first, JavaScript's JSON.parse and
// Python's json keep the last, and Go's encoding/json keeps the last and also
// matches struct fields case-insensitively ("NAME" fills Name, and so does
// "n\u0061me"). A message the gateway routes by one reading and a backend
// executes by another lets a client run a tool it was not allowed, under an
// audit row naming the allowed one. So at every level the gateway reads a
// routing field from, a key that another key equals after unescaping and
// Unicode case folding is refused, and so is a key that folds to one of the
// fields the gateway reads at that level but is spelled differently
// ("Name", "PROGRESSTOKEN"): the backend would see a field the gateway did
// not.
//
// The levels checked (see Decode): the envelope; params; params._meta;
// params.ref (completion/complete). Values below them (tool arguments) are
// relayed unread.

// Fields the gateway reads at each checked level.
var (
	envelopeKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramsKeys   = []string{"name", "uri", "ref", "_meta", "cursor", "level", "arguments", "requestId", "progressToken", "protocolVersion", "capabilities", "clientInfo"}
	metaKeys     = []string{"progressToken", "mcptrail.dev/request-id", "traceparent", "tracestate", "baggage",
		"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo", "io.modelcontextprotocol/clientCapabilities"}
	refKeys = []string{"type", "name", "uri"}
)

// AmbiguousKeyError reports an object member that parsers could read
// differently. Decode wraps it in a DecodeError with CodeInvalidRequest.
type AmbiguousKeyError struct {
	Where string // "envelope", "params", "params._meta", "params.ref"
	Key   string // the offending key, unescaped
	Other string // the key it collides with
}

func (e *AmbiguousKeyError) Error() string {
	if e.Key == e.Other {
		return fmt.Sprintf("duplicate key %q in %s", capKey(e.Key), e.Where)
	}
	return fmt.Sprintf("ambiguous key %q in %s: it matches %q case-insensitively", capKey(e.Key), e.Where, capKey(e.Other))
}

// capKey bounds a client-chosen key quoted in an error.
func capKey(k string) string {
	const max = 64
	if len(k) <= max {
		return k
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return k[:cut] + "…"
}

// smallKeys is how many keys checkKeys compares pairwise before it switches
// to a map of folded keys (quadratic work on a huge object is a DoS).
const smallKeys = 16

// checkKeys scans the top level of object b (valid JSON) and returns an
// *AmbiguousKeyError for the first member whose key folds to the same text
// as an earlier key or as one of known without being spelled exactly so.
// visit, when not nil, sees every member before the offending one. It does
// not allocate for objects of up to smallKeys keys without escapes.
func checkKeys(b []byte, where string, known []string, visit func(key, val []byte, escaped bool)) error {
	var (
		inline [smallKeys][]byte
		keys   = inline[:0]
		folded map[string]string
		bad    *AmbiguousKeyError
	)
	err := scanMembers(b, func(raw, val []byte, escaped bool) {
		if bad != nil {
			return
		}
		defer func() {
			if bad == nil && visit != nil {
				visit(raw, val, escaped)
			}
		}()
		key := raw
		if escaped {
			s, ok := unescape(raw)
			if !ok {
				bad = &AmbiguousKeyError{Where: where, Key: string(raw), Other: string(raw)}
				return
			}
			key = []byte(s)
		}
		for _, k := range known {
			if bytes.EqualFold(key, []byte(k)) && string(key) != k {
				bad = &AmbiguousKeyError{Where: where, Key: string(key), Other: k}
				return
			}
		}
		if folded == nil {
			for _, prev := range keys {
				if bytes.EqualFold(prev, key) {
					bad = &AmbiguousKeyError{Where: where, Key: string(key), Other: string(prev)}
					return
				}
			}
			if len(keys) < smallKeys {
				keys = append(keys, key)
				return
			}
			folded = make(map[string]string, 2*smallKeys)
			for _, prev := range keys {
				folded[string(foldKey(prev))] = string(prev)
			}
		}
		f := string(foldKey(key))
		if prev, dup := folded[f]; dup {
			bad = &AmbiguousKeyError{Where: where, Key: string(key), Other: prev}
			return
		}
		folded[f] = string(key)
	})
	if err != nil {
		return err
	}
	if bad != nil {
		return bad
	}
	return nil
}

// foldKey maps a key to a canonical form such that foldKey(x) == foldKey(y)
// exactly when bytes.EqualFold(x, y), as encoding/json's field matching does.
func foldKey(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune returns the smallest rune of r's case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// checkParams checks params and, inside it, the objects the gateway routes
// on: _meta and ref.
func checkParams(params []byte) error {
	if len(params) == 0 || params[0] != '{' {
		return nil
	}
	var nested error
	err := checkKeys(params, "params", paramsKeys, func(key, val []byte, escaped bool) {
		if nested != nil || len(val) == 0 || val[0] != '{' {
			return
		}
		switch {
		case keyEquals(key, escaped, "_meta"):
			nested = checkKeys(val, "params._meta", metaKeys, nil)
		case keyEquals(key, escaped, "ref"):
			nested = checkKeys(val, "params.ref", refKeys, nil)
		}
	})
	if err != nil {
		return err
	}
	return nested
}
