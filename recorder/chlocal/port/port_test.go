package port

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeIsBindableAndBelowEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	for range 20 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if lo > 11000 && p >= lo {
			t.Fatalf("Free() = %d, inside the ephemeral range starting at %d", p, lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d from Free is not bindable: %v", p, err)
		}
		l.Close()
	}
}
