package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// stdioConn is the gateway's own stdio client: newline-delimited JSON-RPC
// with a child process. Messages the backend sends on its own
// (notifications, server→client requests) reach the hooks with their params
// as the bytes the backend wrote — nothing is decoded into Go types and
// re-encoded.
type stdioConn struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	hooks  connHooks
	logger *slog.Logger

	writeMu sync.Mutex
	mu      sync.Mutex
	pending map[string]chan upstreamResult

	done      chan struct{} // closed when the process has exited
	exitErr   error         // set before done closes
	stderr    tailBuffer
	readDone  chan struct{}
	closeOnce sync.Once
}

// startStdio starts cmd and serves its stdout until it exits or close.
func startStdio(cmd *exec.Cmd, hooks connHooks, logger *slog.Logger) (*stdioConn, error) {
	c := &stdioConn{cmd: cmd, hooks: hooks, logger: logger, pending: map[string]chan upstreamResult{},
		done: make(chan struct{}), readDone: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	// The child's stderr is drained continuously (a full pipe would block
	// it); its tail explains an early exit.
	cmd.Stderr = &c.stderr
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		defer close(c.readDone)
		c.read(stdout)
	}()
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited")
		}
		if tail := c.stderr.String(); tail != "" {
			err = fmt.Errorf("%w; stderr: %s", err, tail)
		}
		c.exitErr = fmt.Errorf("backend process %w", err)
		close(c.done)
	}()
	return c, nil
}

// read dispatches every line the child writes, in order: answers to their
// callers, notifications to the hooks before any later answer is delivered.
func (c *stdioConn) read(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 64<<10)
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxUpstreamMessage {
			c.logger.Warn("stdio backend wrote an oversized line; dropped", "bytes", len(line)+len(chunk))
			line = line[:0]
			if err == bufio.ErrBufferFull {
				// Skip the rest of the line.
				for err == bufio.ErrBufferFull {
					_, err = r.ReadSlice('\n')
				}
			}
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
			continue
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
		msg := bytes.TrimSpace(line)
		if len(msg) > 0 {
			// The message is handed on; the next line needs its own buffer.
			c.dispatch(bytes.Clone(msg))
		}
		line = line[:0]
	}
}

func (c *stdioConn) dispatch(b []byte) {
	m, err := jsonrpc.Decode(b)
	if err != nil {
		c.logger.Warn("undecodable message from stdio backend", "err", err)
		return
	}
	switch m.Kind() {
	case jsonrpc.KindResponse:
		key := jsonrpc.IDString(m.ID)
		c.mu.Lock()
		ch := c.pending[key]
		delete(c.pending, key)
		c.mu.Unlock()
		if ch != nil {
			ch <- upstreamResult{Result: m.Result, Error: m.Error, ID: jsonrpc.IDString(m.ID)}
		}
	case jsonrpc.KindNotification:
		c.hooks.notification(context.Background(), m)
	case jsonrpc.KindRequest:
		go func() {
			answer := c.hooks.request(context.Background(), m)
			answer.ID = m.ID
			if err := c.write(answer.Marshal()); err != nil {
				c.logger.Warn("answering a backend request failed", "method", m.Method, "err", err)
			}
		}()
	}
}

func (c *stdioConn) write(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	select {
	case <-c.done:
		return c.exitErr
	default:
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing to the backend's stdin: %w", err)
	}
	return nil
}

func (c *stdioConn) call(ctx context.Context, id int64, method string, params []byte, _ http.Header, _ *hopTiming) (upstreamResult, error) {
	key := strconv.FormatInt(id, 10)
	res := upstreamResult{ID: key}
	ch := make(chan upstreamResult, 1)
	c.mu.Lock()
	c.pending[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, key)
		c.mu.Unlock()
	}()
	if err := c.write(jsonrpc.NewRequest(jsonrpc.IntID(id), method, params).Marshal()); err != nil {
		return res, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return res, ctx.Err()
	case <-c.readDone:
		// stdout ended: an answer already read is still delivered.
		select {
		case r := <-ch:
			return r, nil
		default:
		}
		<-c.done
		return res, c.exitErr
	}
}

func (c *stdioConn) notify(_ context.Context, method string, params []byte) error {
	return c.write(jsonrpc.NewNotification(method, params).Marshal())
}

func (c *stdioConn) setProtocolVersion(string) {}

// close ends the child: stdin closed, then SIGTERM to its process group,
// then SIGKILL, each after a grace period.
func (c *stdioConn) close() error {
	c.closeOnce.Do(func() {
		c.writeMu.Lock()
		_ = c.stdin.Close()
		c.writeMu.Unlock()
		for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
			if sig != 0 {
				_ = syscall.Kill(-c.cmd.Process.Pid, sig)
			}
			select {
			case <-c.done:
				<-c.readDone
				return
			case <-time.After(2 * time.Second):
			}
		}
		<-c.done
		<-c.readDone
	})
	return nil
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailBufferSize = 2048

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBufferSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBufferSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
