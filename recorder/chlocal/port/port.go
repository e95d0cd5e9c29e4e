// Package port picks free TCP ports on the loopback interface for child
// processes (local ClickHouse, test peers). It has no dependencies, so any
// package, and any package's tests, may use it.
package port

import (
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Free returns a port on 127.0.0.1 that nothing listens on. It picks
// below the kernel's ephemeral range when it can: ports there are never
// handed to outgoing connections or to other ":0" listeners, so the window
// between picking a port and binding it is far less likely to be lost.
func Free() (int, error) {
	lo := ephemeralLow()
	const floor = 10000
	for i := 0; lo > floor+1000 && i < 50; i++ {
		p := floor + mrand.IntN(lo-floor)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, 0 when
// unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
