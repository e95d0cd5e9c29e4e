package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
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
	// SubscribeAnswers calls subscribed at every (re)subscription: what
	// was published before it may have been missed.
	SubscribeAnswers(ctx context.Context, subscribed func(), f func([]byte))
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

// allowShared is allow with the buckets in Redis: the same specs, taken in
// one atomic step by every replica. Bucket keys share the principal's hash
// tag so both live on one Redis Cluster slot.
func (l *rateLimits) allowShared(ctx context.Context, principal, tool string) (rule string, retry time.Duration, err error) {
	var bs [2]redisstate.Bucket
	var rules [2]string
	n := 0
	tag := sharedBucketTag(principal)
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
			bs[n], rules[n] = redisstate.Bucket{Key: tag + ":" + nameHash(tool), Rate: float64(sp.limit), Burst: sp.burst}, RuleRateTool
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

// sharedBucketTag is the Redis key of a principal's bucket, and the hash
// tag of its tool buckets: "{<hash of the principal>}". Principal and tool
// names are the client's or a backend's to choose, braces and colons
// included; their fixed-length hashes make every (principal, tool) pair's
// key its own.
func sharedBucketTag(principal string) string { return "{" + nameHash(principal) + "}" }

// nameHash is a name's sha256, hex: 64 characters of [0-9a-f].
func nameHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
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
	if !rc.fits(key, result) {
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
// session matches; a revocation sent again later (after a Redis outage)
// names sessions by their public handles instead (Handles).
type relayedMsg struct {
	Session string          `json:"s"`
	Msg     json.RawMessage `json:"m,omitempty"`
	Revoke  bool            `json:"r,omitempty"`
	Handles []string        `json:"h,omitempty"`
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
	if r.Revoke && len(r.Handles) > 0 {
		handles := make(map[string]bool, len(r.Handles))
		for _, h := range r.Handles {
			handles[h] = true
		}
		g.dropRevoked(func(s *Session) (bool, error) { return handles[s.recID], nil })
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
		g.sealed.outbox.add(sess.recID, sess.sealedTo)
		g.logger.Warn("DELETEd session not revoked on the other replicas yet: sent again once Redis answers",
			"request_id", reqID, "session_id", sess.recID, "expires", sess.sealedTo, "err", err)
		return
	}
	b, _ := json.Marshal(relayedMsg{Session: sess.id, Revoke: true})
	if err := g.shared.PublishAnswer(ctx, b); err != nil {
		g.sealed.outbox.add(sess.recID, sess.sealedTo)
		g.logger.Warn("DELETEd session not ended on the replicas holding it yet: sent again once Redis answers", "request_id", reqID, "session_id", sess.recID, "err", err)
	}
}

// revocationRetryInterval is how often revocations Redis did not take are
// sent again (a variable for tests).
var revocationRetryInterval = time.Second

// revocationBatch bounds the handles of one relayed revocation message.
const revocationBatch = 500

// revocationOutbox holds the revocations to write to Redis and announce
// to the replicas again: DELETEs made while Redis did not answer, and,
// after every (re)subscription, all of this replica's (Redis may have
// lost them, and a replica holding one may have missed its message). It
// holds a subset of the replica's revocations, so it is bounded like them.
type revocationOutbox struct {
	mu sync.Mutex
	m  map[string]time.Time // handle → sealed expiry
}

func (o *revocationOutbox) add(handle string, until time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]time.Time{}
	}
	o.m[handle] = until
}

// take empties the outbox and returns what it held.
func (o *revocationOutbox) take() map[string]time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.m
	o.m = nil
	return m
}

// shareRevocations keeps Redis and the other replicas told of this
// replica's revocations until ctx ends: every revocationRetryInterval it
// sends what the outbox holds; at every (re)subscription (resubscribed)
// it sends all of them again and drops the sessions it holds that Redis
// says were revoked, whose messages it may have missed while
// disconnected.
func (g *Gateway) shareRevocations(ctx context.Context, resubscribed <-chan struct{}) {
	tick := time.NewTicker(revocationRetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.sendRevocations(ctx)
		case <-resubscribed:
			now := g.sealed.now()
			for _, r := range g.sealed.revoked.snapshot(now) {
				g.sealed.outbox.add(hex.EncodeToString(r.handle[:]), r.until)
			}
			g.sendRevocations(ctx)
			g.dropRevoked(func(s *Session) (bool, error) {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				return g.shared.Revoked(rctx, s.recID)
			})
		}
	}
}

// sendRevocations writes the outbox's revocations to Redis and announces
// them, in batches; what Redis does not take goes back into the outbox.
func (g *Gateway) sendRevocations(ctx context.Context) {
	pending := g.sealed.outbox.take()
	if len(pending) == 0 {
		return
	}
	now := g.sealed.now()
	batch := make([]string, 0, revocationBatch)
	var failed error
	flush := func() {
		if len(batch) == 0 || failed != nil {
			return
		}
		b, _ := json.Marshal(relayedMsg{Revoke: true, Handles: batch})
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if failed = g.shared.PublishAnswer(pctx, b); failed == nil {
			for _, h := range batch {
				delete(pending, h)
			}
		}
		batch = batch[:0]
	}
	for h, until := range pending {
		if failed != nil {
			break
		}
		if !now.Before(until) {
			delete(pending, h) // expired: nothing left to revoke
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		failed = g.shared.Revoke(rctx, h, until)
		cancel()
		if failed == nil {
			if batch = append(batch, h); len(batch) == revocationBatch {
				flush()
			}
		}
	}
	flush()
	for h, until := range pending {
		g.sealed.outbox.add(h, until)
	}
	if failed != nil {
		g.logger.Warn("revocations not sent to Redis yet: sent again in a moment", "revocations", len(pending), "err", failed)
	}
}

// dropRevoked ends the sealed sessions this replica holds that revoked
// says another replica DELETEd; it stops at revoked's first error.
func (g *Gateway) dropRevoked(revoked func(*Session) (bool, error)) {
	g.sessions.Range(func(s *Session) bool {
		if s.sealedTo.IsZero() {
			return true
		}
		yes, err := revoked(s)
		if err != nil {
			g.logger.Warn("could not check the held sessions against Redis's revocations", "err", err)
			return false
		}
		if yes && g.sessions.Delete(s.id, s) {
			g.sealed.revoke(s)
			s.close()
			g.logger.Info("sealed session ended: DELETEd on another replica", "session_id", s.recID)
		}
		return true
	})
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
