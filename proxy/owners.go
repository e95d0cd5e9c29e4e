package proxy

import "sync"

// ownerCounts counts what each principal (by OwnerKey) holds of one kind,
// under a cap.
type ownerCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts one more for owner unless it already holds max; it
// reports whether it did.
func (o *ownerCounts) acquire(owner string, max int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[owner] >= max {
		return false
	}
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[owner]++
	return true
}

// release gives back one that acquire counted.
func (o *ownerCounts) release(owner string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[owner]--; o.n[owner] <= 0 {
		delete(o.n, owner)
	}
}

// held reports how many owner holds.
func (o *ownerCounts) held(owner string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[owner]
}
