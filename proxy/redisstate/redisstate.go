// Package redisstate keeps the state gateway replicas share in Redis (or
// Valkey): the rate-limit token buckets and the result cache.
//
// The client is github.com/redis/go-redis/v9, the Redis project's own Go
// client: maintained with the server, RESP2/3, connection pooling with
// per-command timeouts, and EVALSHA with a fallback to EVAL (Script).
//
// Rate limits are token buckets kept as Redis hashes and taken by one Lua
// script, so a check of several buckets (a principal's and the principal ×
// tool's) is one atomic step across every replica, timed by the Redis
// server's clock (TIME) rather than by each replica's.
package redisstate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Store.
type Options struct {
	Addr               string
	Username, Password string
	DB                 int
	// Prefix starts every key ("mcptrail:").
	Prefix string
	// Timeout bounds dialing and each command. Default DefaultTimeout.
	Timeout time.Duration
	// Now, when set, is the clock of the rate-limit buckets, sent with
	// each take. nil (the default): the Redis server's TIME, one clock for
	// every replica. Tests set it so that no bucket refills while the
	// machine is slow.
	Now func() time.Time
}

// DefaultTimeout is Options.Timeout's default, and redis.timeout's: a call
// waits on Redis, so briefly.
const DefaultTimeout = 250 * time.Millisecond

// Store is the shared state of a deployment's replicas.
type Store struct {
	rdb    *redis.Client
	prefix string
	now    func() time.Time
}

// New returns a Store; it does not connect until first used.
func New(o Options) *Store {
	t := o.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: t, ReadTimeout: t, WriteTimeout: t,
		// A call waits on Redis: one retry at most, so a dead server
		// costs a call about two timeouts, not the client's default three
		// retries with backoff.
		MaxRetries:      1,
		DisableIdentity: true, // no CLIENT SETINFO (Valkey and older Redis refuse it)
	})
	return &Store{rdb: rdb, prefix: o.Prefix, now: o.Now}
}

// Close closes the connections.
func (s *Store) Close() error { return s.rdb.Close() }

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Bucket is one token bucket: a name, its rate and its burst.
type Bucket struct {
	Key   string  // unique within the deployment; the Store prefixes it
	Rate  float64 // tokens per second, > 0
	Burst int     // capacity, >= 1
}

// takeScript takes one token from every bucket in KEYS, or from none when
// one of them has less than one. ARGV holds each bucket's rate and burst,
// then the time in seconds, or "" for the server's TIME.
// It answers {0, "0"} when taken, else {i, seconds} for the first bucket
// i (1-based) that refused and how long until it has a token. A bucket's
// hash expires once it would be full again, so idle buckets cost nothing.
var takeScript = redis.NewScript(`
local now = tonumber(ARGV[2*#KEYS+1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tokens = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2*i-1])
  local burst = tonumber(ARGV[2*i])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tk = tonumber(v[1])
  local ts = tonumber(v[2])
  if tk == nil or ts == nil then
    tk = burst
    ts = now
  end
  if now > ts then
    tk = math.min(burst, tk + (now - ts) * rate)
  end
  if tk < 1 then
    return {i, tostring((1 - tk) / rate)}
  end
  tokens[i] = tk
end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2*i-1])
  local burst = tonumber(ARGV[2*i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {0, '0'}
`)

// Take takes one token from every bucket, atomically: all or none. When
// one is empty, refused is its index in buckets and retry the time until it
// has a token again. Buckets of one call must share a hash tag in their
// Key ("{tag}...") to live on one Redis Cluster slot.
func (s *Store) Take(ctx context.Context, buckets []Bucket) (refused int, retry time.Duration, err error) {
	keys := make([]string, len(buckets))
	args := make([]any, 0, 2*len(buckets)+1)
	for i, b := range buckets {
		keys[i] = s.prefix + "rl:" + b.Key
		args = append(args, strconv.FormatFloat(b.Rate, 'g', -1, 64), b.Burst)
	}
	now := ""
	if s.now != nil {
		now = strconv.FormatFloat(float64(s.now().UnixMicro())/1e6, 'f', 6, 64)
	}
	args = append(args, now)
	res, err := takeScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return -1, 0, fmt.Errorf("redis rate-limit script: %w", err)
	}
	if len(res) != 2 {
		return -1, 0, fmt.Errorf("redis rate-limit script: unexpected answer %v", res)
	}
	i, _ := res[0].(int64)
	if i == 0 {
		return -1, 0, nil
	}
	secs, _ := res[1].(string)
	f, err := strconv.ParseFloat(secs, 64)
	if err != nil {
		return -1, 0, fmt.Errorf("redis rate-limit script: retry %q: %w", secs, err)
	}
	return int(i) - 1, time.Duration(f * float64(time.Second)), nil
}

// CacheEntry is a cached result with when it was stored and how long it
// is fresh and then servable stale.
type CacheEntry struct {
	Result     []byte
	Stored     time.Time
	TTL, Stale time.Duration
}

// cacheKey hashes the gateway's cache key (principal, tool, canonical
// arguments: long and possibly sensitive) into a fixed-size Redis key.
func (s *Store) cacheKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.prefix + "cache:" + hex.EncodeToString(sum[:])
}

const entryHeader = 24 // stored unix nanos, ttl nanos, stale nanos

// CacheGet returns the entry stored under key; ok false when there is
// none (Redis drops an entry once past its TTL and stale window).
func (s *Store) CacheGet(ctx context.Context, key string) (e CacheEntry, ok bool, err error) {
	b, err := s.rdb.Get(ctx, s.cacheKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return CacheEntry{}, false, nil
	}
	if err != nil {
		return CacheEntry{}, false, fmt.Errorf("redis cache get: %w", err)
	}
	if len(b) < entryHeader {
		return CacheEntry{}, false, nil
	}
	e.Stored = time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	e.TTL = time.Duration(binary.BigEndian.Uint64(b[8:]))
	e.Stale = time.Duration(binary.BigEndian.Uint64(b[16:]))
	e.Result = b[entryHeader:]
	return e, true, nil
}

// CachePut stores an entry under key until its TTL and stale window end.
func (s *Store) CachePut(ctx context.Context, key string, e CacheEntry) error {
	b := make([]byte, entryHeader, entryHeader+len(e.Result))
	binary.BigEndian.PutUint64(b, uint64(e.Stored.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(e.TTL))
	binary.BigEndian.PutUint64(b[16:], uint64(e.Stale))
	b = append(b, e.Result...)
	if err := s.rdb.Set(ctx, s.cacheKey(key), b, e.TTL+e.Stale).Err(); err != nil {
		return fmt.Errorf("redis cache set: %w", err)
	}
	return nil
}

// answersChannel carries client answers to server→client requests between
// replicas (see Publish).
const answersChannel = "answers"

// PublishAnswer hands payload to every replica subscribed with
// SubscribeAnswers (Redis pub/sub: at most once, to the replicas
// connected now).
func (s *Store) PublishAnswer(ctx context.Context, payload []byte) error {
	if err := s.rdb.Publish(ctx, s.prefix+answersChannel, payload).Err(); err != nil {
		return fmt.Errorf("redis publish: %w", err)
	}
	return nil
}

// SubscribeAnswers calls f with every payload published by any replica
// until ctx ends; it resubscribes after a Redis outage. subscribed (may be
// nil) is called each time the subscription is confirmed: at first, and
// after every reconnection, when what was published in between is lost.
func (s *Store) SubscribeAnswers(ctx context.Context, subscribed func(), f func([]byte)) {
	ps := s.rdb.Subscribe(ctx, s.prefix+answersChannel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" && subscribed != nil {
					subscribed()
				}
			case *redis.Message:
				f([]byte(m.Payload))
			}
		}
	}
}

// Revoke marks a session handle ended until its expiry, for every replica
// (Revoked).
func (s *Store) Revoke(ctx context.Context, handle string, until time.Time) error {
	if err := s.rdb.Set(ctx, s.prefix+"revoked:"+handle, "1", max(time.Until(until), time.Second)).Err(); err != nil {
		return fmt.Errorf("redis set revoked: %w", err)
	}
	return nil
}

// Revoked reports whether a replica revoked handle.
func (s *Store) Revoked(ctx context.Context, handle string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.prefix+"revoked:"+handle).Result()
	if err != nil {
		return false, fmt.Errorf("redis exists revoked: %w", err)
	}
	return n > 0, nil
}
