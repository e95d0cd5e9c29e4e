package proxy

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestRevocations: entries live until their own expiry, whatever the
// order they were added in; the caps count live entries per owner and
// overall; an entry past its expiry is dropped at the next add or admit.
func TestRevocations(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	rv := newRevocations(3, 2)
	h := func(b byte) [16]byte { return [16]byte{b} }
	rv.add(h(1), t0.Add(3*time.Minute), "alice", t0)
	rv.add(h(2), t0.Add(time.Minute), "alice", t0)
	rv.add(h(2), t0.Add(time.Minute), "alice", t0) // twice: one entry
	rv.add(h(9), t0, "alice", t0)                  // expired already: not kept
	if err := rv.admit("alice", t0); !isLimit(err, limitRevokedPerPrincipal) {
		t.Errorf("admit(alice) with 2 of 2 = %v, want %s", err, limitRevokedPerPrincipal)
	}
	if err := rv.admit("bob", t0); err != nil {
		t.Errorf("admit(bob) with 2 of 3 = %v, want nil", err)
	}
	rv.add(h(3), t0.Add(2*time.Minute), "bob", t0)
	if err := rv.admit("carol", t0); !isLimit(err, limitRevoked) {
		t.Errorf("admit(carol) with 3 of 3 = %v, want %s", err, limitRevoked)
	}
	for _, step := range []struct {
		at   time.Duration
		live []byte
	}{
		{0, []byte{1, 2, 3}},
		{time.Minute, []byte{1, 3}},
		{2*time.Minute + time.Second, []byte{1}},
		{3 * time.Minute, nil},
	} {
		rv.prune(t0.Add(step.at))
		if got := rv.len(); got != len(step.live) {
			t.Errorf("at +%v: %d entries, want %d", step.at, got, len(step.live))
		}
		for _, b := range step.live {
			if !rv.has(h(b)) {
				t.Errorf("at +%v: handle %d forgotten before its expiry", step.at, b)
			}
		}
		if step.at == time.Minute {
			if err := rv.admit("alice", t0.Add(step.at)); err != nil {
				t.Errorf("admit(alice) at +1m, one of hers expired: %v, want nil", err)
			}
		}
	}
	if len(rv.perOwner) != 0 {
		t.Errorf("per owner counts %v after every entry expired, want none", rv.perOwner)
	}
}

func isLimit(err error, limit string) bool {
	var le *errSessionLimit
	return errors.As(err, &le) && le.limit == limit
}

// BenchmarkRevoke is a DELETE's revocation with 100,000 revocations held:
// O(log n), the expired one dropped as it goes (before the fix, every
// DELETE scanned the whole set). It reports the heap per entry.
func BenchmarkRevoke(b *testing.B) {
	const n = 100_000
	t0 := time.Unix(1_800_000_000, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rv := newRevocations(2*n, n)
	until := func(i int) time.Time { return t0.Add(time.Duration(i)*time.Millisecond + time.Hour) }
	for i := range n {
		rv.add(handleOf(i), until(i), "alice", t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportAllocs()
	i := n
	for b.Loop() {
		// One expires, one is added: the set stays at n.
		rv.add(handleOf(i), until(i), "alice", until(i-n))
		i++
	}
	if got := rv.len(); got < n-1 || got > n+1 {
		b.Fatalf("%d entries, want %d", got, n)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
}

func handleOf(i int) [16]byte {
	var h [16]byte
	h[0], h[1], h[2], h[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
	return h
}
