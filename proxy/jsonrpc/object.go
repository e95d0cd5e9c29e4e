package jsonrpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Object is a JSON object decoded one level deep, keeping member order and
// the raw bytes of every value, so that editing one member (a name, _meta)
// re-encodes the rest unchanged. Values alias the parsed input.
type Object struct {
	members []member
	inline  [8]member
}

type member struct {
	key     []byte // JSON-escaped key body, without quotes
	escaped bool   // key contains escape sequences
	val     json.RawMessage
}

func (m *member) is(key string) bool { return keyEquals(m.key, m.escaped, key) }

// ParseObject decodes the top level of a JSON object without copying its
// values. A nil, empty or null input gives an empty object. The input must
// be valid JSON (the gateway validates every message once, at Decode).
func ParseObject(b []byte) (*Object, error) {
	o := &Object{}
	o.members = o.inline[:0]
	t := b[skipWS(b, 0):]
	if len(t) == 0 || string(t) == "null" {
		return o, nil
	}
	err := scanMembers(b, func(key, val []byte, escaped bool) {
		o.members = append(o.members, member{key: key, escaped: escaped, val: val})
	})
	if err != nil {
		return nil, fmt.Errorf("reading object: %w", err)
	}
	return o, nil
}

// Get returns the raw value of key, or nil.
func (o *Object) Get(key string) json.RawMessage {
	for i := range o.members {
		if o.members[i].is(key) {
			return o.members[i].val
		}
	}
	return nil
}

// GetString returns the string value of key and whether it was a string.
func (o *Object) GetString(key string) (string, bool) {
	v := o.Get(key)
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	body := v[1 : len(v)-1]
	for _, c := range body {
		if c == '\\' || c >= utf8.RuneSelf {
			return unescape(body)
		}
	}
	return string(body), true
}

// Set replaces key's value, appending the member if it is new.
func (o *Object) Set(key string, val json.RawMessage) {
	for i := range o.members {
		if o.members[i].is(key) {
			o.members[i].val = val
			return
		}
	}
	q := appendJSONString(nil, key)
	o.members = append(o.members, member{key: q[1 : len(q)-1], escaped: strings.IndexByte(string(q), '\\') >= 0, val: val})
}

// SetString sets key to a JSON string.
func (o *Object) SetString(key, s string) { o.Set(key, appendJSONString(nil, s)) }

// Delete removes key if present and reports whether it was.
func (o *Object) Delete(key string) bool {
	for i := range o.members {
		if o.members[i].is(key) {
			o.members = append(o.members[:i], o.members[i+1:]...)
			return true
		}
	}
	return false
}

// DeletePrefix removes every member whose key starts with prefix and
// returns how many it removed.
func (o *Object) DeletePrefix(prefix string) int {
	n := 0
	kept := o.members[:0]
	for _, m := range o.members {
		k := string(m.key)
		if m.escaped {
			k, _ = unescape(m.key)
		}
		if strings.HasPrefix(k, prefix) {
			n++
			continue
		}
		kept = append(kept, m)
	}
	o.members = kept
	return n
}

// Clone returns a copy whose members can be set and deleted without
// touching o (values still alias the same bytes, which nothing edits). A
// nil o gives an empty object.
func (o *Object) Clone() *Object {
	c := &Object{}
	c.members = c.inline[:0]
	if o != nil {
		c.members = append(c.members, o.members...)
	}
	return c
}

// Len is the number of members.
func (o *Object) Len() int { return len(o.members) }

// Keys returns the member keys in order.
func (o *Object) Keys() []string {
	ks := make([]string, len(o.members))
	for i, m := range o.members {
		ks[i] = string(m.key)
		if m.escaped {
			ks[i], _ = unescape(m.key)
		}
	}
	return ks
}

// Marshal encodes the object, members in their original order.
func (o *Object) Marshal() json.RawMessage {
	n := 2
	for _, m := range o.members {
		n += len(m.key) + len(m.val) + 4
	}
	return o.AppendTo(make([]byte, 0, n))
}

// AppendTo appends the encoded object to dst.
func (o *Object) AppendTo(dst []byte) []byte {
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, m.key...)
		dst = append(dst, '"', ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}

// Lookup returns the raw value of a top-level key of a JSON object without
// decoding or allocating; ok is false when the key is absent or b is not an
// object.
func Lookup(b []byte, key string) (val json.RawMessage, ok bool) {
	err := scanMembers(b, func(k, v []byte, escaped bool) {
		if !ok && keyEquals(k, escaped, key) {
			val, ok = v, true
		}
	})
	if err != nil {
		return nil, false
	}
	return val, ok
}

// AppendMember returns a copy of object b with key: val added as its last
// member. The caller must know key is absent (see Lookup).
func AppendMember(b []byte, key string, val []byte) ([]byte, error) {
	end := len(b) - 1
	for end >= 0 && (b[end] == ' ' || b[end] == '\t' || b[end] == '\n' || b[end] == '\r') {
		end--
	}
	if end < 1 || b[end] != '}' {
		return nil, errNotObject
	}
	body := b[:end]
	empty := true
	for i := len(body) - 1; i >= 0; i-- {
		if c := body[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			empty = c == '{'
			break
		}
	}
	out := make([]byte, 0, len(b)+len(key)+len(val)+8)
	out = append(out, body...)
	if !empty {
		out = append(out, ',')
	}
	out = appendJSONString(out, key)
	out = append(out, ':')
	out = append(out, val...)
	return append(out, '}'), nil
}
