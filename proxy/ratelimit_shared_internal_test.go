package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/redisstate"
)

// fakeBuckets is a sharedBuckets in memory that never refills: each key
// holds its burst until taken.
type fakeBuckets struct {
	mu    sync.Mutex
	taken map[string]int
}

func (f *fakeBuckets) Take(_ context.Context, bs []redisstate.Bucket) (int, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken == nil {
		f.taken = map[string]int{}
	}
	for i, b := range bs {
		if f.taken[b.Key] >= b.Burst {
			return i, time.Hour, nil
		}
	}
	for _, b := range bs {
		f.taken[b.Key]++
	}
	return -1, 0, nil
}

// TestSharedRateKeysDoNotCollide: principal and tool names are the
// client's or a backend's to choose, braces and colons included; no two
// different (principal, tool) pairs share a Redis bucket. Fails before the
// fix: keys were "{principal}" and "{principal}:tool", so "a" calling
// "b}:c" and "a}:b" calling "c" took from one bucket.
func TestSharedRateKeysDoNotCollide(t *testing.T) {
	type req struct{ principal, tool string }
	for _, tt := range []struct {
		name        string
		first, then req
	}{
		{"tool buckets", req{"a", "b}:c"}, req{"a}:b", "c"}},
		{"principal bucket and tool bucket", req{"bob}:t", ""}, req{"bob", "t}"}},
		{"separator in the principal", req{"x:y", "z"}, req{"x", "y:z"}},
		{"empty principal", req{"", "}:t"}, req{"}", "t"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Limits: config.Limits{
				RatePerPrincipal: config.Rate{Rate: "1/h", Burst: 1},
				RatePerTool:      config.Rate{Rate: "1/h", Burst: 1},
			}}
			l := newRateLimits(cfg, ".")
			l.shared = &fakeBuckets{}
			for _, r := range []req{tt.first, tt.then} {
				if rule, _, err := l.allowShared(context.Background(), r.principal, r.tool); rule != "" || err != nil {
					t.Errorf("allowShared(%q, %q) = %q, %v; want allowed: its buckets are its own", r.principal, r.tool, rule, err)
				}
			}
			if rule, _, _ := l.allowShared(context.Background(), tt.then.principal, tt.then.tool); rule == "" {
				t.Errorf("allowShared(%q, %q) again = allowed, want refused (burst 1)", tt.then.principal, tt.then.tool)
			}
		})
	}
}
