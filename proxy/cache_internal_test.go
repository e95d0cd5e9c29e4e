package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/redisstate"
)

func TestCanonicalJSON(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{`{"b":1,"a":[1,2]}`, `{ "a" : [1, 2], "b" : 1 }`},
		{`{"n":1.50}`, `{"n":1.50}`},
		{``, `null`},
		{`{"x":{"z":true,"y":null}}`, `{"x":{"y":null,"z":true}}`},
	} {
		ca, err1 := canonicalJSON(json.RawMessage(tt.a))
		cb, err2 := canonicalJSON(json.RawMessage(tt.b))
		if err1 != nil || err2 != nil || string(ca) != string(cb) {
			t.Errorf("canonicalJSON(%s) = %s, %v; canonicalJSON(%s) = %s, %v; want equal", tt.a, ca, err1, tt.b, cb, err2)
		}
	}
	if a, _ := canonicalJSON(json.RawMessage(`{"n":1.5}`)); string(a) == `{"n":1.50}` {
		t.Errorf("numbers were rewritten: %s", a)
	}
	if _, err := canonicalJSON(json.RawMessage(`{"a":`)); err == nil {
		t.Error("canonicalJSON accepted broken JSON")
	}
}

// TestResultCacheLRU: the cache stays within its bytes, evicting the least
// recently used; expired entries are served only when stale is asked for,
// within their stale window.
func TestResultCacheLRU(t *testing.T) {
	now := time.Unix(0, 0)
	rc := newResultCache(1000, func() time.Time { return now })
	val := json.RawMessage(make([]byte, 100))
	for i := range 5 {
		rc.put(fmt.Sprint("k", i), val, time.Minute, time.Hour)
	}
	if _, _, ok := rc.get("k0", false); !ok {
		t.Fatal("k0 missing before the cache is full")
	}
	for i := 5; i < 10; i++ {
		rc.put(fmt.Sprint("k", i), val, time.Minute, time.Hour)
	}
	if b, _ := rc.usage(); b > 1000 {
		t.Errorf("cache holds %d bytes, bound 1000", b)
	}
	if _, _, ok := rc.get("k0", false); !ok {
		t.Error("k0, used recently, was evicted")
	}
	if _, _, ok := rc.get("k1", false); ok {
		t.Error("k1, the least recently used, was not evicted")
	}
	if rc.evictions.Load() == 0 {
		t.Error("no eviction counted")
	}
	rc.put("big", make(json.RawMessage, 300), time.Minute, 0)
	if _, _, ok := rc.get("big", false); ok {
		t.Error("a result above a quarter of the cache was kept")
	}
	now = now.Add(2 * time.Minute)
	if _, _, ok := rc.get("k9", false); ok {
		t.Error("an expired entry was served fresh")
	}
	if _, age, ok := rc.get("k9", true); !ok || age != 2*time.Minute {
		t.Errorf("stale get = %v, %v; want served, aged 2m", age, ok)
	}
	now = now.Add(2 * time.Hour)
	if _, _, ok := rc.get("k9", true); ok {
		t.Error("an entry past its stale window was served")
	}
}

// BenchmarkCacheLookup is the cache's own part of a hit: canonical
// arguments, the key, the LRU lookup.
func BenchmarkCacheLookup(b *testing.B) {
	rc := newResultCache(64<<20, nil)
	args := json.RawMessage(`{"query":"select 1","limit":10,"filters":{"b":true,"a":"x"}}`)
	canon, _ := canonicalJSON(args)
	key := "p:alice\x00crm\x00search\x00" + string(canon)
	rc.put(key, json.RawMessage(`{"content":[{"type":"text","text":"result"}]}`), time.Hour, 0)
	b.ReportAllocs()
	for range b.N {
		c, _ := canonicalJSON(args)
		if _, _, ok := rc.get("p:alice\x00crm\x00search\x00"+string(c), false); !ok {
			b.Fatal("miss")
		}
	}
}

// fakeSharedCache is a sharedCache in memory.
type fakeSharedCache struct {
	mu   sync.Mutex
	puts map[string]redisstate.CacheEntry
}

func (f *fakeSharedCache) CacheGet(_ context.Context, key string) (redisstate.CacheEntry, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.puts[key]
	return e, ok, nil
}

func (f *fakeSharedCache) CachePut(_ context.Context, key string, e redisstate.CacheEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.puts == nil {
		f.puts = map[string]redisstate.CacheEntry{}
	}
	f.puts[key] = e
	return nil
}

// TestCacheEntryCapShared: the shared (Redis) cache keeps what the local
// one keeps and refuses what it refuses: a result larger than a quarter of
// cache.max_bytes. Fails before the fix: Redis stored it.
func TestCacheEntryCapShared(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int
		want bool
	}{
		{"small", 100, true},
		{"over a quarter of max_bytes", 300, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := testGateway(t)
			g.cache = newResultCache(1000, nil)
			local := &call{g: g, reqID: "r1"}
			local.cacheStore(context.Background(), "k", make(json.RawMessage, tt.size), time.Minute, 0)
			_, _, inLocal := g.cache.get("k", false)

			shared := &fakeSharedCache{}
			g.cache.shared = shared
			local.cacheStore(context.Background(), "k", make(json.RawMessage, tt.size), time.Minute, 0)
			_, inShared, _ := shared.CacheGet(context.Background(), "k")
			if inLocal != tt.want || inShared != tt.want {
				t.Errorf("a %d-byte result with max_bytes 1000: cached locally %v, in Redis %v; want %v for both", tt.size, inLocal, inShared, tt.want)
			}
		})
	}
}
