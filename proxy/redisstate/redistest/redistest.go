// Package redistest runs a throwaway redis-server for tests: a port from
// chlocal/port, a temporary directory, no persistence. scripts/setup.sh
// installs Debian's redis-server.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/chlocal/port"
)

// Server is a running redis-server.
type Server struct {
	Addr     string
	bin, dir string
	port     int
	cmd      *exec.Cmd
	done     chan struct{}
}

// Binary is the redis-server found on PATH or in /usr/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", fmt.Errorf("redis-server not found: run scripts/setup.sh (it installs Debian's redis-server)")
}

// Start runs a redis-server until the test ends, retrying with another
// port when another process took the picked one first.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var last error
	for range 5 {
		p, err := port.Free()
		if err != nil {
			t.Fatal(err)
		}
		s, err := start(bin, dir, p)
		if err == nil {
			t.Cleanup(func() { s.Kill() })
			return s
		}
		last = err
	}
	t.Fatalf("starting redis-server: %v", last)
	return nil
}

func start(bin, dir string, port int) (*Server, error) {
	log := filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", log, "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, dir: dir, port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(log)
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, tail(string(b)))
		default:
		}
		if ping(s.Addr) == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return nil, fmt.Errorf("redis-server on port %d did not answer PING within 10s", port)
}

// ping sends PING over a fresh connection and wants +PONG.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill stops the server at once (SIGKILL) and waits for it; safe twice.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts a killed server again, empty, on the same address (a
// Redis that comes back after an outage, its data lost).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	n, err := start(s.bin, s.dir, s.port)
	if err != nil {
		t.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
	}
	s.cmd, s.done = n.cmd, n.done
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
