package h1

import (
	"net"
	"net/http"
	"testing"
	"time"
)

func TestKeepAliveIdle(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		want    time.Duration
	}{
		{nil, 0},
		{[]string{"timeout=5"}, 4 * time.Second},
		{[]string{"timeout=5, max=1000"}, 4 * time.Second},
		{[]string{"max=100, Timeout = 3"}, 2 * time.Second},
		{[]string{"max=5", "timeout=3"}, 2 * time.Second}, // a second field counts too
		{[]string{"timeout=1"}, 500 * time.Millisecond},
		{[]string{"timeout=0"}, -1}, // not reused at all
		{[]string{"timeout=x"}, 0},
		{[]string{"timeout=-4"}, 0},
		{[]string{"max=5"}, 0},
		{[]string{"timeout=99999999999999999999"}, 0},
		{[]string{"timeout=9999999"}, (1<<20 - 1) * time.Second},
	} {
		h := http.Header{"Keep-Alive": tc.headers}
		if got := keepAliveIdle(h); got != tc.want {
			t.Errorf("Keep-Alive: %q: %s, want %s", tc.headers, got, tc.want)
		}
	}
}

// TestJanitorKeepAlive: the janitor closes a connection past its
// backend's Keep-Alive timeout even when an older one is still within
// the transport's idle timeout (the hot path prunes oldest first only).
func TestJanitorKeepAlive(t *testing.T) {
	now := time.Now()
	older, olderPeer := net.Pipe()
	newer, newerPeer := net.Pipe()
	for _, c := range []net.Conn{older, olderPeer, newer, newerPeer} {
		defer c.Close()
	}
	within := &conn{nc: older, key: "k", idleAt: now.Add(-2 * time.Second)}
	past := &conn{nc: newer, key: "k", idleAt: now.Add(-time.Second), maxIdle: 500 * time.Millisecond}
	tr := &Transport{IdleTimeout: time.Minute, idle: map[string][]*conn{"k": {within, past}}}
	tr.janitor(tr.sweepGen)
	defer tr.CloseIdleConnections()
	if got := tr.idle["k"]; len(got) != 1 || got[0] != within {
		t.Fatalf("pool after the janitor: %v, want only the connection within its limits", got)
	}
	if _, err := newer.Write([]byte("x")); err == nil {
		t.Fatal("the connection past its Keep-Alive timeout is still open")
	}
}
