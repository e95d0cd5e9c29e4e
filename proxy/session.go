package proxy

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// sessionStreamSize bounds the messages buffered for a session's standalone
// stream (GET /mcp or legacy SSE). Past it, messages are dropped and counted:
// a slow client must not grow the gateway's memory.
const sessionStreamSize = 256

// Session is one client session: what the client negotiated and the streams
// the gateway can reach it on.
type Session struct {
	id       string
	recID    string    // the id in records, logs and spans: id, or a sealed id's public handle (id is a bearer credential then)
	sealedTo time.Time // a sealed session's expiry; zero when not sealed
	sealedAt time.Time // a sealed session's issue time
	legacy   bool      // opened by GET /sse: served by POST /message only; else by /mcp only
	owner    string    // the OwnerKey of the principal that opened it; only it may use the id
	princ    *auth.Principal
	g        *Gateway
	lastUsed atomic.Int64

	mu              sync.Mutex
	protocolVersion string
	clientName      string
	clientVersion   string
	caps            map[string]json.RawMessage
	initialized     bool            // setClient ran
	profKey         string          // profileOf(caps)
	profCaps        json.RawMessage // canonical caps
	logLevel        string
	subs            map[string]bool
	upstreamSubs    map[string]*upstreamHold        // by URI: the 2026 backends' resource streams held for subs
	used            map[string]bool                 // backends a request of this session was sent to
	pending         map[string]chan jsonrpc.Message // server→client requests awaiting the client
	calls           map[string]*call                // in-flight client requests by jsonrpc.IDKey
	accepted        map[string]*string              // legacy requests acknowledged (202) but not yet tracked: a cancel reason, or nil
	closed          bool
	done            chan struct{} // closed by close: ends the standalone stream

	// cat is a sessionless (2026-07-28) tools/call's catalog, loaded once
	// for the header checks and the call (modernSession); nil otherwise.
	cat *catalog

	stream    chan []byte // standalone stream's queue, made on first use (queue); never for a sessionless (2026-07-28) request
	streaming atomic.Int32
	legacyIn  atomic.Int32 // POST /message requests being served (legacy SSE)
	dropped   atomic.Int64
}

func (g *Gateway) newSession(id string, owner *auth.Principal) *Session {
	s := &Session{
		id:    id,
		owner: owner.OwnerKey(),
		princ: owner,
		g:     g,
		done:  make(chan struct{}),
	}
	s.recID = id
	// The maps and the stream's queue are made on first use: most of a
	// session's life is idle, and idle sessions are what a client can pile
	// up (BenchmarkIdleSessionMemory).
	s.touch()
	return s
}

// queue returns the standalone stream's queue, made on first use; nil for
// a sessionless request, which never gets a standalone stream. The caller
// holds s.mu.
func (s *Session) queue() chan []byte {
	if s.stream == nil && s.id != "" {
		s.stream = make(chan []byte, sessionStreamSize)
	}
	return s.stream
}

func (s *Session) touch() { s.lastUsed.Store(time.Now().UnixNano()) }

// ID is the session id the client uses.
func (s *Session) ID() string { return s.id }

func (s *Session) setClient(version, name, ver string, caps map[string]json.RawMessage) {
	s.mu.Lock()
	s.protocolVersion, s.clientName, s.clientVersion, s.caps = version, name, ver, caps
	s.initialized = true
	s.profKey, s.profCaps = profileOf(caps)
	s.mu.Unlock()
}

// capabilityProfile is the client's capability profile (profile.go); ok is
// false before initialize.
func (s *Session) capabilityProfile() (key string, caps json.RawMessage, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profKey, s.profCaps, s.initialized
}

func (s *Session) profileKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profKey
}

func (s *Session) client() (version, name, ver string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocolVersion, s.clientName, s.clientVersion
}

// hasCapability reports whether the client declared a capability at
// initialize (sampling, elicitation, roots).
func (s *Session) hasCapability(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.caps[name]
	return ok
}

func (s *Session) setLogLevel(l string) {
	s.mu.Lock()
	s.logLevel = l
	s.mu.Unlock()
}

// logLevels ranks the log levels (RFC 5424 severities, least severe first).
var logLevels = map[string]int{"debug": 0, "info": 1, "notice": 2, "warning": 3, "error": 4, "critical": 5, "alert": 6, "emergency": 7}

// validLogLevel reports whether l is a log level the protocol defines.
func validLogLevel(l string) bool { _, ok := logLevels[l]; return ok }

// wantsLog reports whether the session's client asked for log messages of
// level: it set a log level (logging/setLevel, or a 2026-07-28 request's
// _meta) and level is at or above it. A backend connection is shared by
// the sessions of a capability profile and has one level, the last one set
// by any of them, so the gateway filters for each session itself. A level
// the protocol does not define is passed on.
func (s *Session) wantsLog(level string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logLevel == "" {
		return false
	}
	got, ok := logLevels[level]
	return !ok || got >= logLevels[s.logLevel]
}

func (s *Session) subscribe(uri string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		if s.subs == nil {
			s.subs = map[string]bool{}
		}
		s.subs[uri] = true
	} else {
		delete(s.subs, uri)
	}
}

// canSubscribe reports whether the session may subscribe uri without
// holding more than max subscriptions.
func (s *Session) canSubscribe(uri string, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[uri] || len(s.subs) < max
}

// forwardedSubs returns the URIs the session holds resources/subscribe
// subscriptions to that were forwarded to a session-era backend (those to
// a 2026 backend hold a stream instead, which follows its backend itself).
func (s *Session) forwardedSubs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for uri := range s.subs {
		if s.upstreamSubs[uri] == nil {
			out = append(out, uri)
		}
	}
	return out
}

func (s *Session) subscribed(uri string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[uri]
}

// push queues a message for the standalone stream without blocking.
func (s *Session) push(b []byte) {
	s.mu.Lock()
	closed, q := s.closed, s.queue()
	s.mu.Unlock()
	if closed || q == nil {
		return
	}
	select {
	case q <- b:
	default:
		s.dropped.Add(1)
		s.g.stats.dropped.Add(1)
		s.g.logger.Warn("session stream full, message dropped", "session_id", s.recID, "dropped_total", s.dropped.Load())
	}
}

// pushWait queues a message that must not be dropped (a final answer on the
// legacy SSE stream), waiting up to d for room.
func (s *Session) pushWait(b []byte, d time.Duration) {
	s.mu.Lock()
	closed, q := s.closed, s.queue()
	s.mu.Unlock()
	if closed || q == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case q <- b:
	case <-s.done:
	case <-t.C:
		s.dropped.Add(1)
		s.g.stats.dropped.Add(1)
		s.g.logger.Error("session stream blocked, answer dropped", "session_id", s.recID, "waited", d)
	}
}

func (s *Session) hasStream() bool { return s.streaming.Load() > 0 }

// claimStream reserves the session's one standalone stream. A second
// stream is refused rather than served: two readers of one queue would
// each get some of the session's messages, and neither all of them.
func (s *Session) claimStream() bool { return s.streaming.CompareAndSwap(0, 1) }

func (s *Session) releaseStream() { s.streaming.Store(0) }

// awaitResponse registers a server→client request id.
func (s *Session) awaitResponse(id string) (chan jsonrpc.Message, func()) {
	ch := make(chan jsonrpc.Message, 1)
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[string]chan jsonrpc.Message{}
	}
	key := jsonrpc.IDKey(json.RawMessage(id))
	s.pending[key] = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.pending, key)
		s.mu.Unlock()
	}
}

// deliver hands a client's response to the server→client request waiting
// for it; false when nothing waits for that id.
func (s *Session) deliver(m jsonrpc.Message) bool {
	s.mu.Lock()
	ch, ok := s.pending[jsonrpc.IDKey(m.ID)]
	s.mu.Unlock()
	if ok {
		// The channel holds one answer; a duplicate answer from the client
		// is dropped rather than blocking its POST forever.
		select {
		case ch <- m:
		default:
		}
	}
	return ok
}

// markUsed notes that a request of s was sent to backend name.
func (s *Session) markUsed(name string) {
	s.mu.Lock()
	if !s.used[name] {
		if s.used == nil {
			s.used = map[string]bool{}
		}
		s.used[name] = true
	}
	s.mu.Unlock()
}

// usedBackend reports whether a request of s was sent to backend name.
func (s *Session) usedBackend(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used[name]
}

func (s *Session) trackCall(c *call) {
	k := jsonrpc.IDKey(c.msg.ID)
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*call{}
	}
	s.calls[k] = c
	reason, early := s.accepted[k]
	delete(s.accepted, k)
	s.mu.Unlock()
	if early && reason != nil {
		c.cancelByClient(*reason)
	}
}

// accept notes a request the legacy transport acknowledged (202) before
// serving it: a cancellation the client sends once it has the 202 may be
// read before the call is tracked, and must still reach it. The entry is
// bounded by limits.max_inflight_per_session; release drops it if the
// request never became a tracked call.
func (s *Session) accept(id json.RawMessage) {
	s.mu.Lock()
	if s.accepted == nil {
		s.accepted = map[string]*string{}
	}
	s.accepted[jsonrpc.IDKey(id)] = nil
	s.mu.Unlock()
}

func (s *Session) release(id json.RawMessage) {
	s.mu.Lock()
	delete(s.accepted, jsonrpc.IDKey(id))
	s.mu.Unlock()
}

// cancelCall cancels the client request id: the tracked call, or an
// accepted one about to be tracked. It reports whether one was found.
func (s *Session) cancelCall(id json.RawMessage, reason string) bool {
	k := jsonrpc.IDKey(id)
	s.mu.Lock()
	c := s.calls[k]
	if c == nil {
		if _, ok := s.accepted[k]; ok {
			s.accepted[k] = &reason
			s.mu.Unlock()
			return true
		}
	}
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.cancelByClient(reason)
	return true
}

func (s *Session) untrackCall(c *call) {
	s.mu.Lock()
	if k := jsonrpc.IDKey(c.msg.ID); s.calls[k] == c {
		delete(s.calls, k)
	}
	s.mu.Unlock()
}

func (s *Session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	calls := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	held := s.upstreamSubs
	s.upstreamSubs = nil
	s.mu.Unlock()
	for _, c := range calls {
		c.cancel()
	}
	for _, h := range held {
		h.release()
	}
}

// holdUpstream records that the session's subscription to uri holds a 2026
// backend's resource stream, and marks it subscribed. It reports false, and
// the caller releases, when the session has closed meanwhile or already
// holds one.
func (s *Session) holdUpstream(uri string, h *upstreamHold) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.upstreamSubs[uri] != nil {
		return false
	}
	if s.upstreamSubs == nil {
		s.upstreamSubs = map[string]*upstreamHold{}
	}
	if s.subs == nil {
		s.subs = map[string]bool{}
	}
	s.upstreamSubs[uri], s.subs[uri] = h, true
	return true
}

// heldUpstream returns the session's share of the stream for uri (nil when
// none).
func (s *Session) heldUpstream(uri string) *upstreamHold {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstreamSubs[uri]
}

// dropUpstream ends the session's subscription to uri and returns the
// share of the stream it held (nil when none).
func (s *Session) dropUpstream(uri string) *upstreamHold {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.upstreamSubs[uri]
	delete(s.upstreamSubs, uri)
	delete(s.subs, uri)
	return h
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// streamLoop writes the standalone stream with write until ctx ends or the
// session is closed (DELETE, expiry, shutdown). The caller holds the
// stream (claimStream).
func (s *Session) streamLoop(ctx context.Context, write func([]byte) error) {
	s.mu.Lock()
	q := s.queue()
	s.mu.Unlock()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case b := <-q:
			if write(b) != nil {
				return
			}
		case <-keepalive.C:
			if write(nil) != nil {
				return
			}
		}
	}
}

// principalName is who owns what p opens: "" when authentication is off.
func principalName(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// ruleSessionOwner is the audit rule of a refused use of another
// principal's session.
const ruleSessionOwner = "session-owner"

// lookupSession returns the session id names when it exists, belongs to p
// and was opened on the transport asking (legacy: GET /sse, whose POSTs go
// to /message; else /mcp). Another principal's session is answered exactly
// like a missing one, so an id reveals nothing to whoever holds it; the
// attempt is recorded as a denied auth hop and logged. A session of the
// other transport is answered like a missing one too: each transport
// serves only the ids it issued. method is the JSON-RPC method ("" for GET
// and DELETE).
func (g *Gateway) lookupSession(r *http.Request, id string, legacy bool, p *auth.Principal, reqID, method string) (*Session, bool) {
	if id == "" {
		return nil, false
	}
	s, ok := g.sessions.Load(id)
	if !ok {
		if legacy {
			return nil, false // legacy sessions are never sealed
		}
		// A sealed id opened by another replica, or by this one before
		// its memory of it expired.
		return g.resumeSession(r, id, p, reqID, method)
	}
	if s.owner == p.OwnerKey() {
		if s.legacy != legacy {
			g.logger.Info("session id used on the other transport: refused as unknown", "request_id", reqID,
				"session_id", s.recID, "legacy_session", s.legacy, "target", r.Method+" "+r.URL.Path)
			return nil, false
		}
		if !s.sealedTo.IsZero() && !g.sealed.now().Before(g.sealed.expiry(s.sealedAt, s.sealedTo)) {
			// Its sealed lifetime (or a lowered sessions.lifetime) is
			// over here too, however busy it is.
			if g.sessions.Delete(id, s) {
				s.close()
			}
			return nil, false
		}
		s.touch()
		return s, true
	}
	g.denySessionOwner(r, id, p, reqID, method)
	return nil, false
}

// denySessionOwner records and logs a use of another principal's session.
func (g *Gateway) denySessionOwner(r *http.Request, id string, p *auth.Principal, reqID, method string) {
	g.stats.denied.Add(1)
	target := r.Method + " " + r.URL.Path
	if g.rec != nil {
		e := &recorder.Event{
			RequestID: reqID, SessionID: recordedSessionID(id), Hop: recorder.HopAuth, TimeNs: time.Now().UnixNano(),
			Method: method, Target: target, Principal: principalName(p),
			AuthDecision: "denied", AuthRule: ruleSessionOwner, Outcome: recorder.OutcomeDenied,
			ErrorCode: jsonrpc.CodeInvalidRequest, ErrorMessage: "session belongs to another principal",
			GatewayInstance: g.instance, GatewayVersion: g.version, ConfigHash: g.conf().Hash,
		}
		if g.redactor != nil {
			e.RedactionVersion = g.redactor.Version()
			redactFields(g.redactor, e) // the method is the client's
		} else {
			capIdentifiers(e)
		}
		_ = g.rec.Record(e)
	}
	g.logger.Warn("request denied: session belongs to another principal", "request_id", reqID,
		"session_id", truncateForLog(recordedSessionID(id)), "principal", principalName(p), "target", target, "remote", r.RemoteAddr)
}

// sessionTable holds the open sessions, counted per principal so that
// limits.max_sessions and limits.max_sessions_per_principal hold.
type sessionTable struct {
	mu       sync.Mutex
	byID     map[string]*Session
	perOwner map[string]int
}

// errSessionLimit is a refused new session; status is the HTTP answer.
type errSessionLimit struct {
	status int
	limit  string // the limits.* key that refused it
	msg    string
}

func (e *errSessionLimit) Error() string { return e.msg }

// add stores s unless a cap is reached.
func (t *sessionTable) add(s *Session, l config.Limits) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addLocked(s, l)
}

func (t *sessionTable) addLocked(s *Session, l config.Limits) error {
	maxAll := cmp.Or(l.MaxSessions, config.DefaultMaxSessions)
	maxOwner := cmp.Or(l.MaxSessionsPerPrincipal, config.DefaultMaxSessionsPerPrincipal)
	if t.byID == nil {
		t.byID, t.perOwner = map[string]*Session{}, map[string]int{}
	}
	if n := t.perOwner[s.owner]; n >= maxOwner {
		return &errSessionLimit{http.StatusTooManyRequests, limitSessionsPerPrincipal, fmt.Sprintf(
			"mcptrail: %d sessions already open for this principal (limits.max_sessions_per_principal); end one with DELETE /mcp or let it expire", n)}
	}
	if len(t.byID) >= maxAll {
		return &errSessionLimit{http.StatusServiceUnavailable, limitSessions, fmt.Sprintf(
			"mcptrail: the gateway has %d sessions open (limits.max_sessions); try again later", len(t.byID))}
	}
	t.byID[s.id] = s
	t.perOwner[s.owner]++
	return nil
}

// addOrGet stores s unless a cap is reached or a session with its id is
// already there, which it then returns instead (two requests resuming one
// sealed session at once get one Session).
func (t *sessionTable) addOrGet(s *Session, l config.Limits) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byID[s.id]; ok {
		return cur, nil
	}
	if err := t.addLocked(s, l); err != nil {
		return nil, err
	}
	return s, nil
}

// Load returns the session id names, whoever owns it.
func (t *sessionTable) Load(id string) (*Session, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[id]
	return s, ok
}

// Delete removes id if it is still s, and reports whether it did.
func (t *sessionTable) Delete(id string, s *Session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byID[id]; !ok || cur != s {
		return false
	}
	delete(t.byID, id)
	if t.perOwner[s.owner]--; t.perOwner[s.owner] <= 0 {
		delete(t.perOwner, s.owner)
	}
	return true
}

// Range calls f for a snapshot of the open sessions, without holding the
// table: f may take the session's own lock or remove it.
func (t *sessionTable) Range(f func(*Session) bool) {
	t.mu.Lock()
	all := make([]*Session, 0, len(t.byID))
	for _, s := range t.byID {
		all = append(all, s)
	}
	t.mu.Unlock()
	for _, s := range all {
		if !f(s) {
			return
		}
	}
}

// Len is the number of open sessions.
func (t *sessionTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// expireIdle closes the sessions with no client request since cutoff,
// also those with an open GET stream: a stream alone (keepalives included)
// does not keep a session alive, or abandoned streams would hold sessions
// forever.
func (g *Gateway) expireIdle(cutoff time.Time) int {
	n := 0
	g.sessions.Range(func(s *Session) bool {
		if s.lastUsed.Load() < cutoff.UnixNano() && g.sessions.Delete(s.id, s) {
			s.close()
			n++
		}
		return true
	})
	return n
}

// sessionIdleTimeout is limits.session_idle_timeout.
func (g *Gateway) sessionIdleTimeout() time.Duration {
	return cmp.Or(g.conf().Limits.SessionIdleTimeout, config.DefaultSessionIdleTimeout)
}
