package proxy

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/sessionseal"
)

// Sealed sessions (sessions.keys_file): a 2025 session's id carries, sealed
// with the shared key, what another replica needs to serve it — the
// negotiated protocol version, the client's info and capabilities, its
// principal and its expiry (package sessionseal). A replica that gets an id
// it does not hold opens it, checks the principal, and rebuilds the session
// in memory; the backends' connections for the client's capability profile
// open lazily there, as after an initialize. What is per replica, and so
// lost with the replica that held it:
//
//   - an open GET stream (the client reconnects; another replica serves it)
//     and the messages queued on it;
//   - calls in flight there, and server→client requests (sampling,
//     elicitation, roots) waiting for the client: the client's POST carrying
//     the answer reaches another replica, which answers 202 and logs it;
//   - resources/subscribe subscriptions and logging/setLevel, which change
//     after initialize and are not in the id;
//   - without Redis, a DELETE: it ends the session on the replica that got
//     it and only there (its handle is kept until the sealed expiry, within
//     sessions.max_revoked: revocations.go);
//     elsewhere the id stays valid until then, to its own principal only.
//     With Redis the handle is revoked there for every replica.
type sealedSessions struct {
	keys *sessionseal.Keyring
	now  func() time.Time
	// lifetimeNs is sessions.lifetime in force; a reload may change it.
	lifetimeNs atomic.Int64

	revoked *revocations     // DELETEd handles, until their sealed expiry
	outbox  revocationOutbox // with Redis: revocations to send again (shared.go)

	resumed atomic.Int64 // sessions rebuilt from an id this replica did not hold
}

// newSealedSessions reads the session keys; nil when none are configured.
func newSealedSessions(c config.Sessions, now func() time.Time) (*sealedSessions, error) {
	if !c.Sealed() {
		return nil, nil
	}
	text, key := []byte(c.Keys), "sessions.keys"
	if c.KeysFile != "" {
		key = "sessions.keys_file"
		b, err := os.ReadFile(c.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", key, err)
		}
		text = b
	}
	k, err := sessionseal.ParseKeys(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if now == nil {
		now = time.Now
	}
	lifetime := c.Lifetime
	if lifetime <= 0 {
		lifetime = config.DefaultSessionLifetime
	}
	ss := &sealedSessions{keys: k, now: now,
		revoked: newRevocations(cmp.Or(c.MaxRevoked, config.DefaultMaxRevoked), cmp.Or(c.MaxRevokedPerPrincipal, config.DefaultMaxRevokedPerPrincipal))}
	ss.setLifetime(lifetime)
	return ss, nil
}

func (ss *sealedSessions) lifetime() time.Duration { return time.Duration(ss.lifetimeNs.Load()) }

// setLifetime applies sessions.lifetime (at start and on reload; 0: the
// default).
func (ss *sealedSessions) setLifetime(d time.Duration) {
	if ss == nil {
		return
	}
	ss.lifetimeNs.Store(int64(cmp.Or(d, config.DefaultSessionLifetime)))
}

// expiry is when a sealed session issued at issued with the sealed expiry
// sealed ends: sealed, or earlier when sessions.lifetime was lowered since
// (a reload or a restart), so that lowering it shortens the sessions
// issued already. Raising it extends none: the sealed expiry stays the
// bound, which is also how long a revocation is kept.
func (ss *sealedSessions) expiry(issued, sealed time.Time) time.Time {
	if end := issued.Add(ss.lifetime()); end.Before(sealed) {
		return end
	}
	return sealed
}

// sessionsRestartOnly is the part of sessions.* a reload cannot change:
// all but the lifetime.
func sessionsRestartOnly(c config.Sessions) config.Sessions {
	c.Lifetime = 0
	return c
}

// initParams are the parts of initialize's params a session keeps.
type initParams struct {
	ProtocolVersion string                     `json:"protocolVersion"`
	Capabilities    map[string]json.RawMessage `json:"capabilities"`
	ClientInfo      struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"clientInfo"`
}

// negotiatedVersion is the version the gateway answers a client asking for v.
func negotiatedVersion(v string) string {
	for _, cv := range clientVersions {
		if cv == v {
			return cv
		}
	}
	return latestLegacyVersion
}

// initSession makes the session of an initialize: sealed when session keys
// are configured and the params fit in an id, else held by this replica
// only. It fails, with an *errSessionLimit, when this replica remembers too
// many DELETEd sealed sessions (sessions.max_revoked*).
func (g *Gateway) initSession(msg jsonrpc.Message, p *auth.Principal, reqID string) (*Session, error) {
	ss := g.sealed
	if ss == nil {
		return g.newSession(newID(), p), nil
	}
	var ip initParams
	if json.Unmarshal(msg.Params, &ip) != nil {
		return g.newSession(newID(), p), nil // initialize refuses it
	}
	now := ss.now()
	if err := ss.revoked.admit(p.OwnerKey(), now); err != nil {
		return nil, err
	}
	version := negotiatedVersion(ip.ProtocolVersion)
	_, caps := profileOf(ip.Capabilities)
	st := &sessionseal.State{
		Owner: sessionseal.OwnerHash(p.OwnerKey()), Issued: now, Expires: now.Add(ss.lifetime()),
		ProtocolVersion: version, ClientName: ip.ClientInfo.Name, ClientVersion: ip.ClientInfo.Version, Caps: caps,
	}
	tok, err := ss.keys.Seal(st)
	if err != nil {
		g.logger.Warn("session not sealed: it is served by this replica only", "request_id", reqID, "err", err)
		return g.newSession(newID(), p), nil
	}
	s := g.newSession(tok, p)
	s.recID, s.sealedAt, s.sealedTo = st.HandleString(), st.Issued.Truncate(time.Second), st.Expires.Truncate(time.Second)
	s.setClient(version, ip.ClientInfo.Name, ip.ClientInfo.Version, ip.Capabilities)
	return s, nil
}

// resumeSession rebuilds, on this replica, the session a sealed id names.
// Every failure is answered like an unknown session (404: the client
// re-initializes); only another principal's id is also recorded, as for a
// held session.
func (g *Gateway) resumeSession(r *http.Request, id string, p *auth.Principal, reqID, method string) (*Session, bool) {
	ss := g.sealed
	if ss == nil {
		return nil, false
	}
	now := ss.now()
	st, err := ss.keys.Open(id, now)
	switch {
	case errors.Is(err, sessionseal.ErrExpired):
		g.logger.Info("sealed session expired", "request_id", reqID, "session_id", st.HandleString(), "expired", st.Expires)
		return nil, false
	case err == nil && !now.Before(ss.expiry(st.Issued, st.Expires)):
		g.logger.Info("sealed session expired: sessions.lifetime was lowered since it was issued", "request_id", reqID,
			"session_id", st.HandleString(), "issued", st.Issued, "lifetime", ss.lifetime())
		return nil, false
	case err != nil:
		if h, ok := sessionseal.Handle(id); ok {
			// Shaped like a sealed id, yet not one of ours: forged,
			// altered, or sealed with a retired key.
			g.logger.Warn("sealed session id refused", "request_id", reqID, "session_id", h, "err", err, "remote", r.RemoteAddr)
		}
		return nil, false
	}
	if !st.OwnedBy(p.OwnerKey()) {
		g.denySessionOwner(r, id, p, reqID, method)
		return nil, false
	}
	if ss.revoked.has(st.Handle) || g.revokedShared(st.HandleString(), reqID) {
		return nil, false
	}
	// Held here, it may be DELETEd here: a revocation to remember.
	if err := ss.revoked.admit(p.OwnerKey(), now); err != nil {
		var le *errSessionLimit
		if errors.As(err, &le) {
			g.metrics.limitRefusal(r.Context(), le.limit)
		}
		g.logger.Warn("sealed session not resumed", "request_id", reqID, "session_id", st.HandleString(), "err", err)
		return nil, false
	}
	var caps map[string]json.RawMessage
	if len(st.Caps) > 0 && json.Unmarshal(st.Caps, &caps) != nil {
		return nil, false
	}
	s := g.newSession(id, p)
	s.recID, s.sealedAt, s.sealedTo = st.HandleString(), st.Issued, st.Expires
	s.setClient(st.ProtocolVersion, st.ClientName, st.ClientVersion, caps)
	got, err := g.sessions.addOrGet(s, g.conf().Limits)
	if err != nil {
		g.logger.Warn("sealed session not resumed", "request_id", reqID, "session_id", s.recID, "err", err)
		return nil, false
	}
	if got == s {
		ss.resumed.Add(1)
		key, raw, _ := s.capabilityProfile()
		g.connectProfile(key, raw)
		g.logger.Info("sealed session resumed on this replica", "request_id", reqID, "session_id", s.recID,
			"client", st.ClientName, "protocol_version", st.ProtocolVersion)
	}
	got.touch()
	return got, true
}

// revoke remembers a DELETEd sealed session until its sealed expiry.
func (ss *sealedSessions) revoke(s *Session) {
	if ss == nil || s.sealedTo.IsZero() {
		return
	}
	now := ss.now()
	st, err := ss.keys.Open(s.id, now)
	if err != nil {
		return
	}
	ss.revoked.add(st.Handle, st.Expires, s.owner, now)
}

// recordedSessionID is how a client-given session id is recorded: a sealed
// id by its public handle, any other as given.
func recordedSessionID(id string) string { return sessionseal.Public(id) }
