package jsonrpc

import (
	"encoding/json"
	"unicode/utf8"
)

// Value decodes one JSON document into what encoding/json's Decoder with
// UseNumber makes of it: map[string]any, []any, string, json.Number, bool
// and nil, a later duplicate key replacing an earlier one. ok is false
// when b is not exactly one valid JSON value (white space around it
// allowed) or nests deeper than encoding/json allows: the caller then asks
// encoding/json, for its error. It is the JSON Schema validator's input
// for a call's arguments, built without the Decoder's buffering and
// scanner (FuzzValue holds it equal to the Decoder).
func Value(b []byte) (v any, ok bool) {
	p := valueParser{b: b}
	p.ws()
	v, ok = p.value(0)
	if !ok {
		return nil, false
	}
	p.ws()
	return v, p.i == len(b)
}

type valueParser struct {
	b []byte
	i int
}

func (p *valueParser) ws() { p.i = skipWS(p.b, p.i) }

// open consumes a container's opening byte and reports whether closer
// follows at once (an empty object or array), consuming it too.
func (p *valueParser) open(closer byte) (empty bool) {
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == closer {
		p.i++
		return true
	}
	return false
}

// value decodes the value at i, inside depth objects and arrays.
func (p *valueParser) value(depth int) (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case (c == '{' || c == '[') && depth >= maxDepth: // encoding/json's limit
		return nil, false
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return nil, false
}

func (p *valueParser) object(depth int) (any, bool) {
	m := map[string]any{}
	if p.open('}') {
		return m, true
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, false
		}
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, false
		}
		p.i++
		p.ws()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		m[k.(string)] = v
		if done, ok := p.next('}'); !ok || done {
			return m, ok
		}
	}
}

// next reads what follows a member or element: a comma (more follow) or
// closer (done); anything else is not JSON.
func (p *valueParser) next(closer byte) (done, ok bool) {
	p.ws()
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		return false, true
	case closer:
		p.i++
		return true, true
	}
	return false, false
}

func (p *valueParser) array(depth int) (any, bool) {
	a := make([]any, 0)
	if p.open(']') {
		return a, true
	}
	for {
		p.ws()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if done, ok := p.next(']'); !ok || done {
			return a, ok
		}
	}
}

// str decodes the string at i. One without escapes and in valid UTF-8 is
// its bytes; any other goes through encoding/json, which replaces invalid
// UTF-8 and lone surrogates with U+FFFD.
func (p *valueParser) str() (any, bool) {
	end, escaped, err := skipString(p.b, p.i)
	if err != nil {
		return nil, false
	}
	raw := p.b[p.i:end]
	p.i = end
	if !escaped && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return nil, false
	}
	return v, true
}

func (p *valueParser) lit(word string) bool {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return false
	}
	p.i += len(word)
	return true
}

// number checks the JSON number grammar and keeps the literal, as
// UseNumber does.
func (p *valueParser) number() (any, bool) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if !p.digits() {
			return nil, false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return nil, false
		}
	}
	return json.Number(p.b[start:p.i]), true
}

// digits skips one or more decimal digits.
func (p *valueParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
