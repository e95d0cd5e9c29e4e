package proxy

import (
	"container/heap"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Limits of the revocations, by their config key under sessions.
const (
	limitRevoked             = "max_revoked"
	limitRevokedPerPrincipal = "max_revoked_per_principal"
)

// revocations remembers this replica's DELETEd sealed sessions, each until
// its sealed expiry, so that their ids stay refused here (with Redis, also
// on the other replicas: shared.go).
//
// Cost: entries sit in a map for the lookup and in a min-heap by expiry,
// so dropping the expired ones costs O(log n) each and nothing scans the
// set; a DELETE is O(log n).
//
// Bound: admit refuses a new sealed session (opened or rebuilt here) while
// the set holds max entries, or maxPerOwner of the principal's; add never
// refuses and never forgets, since forgetting would make a DELETEd id valid
// again. Every added entry is a session that was open here, each admitted
// below the cap, so the set holds at most max + limits.max_sessions.
type revocations struct {
	max, maxPerOwner int

	mu       sync.Mutex
	byHandle map[[16]byte]struct{}
	queue    revocationQueue
	perOwner map[string]int // owner key → entries
}

type revocation struct {
	until  time.Time
	handle [16]byte
	owner  string
}

func newRevocations(max, maxPerOwner int) *revocations {
	return &revocations{max: max, maxPerOwner: maxPerOwner, byHandle: map[[16]byte]struct{}{}, perOwner: map[string]int{}}
}

// add remembers handle, owned by owner, until until.
func (rv *revocations) add(handle [16]byte, until time.Time, owner string, now time.Time) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.pruneLocked(now)
	if !now.Before(until) {
		return // expired: Open refuses it anyway
	}
	if _, ok := rv.byHandle[handle]; ok {
		return
	}
	rv.byHandle[handle] = struct{}{}
	rv.perOwner[owner]++
	heap.Push(&rv.queue, revocation{until: until, handle: handle, owner: owner})
}

// has reports whether handle was revoked (and may not have expired yet).
func (rv *revocations) has(handle [16]byte) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	_, ok := rv.byHandle[handle]
	return ok
}

// admit reports, as an *errSessionLimit, why owner may not have another
// sealed session on this replica now; nil when it may.
func (rv *revocations) admit(owner string, now time.Time) error {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.pruneLocked(now)
	if n := rv.perOwner[owner]; n >= rv.maxPerOwner {
		return &errSessionLimit{http.StatusTooManyRequests, limitRevokedPerPrincipal, fmt.Sprintf(
			"mcptrail: this principal has %d ended sessions that have not expired yet (sessions.max_revoked_per_principal); new sessions open again as they expire", n)}
	}
	if n := len(rv.byHandle); n >= rv.max {
		return &errSessionLimit{http.StatusServiceUnavailable, limitRevoked, fmt.Sprintf(
			"mcptrail: the gateway remembers %d ended sessions that have not expired yet (sessions.max_revoked); try again later", n)}
	}
	return nil
}

// prune drops the entries whose expiry has passed.
func (rv *revocations) prune(now time.Time) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.pruneLocked(now)
}

func (rv *revocations) pruneLocked(now time.Time) {
	for len(rv.queue) > 0 && !now.Before(rv.queue[0].until) {
		r := heap.Pop(&rv.queue).(revocation)
		delete(rv.byHandle, r.handle)
		if rv.perOwner[r.owner]--; rv.perOwner[r.owner] <= 0 {
			delete(rv.perOwner, r.owner)
		}
	}
}

// snapshot returns the entries that have not expired at now.
func (rv *revocations) snapshot(now time.Time) []revocation {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.pruneLocked(now)
	return slices.Clone(rv.queue)
}

// len is the number of entries, the expired ones not dropped yet included.
func (rv *revocations) len() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.byHandle)
}

// revocationQueue is a min-heap of revocations by expiry.
type revocationQueue []revocation

func (q revocationQueue) Len() int           { return len(q) }
func (q revocationQueue) Less(i, j int) bool { return q[i].until.Before(q[j].until) }
func (q revocationQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *revocationQueue) Push(x any)        { *q = append(*q, x.(revocation)) }
func (q *revocationQueue) Pop() any {
	old := *q
	r := old[len(old)-1]
	*q = old[:len(old)-1]
	return r
}
