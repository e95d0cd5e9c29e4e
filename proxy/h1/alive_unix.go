//go:build unix

package h1

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open: a peek that
// must not block finds nothing to read. A backend that closed it (its
// idle timeout, a restart) left an EOF or a reset there; one that sent
// bytes nobody asked for is not trusted with the next request.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}
