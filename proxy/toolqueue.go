package proxy

import (
	"context"
	"errors"
	"slices"
	"time"

	"sync"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Priority classes of the per-tool queues, highest first.
const (
	prioInteractive = iota
	prioBackground
	numPriorities
)

var errQueueFull = errors.New("queue full")

// toolGate caps one tool's calls in flight
// (servers[].tools.<name>.max_concurrency). Calls beyond the cap wait in a
// bounded queue; a freed slot goes to the first waiting interactive call,
// else to the first waiting background call.
type toolGate struct {
	limit, queueMax int

	mu      sync.Mutex
	busy    int
	queued  int
	waiting [numPriorities][]*toolWaiter
}

type toolWaiter struct {
	ch      chan struct{}
	granted bool // under toolGate.mu
}

func newToolGate(limit, queue int) *toolGate {
	if queue == 0 {
		queue = config.DefaultToolQueueSize
	}
	return &toolGate{limit: limit, queueMax: queue}
}

// acquire takes a slot, waiting in prio's line when none is free; it
// returns how long it waited. errQueueFull: the queue is full.
func (t *toolGate) acquire(ctx context.Context, prio int) (time.Duration, error) {
	t.mu.Lock()
	if t.busy < t.limit && t.queued == 0 {
		t.busy++
		t.mu.Unlock()
		return 0, nil
	}
	if t.queued >= t.queueMax {
		t.mu.Unlock()
		return 0, errQueueFull
	}
	w := &toolWaiter{ch: make(chan struct{})}
	t.waiting[prio] = append(t.waiting[prio], w)
	t.queued++
	t.mu.Unlock()
	start := time.Now()
	select {
	case <-w.ch:
		return time.Since(start), nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	if w.granted {
		t.mu.Unlock()
		t.release() // pass the slot on
	} else {
		if i := slices.Index(t.waiting[prio], w); i >= 0 {
			t.waiting[prio] = slices.Delete(t.waiting[prio], i, i+1)
			t.queued--
		}
		t.mu.Unlock()
	}
	return time.Since(start), ctx.Err()
}

// release frees a slot: it goes to the next waiter in priority order.
func (t *toolGate) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.waiting {
		if len(t.waiting[p]) > 0 {
			w := t.waiting[p][0]
			t.waiting[p][0] = nil
			t.waiting[p] = t.waiting[p][1:]
			t.queued--
			w.granted = true
			close(w.ch)
			return
		}
	}
	t.busy--
}

// waiters is how many calls wait.
func (t *toolGate) waiters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.queued
}

// newToolGates builds the gates of every tool with a max_concurrency,
// keyed "<server><sep><tool>".
func newToolGates(cfg *config.Config, sep string) map[string]*toolGate {
	m := map[string]*toolGate{}
	for _, s := range cfg.Servers {
		for name, t := range s.Tools {
			if t.MaxConcurrency > 0 {
				m[s.Name+sep+name] = newToolGate(t.MaxConcurrency, t.QueueSize)
			}
		}
	}
	return m
}

// priorityOf is the class of p's calls (limits.priority).
func priorityOf(pr config.Priority, p *auth.Principal) int {
	if p == nil {
		return prioInteractive
	}
	if slices.Contains(pr.BackgroundPrincipals, p.Name) {
		return prioBackground
	}
	for _, r := range p.Roles {
		if slices.Contains(pr.BackgroundRoles, r) {
			return prioBackground
		}
	}
	return prioInteractive
}

// limitTool applies a tools/call's limits before it is forwarded: the
// rate limits, then the tool's concurrency cap (waiting in its queue), and
// it sets the tool's own timeout. The caller must call release when ok.
func (c *call) limitTool(ctx context.Context, target string, rt nameRoute) (release func(), resp jsonrpc.Message, ok bool) {
	g := c.g
	bs := g.bs()
	if resp, ok := c.limitRate(ctx, target); !ok {
		return nil, resp, false
	}
	if b := bs.byName[rt.server]; b != nil {
		if ts, has := b.cfg.Tools[rt.name]; has && ts.Timeout > 0 {
			c.toolTimeout = ts.Timeout
		}
	}
	gate := c.ps.toolGates[target]
	if gate == nil {
		return func() {}, jsonrpc.Message{}, true
	}
	wait, err := gate.acquire(ctx, priorityOf(c.ps.cfg.Limits.Priority, c.princ))
	c.toolWait = wait
	switch {
	case errors.Is(err, errQueueFull):
		msg := "mcptrail: tool " + c.target + " is at its max_concurrency and its queue is full"
		return nil, c.refuseAtLimit(ctx, limitToolQueue, RuleToolQueue, msg, 0), false
	case err != nil:
		c.outcome = recorder.OutcomeTransportError
		return nil, c.fail(jsonrpc.CodeRequestTimeout, "mcptrail: waiting for a concurrency slot of tool "+c.target+": "+err.Error()), false
	}
	return gate.release, jsonrpc.Message{}, true
}
