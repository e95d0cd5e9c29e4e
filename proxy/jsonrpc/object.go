package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Object is a JSON object decoded one level deep, keeping member order and
// the raw bytes of every value, so that editing one member (a name, _meta)
// re-encodes the rest unchanged.
type Object struct {
	members []member
}

type member struct {
	key string
	val json.RawMessage
}

// ParseObject decodes the top level of a JSON object. A nil or empty input
// gives an empty object.
func ParseObject(b []byte) (*Object, error) {
	o := &Object{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return o, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("reading object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("reading object key: %w", err)
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("reading value of %q: %w", key, err)
		}
		o.members = append(o.members, member{key, val})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("reading object end: %w", err)
	}
	return o, nil
}

// Get returns the raw value of key, or nil.
func (o *Object) Get(key string) json.RawMessage {
	for _, m := range o.members {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// GetString returns the string value of key and whether it was a string.
func (o *Object) GetString(key string) (string, bool) {
	v := o.Get(key)
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// Set replaces key's value, appending the member if it is new.
func (o *Object) Set(key string, val json.RawMessage) {
	for i := range o.members {
		if o.members[i].key == key {
			o.members[i].val = val
			return
		}
	}
	o.members = append(o.members, member{key, val})
}

// SetString sets key to a JSON string.
func (o *Object) SetString(key, s string) { o.Set(key, appendJSONString(nil, s)) }

// Delete removes key if present and reports whether it was.
func (o *Object) Delete(key string) bool {
	for i := range o.members {
		if o.members[i].key == key {
			o.members = append(o.members[:i], o.members[i+1:]...)
			return true
		}
	}
	return false
}

// Len is the number of members.
func (o *Object) Len() int { return len(o.members) }

// Keys returns the member keys in order.
func (o *Object) Keys() []string {
	ks := make([]string, len(o.members))
	for i, m := range o.members {
		ks[i] = m.key
	}
	return ks
}

// Marshal encodes the object, members in their original order.
func (o *Object) Marshal() json.RawMessage {
	n := 2
	for _, m := range o.members {
		n += len(m.key) + len(m.val) + 4
	}
	dst := make([]byte, 0, n)
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}
