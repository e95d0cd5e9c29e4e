package proxy

import (
	"strconv"
	"testing"
	"time"
)

// TestTaskTablePerPrincipalCap: one principal creating tasks without end
// keeps at most its cap of routes, losing its own oldest, and never
// another principal's (fails before the fix: the table had no cap, so a
// principal could grow it without bound for a day).
func TestTaskTablePerPrincipalCap(t *testing.T) {
	var tt taskTable
	t0 := time.Now()
	tt.put("victim/1", taskRoute{principal: "victim", created: t0}, 3)
	for i := range 50 {
		tt.put("attacker/"+strconv.Itoa(i), taskRoute{principal: "attacker", created: t0.Add(time.Duration(i) * time.Second)}, 3)
	}
	if _, ok := tt.get("victim/1"); !ok {
		t.Error("the victim's task was evicted by another principal's")
	}
	if n := tt.len(); n != 4 {
		t.Errorf("table holds %d routes, want 4 (the victim's 1 and the attacker's cap of 3)", n)
	}
	for i, want := range map[int]bool{0: false, 46: false, 47: true, 48: true, 49: true} {
		if _, ok := tt.get("attacker/" + strconv.Itoa(i)); ok != want {
			t.Errorf("attacker/%d held = %v, want %v (the newest 3 stay)", i, ok, want)
		}
	}
	// A route put again is one route, not two.
	tt.put("attacker/49", taskRoute{principal: "attacker", created: t0.Add(time.Minute)}, 3)
	if n := tt.len(); n != 4 {
		t.Errorf("after putting a route again the table holds %d, want 4", n)
	}
	// A day later everything old has expired.
	tt.put("late/1", taskRoute{principal: "late", created: t0.Add(taskRouteTTL + 2*time.Minute)}, 3)
	if n := tt.len(); n != 1 {
		t.Errorf("after a day the table holds %d routes, want 1", n)
	}
	if len(tt.live) != 1 || len(tt.byOwner) != 1 || len(tt.fifo) != 1 {
		t.Errorf("bookkeeping after expiry: live %d owners %d fifo %d, want 1 each", len(tt.live), len(tt.byOwner), len(tt.fifo))
	}
}

// BenchmarkTaskTablePut: a put into a table of 10,000 routes (O(1); it
// swept the whole table before).
func BenchmarkTaskTablePut(b *testing.B) {
	var tt taskTable
	now := time.Now()
	for i := range 10000 {
		tt.put("p"+strconv.Itoa(i%100)+"/"+strconv.Itoa(i), taskRoute{principal: "p" + strconv.Itoa(i%100), created: now}, 1000)
	}
	b.ResetTimer()
	for i := range b.N {
		tt.put("q/"+strconv.Itoa(i), taskRoute{principal: "q" + strconv.Itoa(i%100), created: now}, 100)
	}
}
