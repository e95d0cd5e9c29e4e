package proxy

import (
	"context"
	"errors"
	"sync"
	"testing"
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
