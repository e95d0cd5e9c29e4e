package proxy

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// resultCache holds tools/call results, bounded in bytes, evicting the
// least recently used. An entry outlives its TTL by its stale window, so an
// expired answer can still be served (marked stale) while its server is
// down.
type resultCache struct {
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex
	lru   *list.List // front: most recently used; values are *cacheEntry
	items map[string]*list.Element
	bytes int64

	hits, misses, stale, evictions atomic.Int64

	// shared, when set (redis.addr), holds the entries instead of this
	// process (shared.go); sharedErrors counts its failures.
	shared       sharedCache
	sharedErrors atomic.Int64
}

type cacheEntry struct {
	key    string
	result json.RawMessage
	stored time.Time
	ttl    time.Duration
	stale  time.Duration // how long past ttl it may still be served stale
}

func (e *cacheEntry) size() int64 { return entrySize(e.key, e.result) }

func entrySize(key string, result json.RawMessage) int64 { return int64(len(key) + len(result) + 64) }

// fits reports whether a result may be cached, in this process or in
// Redis alike: one larger than a quarter of cache.max_bytes is not.
func (rc *resultCache) fits(key string, result json.RawMessage) bool {
	return entrySize(key, result) <= rc.maxBytes/4
}

func newResultCache(maxBytes int64, now func() time.Time) *resultCache {
	if now == nil {
		now = time.Now
	}
	return &resultCache{maxBytes: maxBytes, now: now, lru: list.New(), items: map[string]*list.Element{}}
}

// get returns the entry's result and age when it is fresh (or, with stale
// true, within its stale window); ok false otherwise.
func (rc *resultCache) get(key string, stale bool) (result json.RawMessage, age time.Duration, ok bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	el := rc.items[key]
	if el == nil {
		return nil, 0, false
	}
	e := el.Value.(*cacheEntry)
	age = rc.now().Sub(e.stored)
	switch {
	case age < e.ttl:
	case stale && age < e.ttl+e.stale:
	default:
		if age >= e.ttl+e.stale {
			rc.removeLocked(el)
		}
		return nil, 0, false
	}
	rc.lru.MoveToFront(el)
	return e.result, age, true
}

// put stores a result, unless it does not fit.
func (rc *resultCache) put(key string, result json.RawMessage, ttl, stale time.Duration) {
	if !rc.fits(key, result) {
		return
	}
	e := &cacheEntry{key: key, result: bytes.Clone(result), stored: rc.now(), ttl: ttl, stale: stale}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if el := rc.items[key]; el != nil {
		rc.removeLocked(el)
	}
	rc.items[key] = rc.lru.PushFront(e)
	rc.bytes += e.size()
	for rc.bytes > rc.maxBytes {
		rc.removeLocked(rc.lru.Back())
		rc.evictions.Add(1)
	}
}

func (rc *resultCache) removeLocked(el *list.Element) {
	e := rc.lru.Remove(el).(*cacheEntry)
	delete(rc.items, e.key)
	rc.bytes -= e.size()
}

// usage is the bytes and entries held.
func (rc *resultCache) usage() (bytes int64, entries int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.bytes, len(rc.items)
}

// canonicalJSON re-encodes a JSON value with object keys sorted and
// insignificant whitespace removed, numbers kept as written, so that the
// same arguments spelled differently share a key.
func canonicalJSON(raw json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("null"), nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v) // maps marshal with sorted keys
}

// MetaCache is the result _meta key that marks an answer served from the
// cache: {"ageMs": <age>, "stale": <past its TTL>}.
const MetaCache = "mcptrail.dev/cache"

// cachePolicy is the cache setting of this call's tool on b, nil when the
// call is not cached: not a tools/call, the tool did not opt in, or it is
// not annotated read-only and not forced.
func (c *call) cachePolicy(b *Backend) *config.ToolCache {
	if c.msg.Method != "tools/call" || c.g.cache == nil {
		return nil
	}
	tool, _ := c.params.GetString("name")
	t, ok := b.cfg.Tools[tool]
	if !ok || t.Cache == nil {
		return nil
	}
	if !t.Cache.Force && !c.readOnly() {
		return nil
	}
	return t.Cache
}

// cacheKey is the authorization context (the principal, or "public"), the
// server, the tool and the canonical arguments; "" when the arguments are
// not JSON.
func (c *call) cacheKey(b *Backend, cc *config.ToolCache) string {
	args, err := canonicalJSON(c.params.Get("arguments"))
	if err != nil {
		return ""
	}
	scope := cc.Scope
	if scope == "" {
		scope = "private"
		if h := b.listHints[listTools].Load(); h != nil {
			scope = h.scope
		}
	}
	who := "public"
	if scope != "public" {
		who = "p:" + c.princ.OwnerKey()
	}
	tool, _ := c.params.GetString("name")
	return who + "\x00" + b.Name() + "\x00" + tool + "\x00" + string(args)
}

// cacheTTL is the tool's ttl, else the server's ttlMs hint, else 60s.
func cacheTTL(b *Backend, cc *config.ToolCache) time.Duration {
	if cc.TTL > 0 {
		return cc.TTL
	}
	if h := b.listHints[listTools].Load(); h != nil && h.ttlMs > 0 {
		return time.Duration(h.ttlMs) * time.Millisecond
	}
	return config.DefaultCacheTTL
}

// forwardCached serves a cached tool: a fresh entry answers at once;
// otherwise identical calls in flight share one upstream call, whose
// successful answer is kept; when that fails and the tool allows it, an
// expired entry is served marked stale.
func (c *call) forwardCached(ctx context.Context, b *Backend, cc *config.ToolCache) jsonrpc.Message {
	g := c.g
	key := c.cacheKey(b, cc)
	if key == "" {
		return c.forwardChain(ctx, b)
	}
	if res, age, ok := c.cacheLookup(ctx, key, false); ok {
		g.cache.hits.Add(1)
		return c.cachedAnswer(b, res, age, false)
	}
	leader := false
	v, _, _ := g.flight.Do(key, func() (any, error) {
		leader = true
		g.cache.misses.Add(1) // a call that shares another's counts as a hit
		out := c.forwardChain(ctx, b)
		if out.Error == nil && c.outcome == recorder.OutcomeOK {
			c.cacheStore(ctx, key, out.Result, cacheTTL(b, cc), cc.ServeStale)
		}
		return out, nil
	})
	out := v.(jsonrpc.Message)
	if !leader {
		if out.Error == nil && !isToolError(out.Result) {
			g.cache.hits.Add(1)
			return c.cachedAnswer(b, out.Result, 0, false)
		}
		out = c.forwardChain(ctx, b) // the shared call failed: try on our own
	}
	if cc.ServeStale > 0 && ctx.Err() == nil {
		switch c.upFail {
		case upUnavailable, upTransport, upTimeout, upCircuitOpen:
			if res, age, ok := c.cacheLookup(ctx, key, true); ok {
				g.cache.stale.Add(1)
				return c.cachedAnswer(b, res, age, true)
			}
		}
	}
	return out
}

// cachedAnswer answers with a cached result, marked in _meta with its age
// (and stale when past its TTL), recorded as cached or stale.
func (c *call) cachedAnswer(b *Backend, res json.RawMessage, age time.Duration, stale bool) jsonrpc.Message {
	c.server = b.Name()
	c.outcome, c.errCode, c.errMsg = recorder.OutcomeOK, 0, ""
	how := "cached"
	if stale {
		how = "stale"
	}
	attrs := c.attrs[:0:0]
	for _, a := range c.attrs {
		if a.Key != AttrResilience {
			attrs = append(attrs, a)
		}
	}
	c.attrs = append(attrs, recorder.Attr{Key: AttrResilience, Value: how})
	o, err := jsonrpc.ParseObject(res)
	if err != nil {
		return jsonrpc.NewResult(c.msg.ID, res)
	}
	meta, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil || meta == nil {
		meta = &jsonrpc.Object{}
	}
	meta.Set(MetaCache, fmt.Appendf(nil, `{"ageMs":%d,"stale":%t}`, age.Milliseconds(), stale))
	o.Set("_meta", meta.Marshal())
	return jsonrpc.NewResult(c.msg.ID, o.Marshal())
}
