package proxy

import (
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestBreakerStates walks a breaker through its states on an injected clock.
func TestBreakerStates(t *testing.T) {
	now := time.Unix(0, 0)
	br := newBreaker(config.Breaker{Failures: 3, OpenFor: 10 * time.Second}, func() time.Time { return now })
	step := func(what string, want breakerState) {
		t.Helper()
		if got := br.current(); got != want {
			t.Fatalf("after %s: state = %s, want %s", what, got, want)
		}
	}
	call := func(r breakerResult) (ok bool) {
		ok, probe := br.allow()
		if ok {
			br.done(probe, r)
		}
		return ok
	}
	call(resultFailure)
	call(resultFailure)
	step("2 failures", breakerClosed)
	call(resultSuccess)
	call(resultFailure)
	call(resultFailure)
	step("a success then 2 failures", breakerClosed)
	call(resultFailure)
	step("3 consecutive failures", breakerOpen)
	if call(resultSuccess) {
		t.Fatal("open circuit let a call through")
	}
	br.healthy()
	step("a health ping before open_for", breakerOpen)
	now = now.Add(10 * time.Second)
	ok, probe := br.allow()
	if !ok || !probe {
		t.Fatalf("after open_for: allow = %v, %v; want the probe", ok, probe)
	}
	if ok2, _ := br.allow(); ok2 {
		t.Fatal("a second call went through while the probe is in flight")
	}
	br.done(true, resultFailure)
	step("a failed probe", breakerOpen)
	now = now.Add(10 * time.Second)
	ok, probe = br.allow()
	br.done(probe, resultNeutral)
	step("a probe cancelled without a verdict", breakerOpen)
	if !call(resultSuccess) {
		t.Fatal("the next caller did not probe after a cancelled probe")
	}
	step("a successful probe", breakerClosed)
	call(resultFailure)
	call(resultFailure)
	call(resultFailure)
	now = now.Add(10 * time.Second)
	br.healthy()
	step("a health ping after open_for", breakerClosed)
	if br.opens != 3 {
		t.Errorf("opens = %d, want 3", br.opens)
	}

	off := newBreaker(config.Breaker{Failures: -1}, nil)
	for range 10 {
		off.done(false, resultFailure)
	}
	if ok, _ := off.allow(); !ok {
		t.Error("a disabled breaker refused a call")
	}
}
