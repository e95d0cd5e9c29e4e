//go:build !unix

package h1

import "net"

// alive cannot peek here; a stale connection fails its request, which a
// replayable request survives by one retry.
func alive(net.Conn) bool { return true }
