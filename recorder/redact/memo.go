package redact

import "encoding/binary"

// Limits of a Memo. A member value is remembered when its JSON text is at
// least memoMinBytes (below, walking it costs less than the lookup) and,
// with its key, at most memoMaxBytes; the memo is emptied when its keys
// and redacted values would pass memoBudget bytes.
const (
	memoMinBytes = 256
	memoMaxBytes = 64 << 10
	memoBudget   = 1 << 20
)

// A Memo remembers how the members of the payloads it has seen were
// redacted, so that a member met again in another payload is not walked
// again. The hops of one call carry the same members in different
// payloads: a tool's arguments in the request the client sent and in the
// one the gateway forwards (whose tool name differs), its result in the
// backend's answer and in the client's (which carries the gateway's
// _meta). Only the members of a payload's top-level object are
// remembered, keyed by their key and their exact JSON text: their
// redaction depends on nothing else (the rules that depend on a value's
// position see its key path, and the top-level "jsonrpc", "id" and
// "method" exception applies to the members' keys, not within their
// values).
//
// A Memo holds raw (unredacted) values in memory, never on disk, at most
// about memoBudget bytes of them and their redacted forms; it is emptied
// when full. It serves one Redactor: used by another, it is emptied first.
// It is not safe for concurrent use.
type Memo struct {
	r       *Redactor // whose redactions entries holds
	entries map[string]memoEntry
	bytes   int
	key     []byte // scratch: the key being looked up
	// ends is where the payload being redacted has each top-level
	// member's value end, from its validation (validMembers).
	ends []int
}

type memoEntry struct {
	out   []byte // nil when the value needed no change: it is the key's raw text
	count int
}

// NewMemo returns an empty Memo.
func NewMemo() *Memo { return &Memo{entries: map[string]memoEntry{}} }

// keyOf sets m.key to the key of the member value raw under the top-level
// key name: the name's length, the name, then raw, so that no two
// (name, raw) pairs share a key.
func (m *Memo) keyOf(name string, raw []byte) []byte {
	k := binary.AppendUvarint(m.key[:0], uint64(len(name)))
	k = append(k, name...)
	m.key = append(k, raw...)
	return m.key
}

func (m *Memo) get(key []byte) (memoEntry, bool) {
	e, ok := m.entries[string(key)]
	return e, ok
}

// memoMaxEnds bounds the capacity of Memo.ends kept between payloads: a
// payload of many small members (a 4 MiB body of {"":0,...}) would
// otherwise keep megabytes of offsets.
const memoMaxEnds = 1024

// use readies m for a payload redacted by r.
func (m *Memo) use(r *Redactor) {
	if m.r != r {
		clear(m.entries)
		m.bytes, m.r = 0, r
	}
}

// done releases what m kept of the payload just redacted.
func (m *Memo) done() {
	if cap(m.ends) > memoMaxEnds {
		m.ends = nil
	}
}

func (m *Memo) put(key, out []byte, count int) {
	e := memoEntry{count: count}
	size := len(key)
	if count > 0 {
		size += len(out)
	}
	if size > memoMaxBytes {
		// Redaction grew the value past the limit (many short secrets,
		// each now a placeholder): not worth a large share of the budget.
		return
	}
	if count > 0 {
		e.out = append([]byte(nil), out...)
	}
	if m.bytes+size > memoBudget {
		clear(m.entries)
		m.bytes = 0
	}
	m.entries[string(key)] = e
	m.bytes += size
}

// memberValue redacts the value of top-level member w.member, named by
// the last key of w.path, through w.memo: a value met before under the
// same key is copied from the memo instead of walked.
func (w *walker) memberValue(depth int) {
	i := w.member
	w.ws()
	if w.pos >= len(w.in) {
		return
	}
	start := w.pos
	if i >= len(w.memo.ends) || w.memo.ends[i] <= start || w.memo.ends[i] > len(w.in) {
		// Not from this payload's validation: cannot happen, but walking
		// is always right.
		w.value(depth, false)
		return
	}
	end := w.memo.ends[i]
	name := w.path[len(w.path)-1]
	if n := end - start; n < memoMinBytes || n+len(name) > memoMaxBytes {
		w.value(depth, false)
		return
	}
	key := w.memo.keyOf(name, w.in[start:end])
	if e, ok := w.memo.get(key); ok {
		if e.count == 0 {
			w.out = append(w.out, w.in[start:end]...)
		} else {
			w.out = append(w.out, e.out...)
		}
		w.count += e.count
		w.pos = end
		w.ws()
		return
	}
	from, count := len(w.out), w.count
	w.value(depth, false)
	// value also copied the white space after the value: not the memo's.
	// key is still this member's: the walk below the top level does not
	// use the memo.
	red := w.out[from : len(w.out)-(w.pos-end)]
	w.memo.put(key, red, w.count-count)
}
