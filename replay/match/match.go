// Package match is the replay mock's answer store: recorded upstream
// exchanges keyed by method, server, tool/prompt/URI and canonical params.
//
// Params are canonicalised with `_meta` removed (it carries trace context and
// client metadata that differ on every run) and with configurable ignore
// paths removed. Identical requests are served in recorded order; once the
// recording is exhausted the last answer repeats. Session-level exchanges
// (initialize, ping and the list methods) are not consumed: they can be
// served any number of times. On a miss the error names the closest recorded
// candidate and what differed.
package match

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/mcptrail/mcptrail/replay/diff"
)

// ErrNoMatch is wrapped by every *MissError.
var ErrNoMatch = errors.New("no recorded answer")

// Config tunes matching.
type Config struct {
	// IgnoreParams hides params paths from the key, e.g. "/arguments/requestId"
	// or "everything.*:/arguments/now". Rules are filtered by server and by
	// target (here the backend's own tool name, prefixed with "server.").
	// params._meta is always ignored.
	IgnoreParams diff.IgnoreRules
	// MaxCandidates bounds how many recorded exchanges are diffed to find the
	// closest one on a miss. Default 256.
	MaxCandidates int
}

// sessionMethods are answered from the recording without being consumed.
// Their params (client info, protocol version) differ between runs, so they
// are keyed on method, server and list cursor only.
var sessionMethods = map[string]bool{
	"initialize":               true,
	"ping":                     true,
	"tools/list":               true,
	"prompts/list":             true,
	"resources/list":           true,
	"resources/templates/list": true,
}

// IsSessionMethod reports whether answers to method are reusable for the
// whole session rather than consumed in order.
func IsSessionMethod(method string) bool { return sessionMethods[method] }

// Key identifies a class of identical requests.
type Key struct {
	Method string
	Server string
	Name   string // tool or prompt name, or resource URI; "" for other methods
	Params string // canonical params without _meta and ignored paths
}

func (k Key) String() string {
	s := k.Method + " " + k.Server
	if k.Name != "" {
		s += "/" + k.Name
	}
	return s
}

type entry struct {
	key     Key
	params  any // parsed, filtered params, for diffing on a miss
	answers []diff.Exchange
	next    int
}

// Store holds recorded exchanges. It is safe for concurrent use.
type Store struct {
	cfg Config

	mu      sync.Mutex
	entries map[Key]*entry
	order   []*entry // insertion order, for deterministic closest-candidate search
	servers map[string]bool
	// byRequest holds the same answers per recorded request ID, so that a
	// replayed request naming its recorded request gets exactly its answers
	// even when identical requests of other sessions interleave.
	byRequest map[requestKey]*entry
	// profileLists holds list answers per backend, client capability
	// profile (see ProfileKey) and method.
	profileLists map[[3]string]json.RawMessage
}

type requestKey struct {
	requestID string
	key       Key
}

// replaySuffix marks a request ID as the replay of a recorded one.
const replaySuffix = ".replay"

// ReplayRequestID is the request ID a replayed request is sent with: the
// recorded one, marked. The gateway keeps a valid client-supplied request
// ID and passes it upstream in params._meta, where the mock reads it back
// with RecordedRequestID. Empty for an empty or too long recorded ID.
func ReplayRequestID(recorded string) string {
	if recorded == "" || len(recorded)+len(replaySuffix) > 128 {
		return ""
	}
	return recorded + replaySuffix
}

// RecordedRequestID reverses ReplayRequestID.
func RecordedRequestID(id string) (string, bool) { return strings.CutSuffix(id, replaySuffix) }

// unscoped removes the principal scope a gateway with tokens puts on a
// client's request ID (auth.Principal.ScopeRequestID: 12 hex digits and a
// colon); "" when id has none.
func unscoped(id string) string {
	const n = 12
	if len(id) <= n || id[n] != ':' {
		return ""
	}
	for i := 0; i < n; i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return id[n+1:]
}

// NewStore returns an empty store.
func NewStore(cfg Config) *Store {
	if cfg.MaxCandidates <= 0 {
		cfg.MaxCandidates = 256
	}
	return &Store{cfg: cfg, entries: map[Key]*entry{}, servers: map[string]bool{}, byRequest: map[requestKey]*entry{}}
}

// Add records one upstream exchange (Request = params as sent upstream,
// Response = the backend's answer). Exchanges must be added in recorded
// order. The exchange is retained; its byte slices must not be modified.
func (s *Store) Add(x diff.Exchange) error {
	k, params, err := s.key(x.Method, x.Server, x.Request)
	if err != nil {
		return fmt.Errorf("adding recorded %s %s: %w", x.Method, x.Server, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servers[x.Server] = true
	e := s.entries[k]
	if e == nil {
		e = &entry{key: k, params: params}
		s.entries[k] = e
		s.order = append(s.order, e)
	}
	e.answers = append(e.answers, x)
	if x.RequestID != "" && !sessionMethods[x.Method] {
		rk := requestKey{x.RequestID, k}
		re := s.byRequest[rk]
		if re == nil {
			re = &entry{key: k, params: params}
			s.byRequest[rk] = re
		}
		re.answers = append(re.answers, x)
	}
	return nil
}

// Servers returns the backend namespaces that have recorded exchanges.
func (s *Store) Servers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.servers))
	for _, e := range s.order {
		if !slices.Contains(out, e.key.Server) {
			out = append(out, e.key.Server)
		}
	}
	return out
}

// Methods returns the methods recorded for server, in first-seen order.
func (s *Store) Methods(server string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.order {
		if e.key.Server == server && !slices.Contains(out, e.key.Method) {
			out = append(out, e.key.Method)
		}
	}
	return out
}

// ProtocolVersion returns the first protocol version recorded on an
// exchange with server, or "".
func (s *Store) ProtocolVersion(server string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.order {
		if e.key.Server != server {
			continue
		}
		for _, x := range e.answers {
			if x.ProtocolVersion != "" {
				return x.ProtocolVersion
			}
		}
	}
	return ""
}

// HasServer reports whether anything was recorded for server.
func (s *Store) HasServer(server string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.servers[server]
}

// Session returns the first recorded answer to a session-level method
// (initialize, tools/list, …) for server without consuming it, ignoring
// params. ok is false when none was recorded.
func (s *Store) Session(method, server string) (x diff.Exchange, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.order {
		if e.key.Method == method && e.key.Server == server {
			return e.answers[0], true
		}
	}
	return diff.Exchange{}, false
}

// Lookup returns the recorded answer for a request. For ordinary methods
// each call consumes the next recorded answer of identical requests, and the
// last one repeats. A miss returns a *MissError.
func (s *Store) Lookup(method, server string, params json.RawMessage) (diff.Exchange, error) {
	return s.LookupFor("", method, server, params)
}

// LookupFor is Lookup for a request that names the recorded request it
// replays: when that request recorded an answer for the same key, its
// answers are served (in recorded order, retries included); otherwise it
// falls back to Lookup's shared order.
func (s *Store) LookupFor(recordedRequestID, method, server string, params json.RawMessage) (diff.Exchange, error) {
	k, p, err := s.key(method, server, params)
	if err != nil {
		return diff.Exchange{}, fmt.Errorf("matching %s %s: %w", method, server, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if recordedRequestID != "" && !sessionMethods[method] {
		// A gateway with tokens scopes the replayed ID to the replaying
		// principal ("<12 hex>:<id>"); the recorded one may be either.
		for _, id := range [2]string{recordedRequestID, unscoped(recordedRequestID)} {
			if e := s.byRequest[requestKey{id, k}]; id != "" && e != nil {
				i := min(e.next, len(e.answers)-1)
				e.next++
				return e.answers[i], nil
			}
		}
	}
	if e := s.entries[k]; e != nil {
		i := e.next
		if i >= len(e.answers) {
			i = len(e.answers) - 1
		} else if !sessionMethods[method] {
			e.next++
		}
		return e.answers[i], nil
	}
	return diff.Exchange{}, s.miss(k, p, params)
}

// ProfileKey is the key of a client capability profile: the canonical JSON
// of the capabilities a client declared, "" when it declared none (the
// gateway opens one backend connection per profile and declares it).
func ProfileKey(caps json.RawMessage) string {
	var v map[string]any
	if json.Unmarshal(caps, &v) != nil || len(v) == 0 {
		return ""
	}
	b, _ := json.Marshal(v) // map keys sorted at every level
	return string(b)
}

// AddProfileList records the list answer (result object) that server gave a
// connection declaring the client capability profile (a ProfileKey):
// backends such as server-everything list some tools only to clients that
// declared sampling, elicitation or roots.
func (s *Store) AddProfileList(server, profile, method string, result json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.profileLists == nil {
		s.profileLists = map[[3]string]json.RawMessage{}
	}
	s.profileLists[[3]string{server, profile, method}] = result
}

// ProfileList returns the list answer recorded for server, profile and
// method by AddProfileList.
func (s *Store) ProfileList(server, profile, method string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.profileLists[[3]string{server, profile, method}]
	return r, ok
}

// Reset rewinds every sequence so the recording can be served again.
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.order {
		e.next = 0
	}
	for _, e := range s.byRequest {
		e.next = 0
	}
}

// Len is the number of recorded exchanges.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.order {
		n += len(e.answers)
	}
	return n
}

// key builds the match key and the filtered, parsed params.
func (s *Store) key(method, server string, params json.RawMessage) (Key, any, error) {
	k := Key{Method: method, Server: server}
	var v any
	if len(strings.TrimSpace(string(params))) > 0 {
		var err error
		if v, err = diff.Parse(params); err != nil {
			return Key{}, nil, fmt.Errorf("parsing params: %w", err)
		}
	}
	obj, _ := v.(map[string]any)
	if obj != nil {
		switch method {
		case "tools/call", "prompts/get":
			k.Name, _ = obj["name"].(string)
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			k.Name, _ = obj["uri"].(string)
		}
	}
	if sessionMethods[method] {
		// Only a list cursor distinguishes session-level requests.
		v = nil
		if c, ok := obj["cursor"]; ok {
			v = map[string]any{"cursor": c}
		}
	} else if obj != nil {
		delete(obj, "_meta")
		target := server
		if k.Name != "" {
			target = server + "." + k.Name
		}
		if rules := s.cfg.IgnoreParams.For(server, target); len(rules) > 0 {
			v = prune(nil, v, rules)
		}
	}
	if v != nil {
		k.Params = string(diff.AppendCanonical(nil, v))
	}
	return k, v, nil
}

// prune removes the members and elements the rules ignore.
func prune(toks []string, v any, rules diff.IgnoreRules) any {
	switch t := v.(type) {
	case map[string]any:
		for key, val := range t {
			sub := append(toks[:len(toks):len(toks)], key)
			if rules.Ignored(sub) {
				delete(t, key)
				continue
			}
			t[key] = prune(sub, val, rules)
		}
	case []any:
		for i, val := range t {
			sub := append(toks[:len(toks):len(toks)], fmt.Sprint(i))
			if rules.Ignored(sub) {
				t[i] = nil
				continue
			}
			t[i] = prune(sub, val, rules)
		}
	}
	return v
}

// MissError says that no recorded exchange matches a request, and which
// recorded request came closest.
type MissError struct {
	Key    Key
	Params json.RawMessage // the request's params as received
	// Closest is the nearest recorded request of the same method and server
	// (same name preferred, then fewest differing paths); nil when nothing of
	// that method and server was recorded.
	Closest *Key
	// Changes turn the closest recorded params into the requested ones.
	Changes []diff.Change
}

func (e *MissError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "no recorded answer for %s", e.Key)
	if e.Closest == nil {
		fmt.Fprintf(&sb, "; nothing recorded for %s on %s", e.Key.Method, e.Key.Server)
		return sb.String()
	}
	fmt.Fprintf(&sb, "; closest recorded: %s", e.Closest)
	if e.Closest.Name != e.Key.Name {
		fmt.Fprintf(&sb, " (name %q, requested %q)", e.Closest.Name, e.Key.Name)
	}
	for i, c := range e.Changes {
		if i == 3 {
			fmt.Fprintf(&sb, "; and %d more", len(e.Changes)-3)
			break
		}
		fmt.Fprintf(&sb, "; params %s", c)
	}
	return sb.String()
}

func (e *MissError) Unwrap() error { return ErrNoMatch }

// miss builds the MissError; s.mu is held.
func (s *Store) miss(k Key, params any, raw json.RawMessage) *MissError {
	me := &MissError{Key: k, Params: raw}
	bestScore := -1
	scanned := 0
	for _, e := range s.order {
		if e.key.Method != k.Method || e.key.Server != k.Server {
			continue
		}
		if scanned++; scanned > s.cfg.MaxCandidates {
			break
		}
		cs := diff.Diff(e.params, params, nil)
		score := len(cs)
		if e.key.Name != k.Name {
			score += 1 << 20
		}
		if bestScore < 0 || score < bestScore {
			bestScore = score
			kk := e.key
			me.Closest, me.Changes = &kk, cs
		}
	}
	return me
}
