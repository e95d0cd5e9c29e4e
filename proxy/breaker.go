package proxy

import (
	"cmp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// breakerState is a circuit breaker's state.
type breakerState int32

const (
	breakerClosed   breakerState = iota // calls go through
	breakerOpen                         // calls fail at once
	breakerHalfOpen                     // one probe is in flight; the others fail at once
)

var breakerStateNames = [...]string{"closed", "open", "half_open"}

func (s breakerState) String() string { return breakerStateNames[s] }

// breaker is a consecutive-failure circuit breaker with half-open probing.
// Its clock is injected so tests move time instead of sleeping.
type breaker struct {
	threshold int // consecutive failures that open; <= 0: never opens
	openFor   time.Duration
	now       func() time.Time

	mu       sync.Mutex
	state    breakerState
	fails    int
	openedAt time.Time
	opens    uint64 // times opened, for metrics
}

func newBreaker(cfg config.Breaker, now func() time.Time) *breaker {
	br := &breaker{threshold: cmp.Or(cfg.Failures, config.DefaultBreakerFailures), openFor: cfg.OpenFor, now: now}
	if br.openFor <= 0 {
		br.openFor = config.DefaultBreakerOpenFor
	}
	if br.now == nil {
		br.now = time.Now
	}
	return br
}

// allow reports whether a call may go now. When the circuit has been open
// for openFor, the first caller is let through as the probe (probe true)
// and must report its result with done.
func (br *breaker) allow() (ok, probe bool) {
	if br == nil || br.threshold < 0 {
		return true, false
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	switch br.state {
	case breakerClosed:
		return true, false
	case breakerOpen:
		if br.now().Sub(br.openedAt) >= br.openFor {
			br.state = breakerHalfOpen
			return true, true
		}
	}
	return false, false
}

// breakerResult is what a call tells its breaker.
type breakerResult int

const (
	resultNeutral breakerResult = iota // says nothing about the peer (the client cancelled)
	resultSuccess                      // the peer answered
	resultFailure                      // transport failure, refusal or timeout
)

// done reports the result of a call that allow let through.
func (br *breaker) done(probe bool, r breakerResult) {
	if br == nil || br.threshold < 0 {
		return
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	switch r {
	case resultSuccess:
		if br.state != breakerHalfOpen || probe {
			br.state, br.fails = breakerClosed, 0
		}
	case resultFailure:
		if br.state == breakerHalfOpen && !probe {
			return // an older call; the probe decides
		}
		br.fails++
		if br.state == breakerHalfOpen || br.fails >= br.threshold {
			if br.state != breakerOpen {
				br.opens++
			}
			br.state, br.openedAt = breakerOpen, br.now()
		}
	default:
		if probe && br.state == breakerHalfOpen {
			// The probe ended without a verdict: the next caller probes.
			br.state = breakerOpen
			br.openedAt = br.now().Add(-br.openFor)
		}
	}
}

// failure counts a failure seen outside a call (a failed health ping or
// reconnect).
func (br *breaker) failure() { br.done(br.isHalfOpen(), resultFailure) }

func (br *breaker) isHalfOpen() bool {
	if br == nil {
		return false
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.state == breakerHalfOpen
}

// healthy is a successful health ping or a fresh connection: it acts as the
// half-open probe once the circuit has been open for openFor, and resets
// the failure count of a closed one. It never closes a circuit early.
func (br *breaker) healthy() {
	if br == nil || br.threshold < 0 {
		return
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	switch br.state {
	case breakerClosed:
		br.fails = 0
	case breakerOpen:
		if br.now().Sub(br.openedAt) >= br.openFor {
			br.state, br.fails = breakerClosed, 0
		}
	}
}

// openCount is how many times the circuit opened.
func (br *breaker) openCount() uint64 {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.opens
}

// current is the state as a caller would find it now.
func (br *breaker) current() breakerState {
	if br == nil || br.threshold < 0 {
		return breakerClosed
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.state
}

// resilienceStats count what the resilience of calls to one backend did.
type resilienceStats struct {
	rejected  atomic.Int64 // failed at once: circuit open
	retries   atomic.Int64 // attempts that were retries
	fallbacks atomic.Int64 // attempts sent here as a fallback
}

// breakers are a backend's circuit breakers: one for the backend and one per
// tool, so that a tool that times out alone does not take its siblings down.
type breakers struct {
	cfg   config.Breaker
	now   func() time.Time
	all   *breaker
	mu    sync.Mutex
	tools map[string]*breaker
}

func newBreakers(cfg config.Breaker, now func() time.Time) *breakers {
	return &breakers{cfg: cfg, now: now, all: newBreaker(cfg, now), tools: map[string]*breaker{}}
}

// tool is the breaker of one tool (by the name the backend knows), made on
// first use. Tool names come from the backend's own list, so the map is
// bounded by it.
func (bs *breakers) tool(name string) *breaker {
	if bs == nil || name == "" {
		return nil
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	br := bs.tools[name]
	if br == nil {
		br = newBreaker(bs.cfg, bs.now)
		bs.tools[name] = br
	}
	return br
}

// states counts breakers per state (the backend's and its tools').
func (bs *breakers) states() (backend breakerState, toolsOpen int) {
	backend = bs.all.current()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, br := range bs.tools {
		if br.current() != breakerClosed {
			toolsOpen++
		}
	}
	return backend, toolsOpen
}
