package redisstate_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/redisstate"
	"github.com/mcptrail/mcptrail/proxy/redisstate/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t testing.TB, addr string) *redisstate.Store {
	return storeWithPrefix(t, addr, fmt.Sprintf("t%d:", time.Now().UnixNano()))
}

func storeWithPrefix(t testing.TB, addr, prefix string) *redisstate.Store {
	s := redisstate.New(redisstate.Options{Addr: addr, Prefix: prefix, Timeout: time.Second})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestTakeExactAcrossClients: 40 concurrent takes from two clients (two
// replicas) on a bucket of burst 7 and a negligible refill let exactly 7
// through; a call refused by its second bucket takes nothing from the
// first.
func TestTakeExactAcrossClients(t *testing.T) {
	r := redistest.Start(t)
	s1, s2 := storeWithPrefix(t, r.Addr, "d1:"), storeWithPrefix(t, r.Addr, "d1:")
	ctx := context.Background()
	b := []redisstate.Bucket{{Key: "{alice}", Rate: 1.0 / 3600, Burst: 7}}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s1
			if i%2 == 1 {
				st = s2
			}
			i, retry, err := st.Take(ctx, b)
			if err != nil {
				t.Error(err)
				return
			}
			if i < 0 {
				ok.Add(1)
			} else if retry <= 0 {
				t.Errorf("refused with retry %v, want > 0", retry)
			}
		}()
	}
	wg.Wait()
	if got := ok.Load(); got != 7 {
		t.Errorf("takes that got a token = %d, want 7", got)
	}

	// All or none: the tool bucket (burst 1) refuses the second call,
	// which must leave the principal bucket (burst 3) with 2 tokens.
	two := []redisstate.Bucket{{Key: "{bob}", Rate: 1.0 / 3600, Burst: 3}, {Key: "{bob}:t", Rate: 1.0 / 3600, Burst: 1}}
	one := two[:1]
	for i, want := range []int{-1, 1} {
		if got, _, err := s1.Take(ctx, two); err != nil || got != want {
			t.Fatalf("take %d of both = %d, %v; want %d", i, got, err, want)
		}
	}
	for i, want := range []int{-1, -1, 0} {
		if got, _, err := s1.Take(ctx, one); err != nil || got != want {
			t.Fatalf("take %d of the principal's = %d, %v; want %d (refused calls took nothing)", i, got, err, want)
		}
	}
}

// TestTakeRefills: a bucket refills at its rate. The clock is the test's
// (Options.Now), so a loaded machine cannot refill the bucket between two
// takes. Fails before the fix (flaky): the second take got a token when
// more than 20ms passed between the two.
func TestTakeRefills(t *testing.T) {
	r := redistest.Start(t)
	var clock atomic.Int64
	clock.Store(time.Unix(1_800_000_000, 0).UnixNano())
	s := redisstate.New(redisstate.Options{Addr: r.Addr, Prefix: fmt.Sprintf("t%d:", time.Now().UnixNano()), Timeout: time.Second,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	b := []redisstate.Bucket{{Key: "{carol}", Rate: 50, Burst: 1}} // a token every 20ms
	near := func(got, want time.Duration) bool { return got > want-time.Millisecond && got < want+time.Millisecond }
	for _, step := range []struct {
		advance   time.Duration
		wantTaken bool
		wantRetry time.Duration
	}{
		{0, true, 0},
		{0, false, 20 * time.Millisecond},
		{15 * time.Millisecond, false, 5 * time.Millisecond},
		{6 * time.Millisecond, true, 0}, // a hair past 20ms: times are float seconds
		{time.Hour, true, 0},
		{0, false, 20 * time.Millisecond},
	} {
		clock.Add(int64(step.advance))
		i, retry, err := s.Take(ctx, b)
		if err != nil || (i == -1) != step.wantTaken || !near(retry, step.wantRetry) && step.wantRetry != 0 || step.wantRetry == 0 && retry != 0 {
			t.Fatalf("after +%v: Take = %d, %v, %v; want taken %v, retry %v", step.advance, i, retry, err, step.wantTaken, step.wantRetry)
		}
	}
}

func TestCache(t *testing.T) {
	r := redistest.Start(t)
	s := newStore(t, r.Addr)
	ctx := context.Background()
	if _, ok, err := s.CacheGet(ctx, "k"); ok || err != nil {
		t.Fatalf("empty cache: %v %v", ok, err)
	}
	now := time.Unix(1_800_000_000, 123)
	in := redisstate.CacheEntry{Result: []byte(`{"content":[]}`), Stored: now, TTL: time.Minute, Stale: time.Hour}
	if err := s.CachePut(ctx, "p:alice\x00alpha\x00now\x00{}", in); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.CacheGet(ctx, "p:alice\x00alpha\x00now\x00{}")
	if err != nil || !ok || string(got.Result) != string(in.Result) || !got.Stored.Equal(now) || got.TTL != in.TTL || got.Stale != in.Stale {
		t.Fatalf("CacheGet = %+v %v %v, want %+v", got, ok, err, in)
	}
	if _, ok, _ := s.CacheGet(ctx, "p:bob\x00alpha\x00now\x00{}"); ok {
		t.Error("another key hit")
	}
	// Entries leave Redis after TTL + stale.
	if err := s.CachePut(ctx, "short", redisstate.CacheEntry{Result: []byte("x"), Stored: now, TTL: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, _ := s.CacheGet(ctx, "short"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry outlived its TTL in Redis")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Kill()
	if _, _, err := s.CacheGet(ctx, "k"); err == nil {
		t.Error("CacheGet with Redis down: nil error")
	}
	if _, _, err := s.Take(ctx, []redisstate.Bucket{{Key: "{x}", Rate: 1, Burst: 1}}); err == nil {
		t.Error("Take with Redis down: nil error")
	}
}

// BenchmarkTake is what a rate-limited call pays for shared buckets: one
// EVALSHA of two buckets against a local redis-server (loopback).
func BenchmarkTake(b *testing.B) {
	r := redistest.Start(b)
	s := newStore(b, r.Addr)
	ctx := context.Background()
	bk := []redisstate.Bucket{{Key: "{bench}", Rate: 1e9, Burst: 1 << 30}, {Key: "{bench}:alpha.echo", Rate: 1e9, Burst: 1 << 30}}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		i, _, err := s.Take(ctx, bk)
		if err != nil {
			b.Fatal(err)
		}
		if i < 0 {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no token taken")
	}
}

// BenchmarkCacheGet is what a cached call pays for a shared cache hit of a
// 1 KB result.
func BenchmarkCacheGet(b *testing.B) {
	r := redistest.Start(b)
	s := newStore(b, r.Addr)
	ctx := context.Background()
	res := make([]byte, 1024)
	if err := s.CachePut(ctx, "k", redisstate.CacheEntry{Result: res, Stored: time.Now(), TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		e, ok, err := s.CacheGet(ctx, "k")
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		n += len(e.Result)
	}
	if n == 0 {
		b.Fatal("nothing read")
	}
}
