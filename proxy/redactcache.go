package proxy

import (
	"bytes"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// Limits of EventRedactor's memo: what it remembers is small and bounded
// (at most memoStrings strings of memoStringBytes and memoPayloads
// payloads of memoPayloadBytes, raw and redacted: under 1.5 MiB, and the
// hashes of memoSeen values met once).
const (
	memoStrings      = 4096
	memoStringBytes  = 128
	memoPayloads     = 256
	memoPayloadBytes = 2048
	memoSeen         = 8192
)

// EventRedactor is RedactEvent with a memo: the hops of a call, and the
// calls of a session, repeat the same method, tool name, client name,
// versions and rules, and the upstream and response hops carry the same
// result, so it redacts each distinct small value once and reuses the
// outcome. Redaction is a function of the value (and the fixed Redactor),
// so the events it prepares are exactly what RedactEvent makes. Use one
// per recorder (recorder.Config.Prepare); it is safe for concurrent use.
//
// A value is remembered the second time it is met: until then only its
// hash is kept, so values met once (a call's id, its arguments and result)
// cost a hash rather than two copies. Payloads that differ but share a
// large member (a tool's arguments under the client's and the backend's
// tool name, a result with and without the gateway's _meta) reuse that
// member's redaction through a redact.Memo. The memos hold raw
// (unredacted) values in memory, never on disk, until reset when full.
type EventRedactor struct {
	mu   sync.Mutex
	memo redactMemo
}

// memberRedactor is a Redactor that can reuse the redaction of payload
// members met before (redact.Redactor). A Redactor that wraps one and
// changes Payload must not embed it, or its PayloadMemo would be used
// instead of its Payload.
type memberRedactor interface {
	PayloadMemo(b []byte, m *redact.Memo) (out []byte, count int, truncated bool, sha256hex string)
}

// redactMemo is the Redactor EventRedactor hands RedactEvent, under its mutex.
type redactMemo struct {
	r        Redactor
	strs     map[string]memoString
	payloads map[string]memoPayload
	// seen holds the hashes of values met once (see EventRedactor).
	seen map[uint64]struct{}
	seed maphash.Seed
	// members remembers the redaction of payloads' top-level members, which
	// recur across a call's hops in payloads that differ (redact.Memo);
	// nil when r cannot use it.
	members *redact.Memo
}

// again reports whether the value hashed to h was met before, and notes it.
func (m *redactMemo) again(h uint64) bool {
	if _, ok := m.seen[h]; ok {
		return true
	}
	if len(m.seen) >= memoSeen {
		clear(m.seen)
	}
	m.seen[h] = struct{}{}
	return false
}

type memoString struct {
	out string
	n   int
}

type memoPayload struct {
	out   []byte
	n     int
	trunc bool
	sum   string
}

// NewEventRedactor returns an EventRedactor over r.
func NewEventRedactor(r Redactor) *EventRedactor {
	m := &EventRedactor{memo: redactMemo{r: r, strs: map[string]memoString{}, payloads: map[string]memoPayload{},
		seen: map[uint64]struct{}{}, seed: maphash.MakeSeed()}}
	if _, ok := r.(memberRedactor); ok {
		m.memo.members = redact.NewMemo()
	}
	return m
}

// Prepare redacts e in place like RedactEvent.
func (m *EventRedactor) Prepare(e *recorder.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	RedactEvent(&m.memo, e)
}

func (m *redactMemo) Payload(b []byte) (out []byte, count int, truncated bool, sha256hex string) {
	// Most payloads are met once (a call's arguments and result): hashed
	// first, looked up and remembered from their second time.
	if len(b) > memoPayloadBytes || !m.again(maphash.Bytes(m.seed, b)) {
		return m.payload(b)
	}
	if p, ok := m.payloads[string(b)]; ok {
		// A copy: each event owns its slices.
		return bytes.Clone(p.out), p.n, p.trunc, p.sum
	}
	out, count, truncated, sha256hex = m.payload(b)
	if len(m.payloads) >= memoPayloads {
		clear(m.payloads)
	}
	m.payloads[string(b)] = memoPayload{out: bytes.Clone(out), n: count, trunc: truncated, sum: sha256hex}
	return out, count, truncated, sha256hex
}

// payload redacts b through the member memo when there is one.
func (m *redactMemo) payload(b []byte) (out []byte, count int, truncated bool, sha256hex string) {
	if m.members != nil {
		return m.r.(memberRedactor).PayloadMemo(b, m.members)
	}
	return m.r.Payload(b)
}

func (m *redactMemo) String(s string) (string, int) {
	if len(s) > memoStringBytes {
		return m.r.String(s)
	}
	if v, ok := m.strs[s]; ok {
		return v.out, v.n
	}
	// Most strings repeat (method, tool, client, rules): looked up first,
	// and remembered from their second time.
	if !m.again(maphash.String(m.seed, s)) {
		return m.r.String(s)
	}
	out, n := m.r.String(s)
	if len(m.strs) >= memoStrings {
		clear(m.strs)
	}
	// Clones: s and out may point into a large request body.
	m.strs[strings.Clone(s)] = memoString{out: strings.Clone(out), n: n}
	return out, n
}

func (m *redactMemo) Version() string { return m.r.Version() }

var _ Redactor = (*redactMemo)(nil)
