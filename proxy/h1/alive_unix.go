//go:build unix

package h1

import (
	"net"
	"syscall"
)

// peeker checks an idle connection before its reuse. It is made once per
// connection: the check runs on every call.
type peeker struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool // p.peek, bound once
	open bool
	b    [1]byte
}

func newPeeker(nc net.Conn) *peeker {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return &peeker{} // no rc: never alive
	}
	p := &peeker{rc: rc}
	p.fn = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}

// alive reports whether an idle connection is still open: a peek that
// must not block finds nothing to read. A backend that closed it (its
// idle timeout, a restart) left an EOF or a reset there; one that sent
// bytes nobody asked for is not trusted with the next request. Without
// a socket to peek at (nil), it cannot tell and says yes.
func (p *peeker) alive() bool {
	if p == nil {
		return true
	}
	if p.rc == nil {
		return false
	}
	p.open = false
	err := p.rc.Read(p.fn)
	return err == nil && p.open
}
