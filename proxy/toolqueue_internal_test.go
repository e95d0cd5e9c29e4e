package proxy

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestToolGatePriority: with the one slot taken, three background calls
// and then two interactive calls queue; as slots free, the interactive
// calls overtake the background backlog, and each class keeps its arrival
// order. A full queue refuses at once; a cancelled waiter leaves it.
func TestToolGatePriority(t *testing.T) {
	g := newToolGate(1, 5)
	ctx := context.Background()
	if _, err := g.acquire(ctx, prioInteractive); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(name string, prio int) {
		before := g.waiters()
		wg.Go(func() {
			if _, err := g.acquire(ctx, prio); err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			g.release()
		})
		waitUntil(t, name+" queued", func() bool { return g.waiters() == before+1 })
	}
	for _, n := range []string{"bg1", "bg2", "bg3"} {
		enqueue(n, prioBackground)
	}
	for _, n := range []string{"int1", "int2"} {
		enqueue(n, prioInteractive)
	}
	if _, err := g.acquire(ctx, prioInteractive); !errors.Is(err, errQueueFull) {
		t.Fatalf("acquire with 5 of 5 waiting = %v, want errQueueFull", err)
	}
	g.release()
	wg.Wait()
	want := []string{"int1", "int2", "bg1", "bg2", "bg3"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if g.busy != 0 || g.waiters() != 0 {
		t.Fatalf("after all released: busy %d, waiting %d", g.busy, g.waiters())
	}

	// A cancelled waiter leaves the queue and takes no slot.
	if _, err := g.acquire(ctx, prioInteractive); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := g.acquire(cctx, prioBackground); done <- err }()
	waitUntil(t, "waiter queued", func() bool { return g.waiters() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire = %v", err)
	}
	g.release()
	if g.busy != 0 || g.waiters() != 0 {
		t.Fatalf("after a cancelled waiter: busy %d, waiting %d", g.busy, g.waiters())
	}
}

// BenchmarkLimits is the limits' cost per call: both rate buckets (of 50
// principals × 20 tools) and an uncontended tool slot.
func BenchmarkLimits(b *testing.B) {
	cfg := &config.Config{Limits: config.Limits{
		RatePerPrincipal: config.Rate{Rate: "1000000/s"}, RatePerTool: config.Rate{Rate: "1000000/s"}}}
	l := newRateLimits(cfg, ".")
	gate := newToolGate(64, 0)
	ctx := context.Background()
	var principals, tools [50]string
	for i := range principals {
		principals[i] = "p" + strconv.Itoa(i)
		tools[i] = "srv.tool" + strconv.Itoa(i%20)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if rule, _ := l.allow(principals[i%50], tools[i%50]); rule != "" {
			b.Fatalf("refused by %s", rule)
		}
		if _, err := gate.acquire(ctx, prioInteractive); err != nil {
			b.Fatal(err)
		}
		gate.release()
		i++
	}
}

// TestPriorityOf: a caller is background when its principal or one of its
// roles is named in limits.priority, else interactive.
func TestPriorityOf(t *testing.T) {
	pr := config.Priority{BackgroundRoles: []string{"batch"}, BackgroundPrincipals: []string{"etl"}}
	for _, tc := range []struct {
		p    *auth.Principal
		want int
	}{
		{nil, prioInteractive},
		{&auth.Principal{Name: "alice"}, prioInteractive},
		{&auth.Principal{Name: "etl"}, prioBackground},
		{&auth.Principal{Name: "bob", Roles: []string{"reader", "batch"}}, prioBackground},
		{&auth.Principal{Name: "carol", Roles: []string{"reader"}}, prioInteractive},
	} {
		if got := priorityOf(pr, tc.p); got != tc.want {
			t.Errorf("priorityOf(%+v) = %d, want %d", tc.p, got, tc.want)
		}
	}
}
