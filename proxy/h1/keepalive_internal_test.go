package h1

import (
	"net/http"
	"testing"
	"time"
)

func TestKeepAliveIdle(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"timeout=5", 4 * time.Second},
		{"timeout=5, max=1000", 4 * time.Second},
		{"max=100, Timeout = 3", 2 * time.Second},
		{"timeout=1", 500 * time.Millisecond},
		{"timeout=0", time.Nanosecond}, // never reused
		{"timeout=x", 0},
		{"timeout=-4", 0},
		{"max=5", 0},
		{"timeout=99999999999999999999", 0},
		{"timeout=9999999", (1<<20 - 1) * time.Second},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Keep-Alive", tc.header)
		}
		if got := keepAliveIdle(h); got != tc.want {
			t.Errorf("Keep-Alive: %q: %s, want %s", tc.header, got, tc.want)
		}
	}
}
