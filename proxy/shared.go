package proxy

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/redisstate"
)

// Shared state (redis.addr): the rate-limit buckets and the result cache
// live in Redis, so N replicas enforce one limit and share one cache. The
// gateway uses Redis through these two interfaces (redisstate.Store
// implements both).

// sharedBuckets takes one token from each bucket, all or none, atomically
// across replicas; refused is the index of an empty bucket, or -1.
type sharedBuckets interface {
	Take(ctx context.Context, buckets []redisstate.Bucket) (refused int, retry time.Duration, err error)
}

// sharedCache stores cached results for every replica. A Get error is a
// miss to the caller; a Put error leaves the result uncached.
type sharedCache interface {
	CacheGet(ctx context.Context, key string) (redisstate.CacheEntry, bool, error)
	CachePut(ctx context.Context, key string, e redisstate.CacheEntry) error
}

// answerRelay carries a client's answer to a server→client request to the
// replica that sent the request: with sealed sessions and no sticky load
// balancing, the client's POST with the answer may reach any replica.
type answerRelay interface {
	PublishAnswer(ctx context.Context, payload []byte) error
	SubscribeAnswers(ctx context.Context, ready chan<- struct{}, f func([]byte))
}

// sessionRevocations ends a DELETEd sealed session on every replica.
type sessionRevocations interface {
	Revoke(ctx context.Context, handle string, until time.Time) error
	Revoked(ctx context.Context, handle string) (bool, error)
}

// sharedStore is what New builds from redis.*.
type sharedStore interface {
	sharedBuckets
	sharedCache
	answerRelay
	sessionRevocations
	io.Closer
}

var _ sharedStore = (*redisstate.Store)(nil)

func newSharedStore(r config.Redis) sharedStore {
	if !r.Enabled() {
		return nil
	}
	return redisstate.New(redisstate.Options{
		Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB,
		Prefix: r.Prefix, Timeout: r.Timeout,
	})
}

// RuleRateUnavailable is the rule of a call refused because the shared
// rate limits could not be checked (Redis down, redis.rate_limit_fail_open
// false); limitRateUnavailable is its limit name.
const (
	RuleRateUnavailable  = "rate:unavailable"
	limitRateUnavailable = "rate_shared_unavailable"
)

// allowShared is allow with the buckets in Redis: the same specs and keys,
// taken in one atomic step by every replica. Bucket keys share the
// principal as hash tag so both live on one Redis Cluster slot.
func (l *rateLimits) allowShared(ctx context.Context, principal, tool string) (rule string, retry time.Duration, err error) {
	var bs [2]redisstate.Bucket
	var rules [2]string
	n := 0
	tag := "{" + principal + "}"
	if l.hasPrincipal {
		bs[n], rules[n] = redisstate.Bucket{Key: tag, Rate: float64(l.principal.limit), Burst: l.principal.burst}, RuleRatePrincipal
		n++
	}
	if tool != "" {
		sp, has := l.perTool[tool]
		if !has {
			sp, has = l.tool, l.hasTool
		}
		if has {
			bs[n], rules[n] = redisstate.Bucket{Key: tag + ":" + tool, Rate: float64(sp.limit), Burst: sp.burst}, RuleRateTool
			n++
		}
	}
	if n == 0 {
		return "", 0, nil
	}
	i, retry, err := l.shared.Take(ctx, bs[:n])
	if err != nil || i < 0 {
		return "", 0, err
	}
	return rules[i], retry, nil
}

// cacheLookup is resultCache.get, from Redis when it is shared.
func (c *call) cacheLookup(ctx context.Context, key string, stale bool) (json.RawMessage, time.Duration, bool) {
	rc := c.g.cache
	if rc.shared == nil {
		return rc.get(key, stale)
	}
	e, ok, err := rc.shared.CacheGet(ctx, key)
	if err != nil {
		rc.sharedErrors.Add(1)
		c.g.logger.Warn("shared cache unavailable: served as a miss", "request_id", c.reqID, "err", err)
		return nil, 0, false
	}
	if !ok {
		return nil, 0, false
	}
	age := max(rc.now().Sub(e.Stored), 0)
	if age < e.TTL || stale && age < e.TTL+e.Stale {
		return e.Result, age, true
	}
	return nil, 0, false
}

// cacheStore is resultCache.put, into Redis when it is shared.
func (c *call) cacheStore(ctx context.Context, key string, result json.RawMessage, ttl, stale time.Duration) {
	rc := c.g.cache
	if rc.shared == nil {
		rc.put(key, result, ttl, stale)
		return
	}
	e := redisstate.CacheEntry{Result: result, Stored: rc.now(), TTL: ttl, Stale: stale}
	if err := rc.shared.CachePut(context.WithoutCancel(ctx), key, e); err != nil {
		rc.sharedErrors.Add(1)
		c.g.logger.Warn("shared cache unavailable: answer not cached", "request_id", c.reqID, "err", err)
	}
}

// relayedMsg is what replicas tell each other on the answers channel: a
// client's answer (Msg) for the session, or (Revoke) that the session was
// DELETEd. Session is the sealed token, which only a replica holding the
// session matches.
type relayedMsg struct {
	Session string          `json:"s"`
	Msg     json.RawMessage `json:"m,omitempty"`
	Revoke  bool            `json:"r,omitempty"`
}

// relayAnswer publishes a client's answer that no server request of this
// replica waits for, when sessions are sealed and Redis is shared; false
// when it was not relayed.
func (g *Gateway) relayAnswer(sess *Session, msg jsonrpc.Message) bool {
	if g.shared == nil || g.sealed == nil || sess.sealedTo.IsZero() {
		return false
	}
	b, _ := json.Marshal(relayedMsg{Session: sess.id, Msg: msg.Marshal()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.shared.PublishAnswer(ctx, b); err != nil {
		g.logger.Warn("answer to a server request of another replica not relayed", "session_id", sess.recID, "err", err)
		return false
	}
	return true
}

// relayedAnswer delivers an answer another replica relayed, when this
// replica holds its session and a server request waits for it.
func (g *Gateway) relayedAnswer(payload []byte) {
	var r relayedMsg
	if json.Unmarshal(payload, &r) != nil {
		return
	}
	sess, ok := g.sessions.Load(r.Session)
	if !ok {
		return
	}
	if r.Revoke {
		if g.sessions.Delete(r.Session, sess) {
			g.sealed.revoke(sess)
			sess.close()
			g.logger.Info("sealed session ended: DELETEd on another replica", "session_id", sess.recID)
		}
		return
	}
	m, err := jsonrpc.Decode(r.Msg)
	if err != nil || m.Kind() != jsonrpc.KindResponse {
		return
	}
	if sess.deliver(m) {
		g.logger.Debug("answer relayed from another replica delivered", "session_id", sess.recID)
	}
}

// revokeShared ends a DELETEd sealed session on the other replicas: those
// holding it drop it now (pub/sub), those that would rebuild it later find
// its handle revoked in Redis until its sealed expiry.
func (g *Gateway) revokeShared(sess *Session, reqID string) {
	if g.shared == nil || sess.sealedTo.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.shared.Revoke(ctx, sess.recID, sess.sealedTo); err != nil {
		g.logger.Warn("DELETEd session not revoked on the other replicas: its id stays valid there until it expires",
			"request_id", reqID, "session_id", sess.recID, "expires", sess.sealedTo, "err", err)
		return
	}
	b, _ := json.Marshal(relayedMsg{Session: sess.id, Revoke: true})
	if err := g.shared.PublishAnswer(ctx, b); err != nil {
		g.logger.Warn("DELETEd session not ended on the replicas holding it", "request_id", reqID, "session_id", sess.recID, "err", err)
	}
}

// revokedShared reports whether another replica revoked the session with
// this handle. When Redis does not answer, the session counts as revoked
// (the client gets 404 and re-initializes here) unless
// redis.revocation_fail_open: a DELETEd id must not come back because
// Redis is down.
func (g *Gateway) revokedShared(handle, reqID string) bool {
	if g.shared == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	revoked, err := g.shared.Revoked(ctx, handle)
	if err != nil {
		failOpen := g.conf().Redis.RevocationFailOpen
		msg := "could not check whether the session was DELETEd on another replica: refused as unknown (redis.revocation_fail_open false)"
		if failOpen {
			msg = "could not check whether the session was DELETEd on another replica: served (redis.revocation_fail_open)"
		}
		g.logger.Warn(msg, "request_id", reqID, "session_id", handle, "err", err)
		return !failOpen
	}
	return revoked
}
