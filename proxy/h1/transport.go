// Package h1 is an HTTP/1.1 client transport for plain-HTTP backends that
// writes each request and reads its response on the calling goroutine.
//
// net/http's Transport runs a reader and a writer goroutine per
// connection: every call hands its request to one and its response over
// from the other, and on a machine with few cores those hand-offs (futex
// wake-ups, scheduler runs) cost more CPU and latency than the gateway's
// own work on a small call. This transport keeps the standard library's
// wire code (Request.Write, http.ReadResponse, its body readers) and
// replaces only the connection handling. Anything it does not handle —
// https, a proxy, CONNECT, an upgrade — goes to a fallback RoundTripper.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults of Transport's zero fields.
const (
	DefaultMaxIdlePerHost        = 256
	DefaultIdleTimeout           = 90 * time.Second
	DefaultMaxResponseHeaderSize = 1 << 20

	// MaxInlineBody is the largest request body this transport writes
	// itself; larger ones go to the fallback. It stays within the
	// default socket send buffer (16 KiB on Linux), so writing it never
	// waits for the backend to read.
	MaxInlineBody = 16 << 10

	// max1xx bounds the informational answers before a final one (all
	// of them also share the header size bound).
	max1xx = 5
)

// Transport is an http.RoundTripper; its zero value is not usable, set
// Fallback. It is safe for concurrent use.
type Transport struct {
	// Fallback carries every request this transport does not: any scheme
	// but http, a request Proxy sends through a proxy, CONNECT, and
	// requests asking for a protocol upgrade.
	Fallback http.RoundTripper
	// Proxy reports the proxy for a request, as http.Transport.Proxy; a
	// request with a proxy goes to Fallback. Nil means none.
	Proxy func(*http.Request) (*url.URL, error)
	// DialContext opens connections; nil uses a net.Dialer with a 10 s
	// timeout and 30 s keep-alive.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept per host:port.
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle for longer.
	IdleTimeout time.Duration
	// MaxResponseHeaderSize bounds a response's status line and headers.
	MaxResponseHeaderSize int64

	mu    sync.Mutex
	idle  map[string][]*conn // per host:port, most recently used last
	sweep *time.Timer        // the janitor's next run while any is idle
	// sweepGen numbers the janitor's runs (see janitor).
	sweepGen uint64
}

// conn is one connection; only the request holding it touches it.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer // writes through w
	w      sockWriter
	peek   *peeker // checks the connection before its reuse
	key    string
	idleAt time.Time
	// maxIdle is the longest it may idle before its reuse, by the
	// backend's last Keep-Alive header (keepAliveIdle); zero if unsaid.
	maxIdle time.Duration
	// limit is how many more bytes reads may take from nc: the header
	// bound while a response's header is read, unbounded otherwise.
	limit int64
}

// sockWriter is the connection's writer; it tells a failure of the
// socket (the backend hung up) from one of the request itself (its body
// failed to read), and whether any byte of the request left.
type sockWriter struct {
	nc      net.Conn
	written int64
	err     error
}

func (w *sockWriter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	w.written += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (c *conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.nc.Read(p)
	c.limit -= int64(n)
	return n, err
}

var (
	errHeaderTooLarge = errors.New("response header too large")
	// errStale marks a failure on a reused connection before any byte of
	// the response arrived: the backend had closed it while idle.
	errStale = errors.New("connection closed by the backend")
	// errNothingWritten is errStale when not a byte of the request left.
	errNothingWritten = errors.New("connection closed by the backend before the request")
)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		resp, err := t.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		if attempt > 0 || !retryable(req, err) {
			return nil, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

// handles reports whether req is one this transport carries itself.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" || req.Method == http.MethodConnect {
		return false
	}
	if req.Header.Get("Upgrade") != "" {
		return false
	}
	// A body is written whole before the answer is read. A small one
	// fits the socket's buffer, so a backend that answers before reading
	// it (a 413, a 401) cannot block the write; a large one or one of
	// unknown length gets net/http, which reads and writes at once.
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.ContentLength > MaxInlineBody) {
		return false
	}
	if t.Proxy != nil {
		if u, err := t.Proxy(req); err != nil || u != nil {
			return false
		}
	}
	return true
}

// retryable reports whether a request failed by a stale connection may
// be sent once more, on a new one, as net/http's Transport does: any
// request of which no byte was written, others only when they have no
// side effects (by method or an idempotency key); and only with a body
// that can be read again.
func retryable(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	if errors.Is(err, errNothingWritten) {
		return true
	}
	if !errors.Is(err, errStale) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// validRequest refuses what net/http's Transport refuses before writing:
// Request.Write itself puts a header name (or a method) with a CR or LF
// on the wire as given, which would let a header split the request.
func validRequest(req *http.Request) error {
	if m := req.Method; m != "" && !httpguts.ValidHeaderFieldName(m) {
		return fmt.Errorf("invalid method %q", m)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func hostPort(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

func (t *Transport) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	if err := validRequest(req); err != nil {
		closeBody(req)
		return nil, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	key := hostPort(req.URL)
	c, reused := t.getIdle(key)
	if c == nil {
		var err error
		if c, err = t.dial(ctx, key); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	// Cancelling the request interrupts a blocked read or write; the
	// connection is then not reused.
	var cancelled atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		cancelled.Store(true)
		c.nc.SetDeadline(time.Unix(1, 0))
	})
	fail := func(err error) (*http.Response, error) {
		stop()
		c.nc.Close()
		if cancelled.Load() && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// Request.Write calls the trace's WroteRequest, and the dialer its
	// ConnectStart and ConnectDone, as under net/http's Transport.
	c.w.written, c.w.err = 0, nil
	werr := req.Write(c.bw)
	if werr == nil {
		werr = c.bw.Flush()
	}
	if werr != nil {
		if cancelled.Load() || c.w.err == nil {
			// Cancelled, or the request itself failed (its body):
			// nothing to learn from the backend.
			return fail(fmt.Errorf("writing the request: %w", werr))
		}
		if reused && c.w.written == 0 {
			// Not a byte left: the backend closed the idle
			// connection, and never saw this request.
			return fail(fmt.Errorf("writing the request: %w: %w", errNothingWritten, werr))
		}
		// A backend may answer and hang up before reading the whole
		// request (a 413, a 401); that answer is the call's.
		if resp := t.earlyAnswer(c, req, &cancelled); resp != nil {
			resp.Body = &body{ctx: ctx, t: t, c: c, rc: resp.Body, stop: stop, cancelled: &cancelled}
			return resp, nil
		}
		if reused {
			werr = fmt.Errorf("%w: %w", errStale, werr)
		}
		return fail(fmt.Errorf("writing the request: %w", werr))
	}
	var resp *http.Response
	// One header bound covers the answer and the 1xx ones before it.
	c.limit = t.maxHeader()
	for n := 0; ; n++ {
		first := n == 0
		if _, err := c.br.Peek(1); err != nil {
			if reused && first && !cancelled.Load() && (errors.Is(err, io.EOF) || isReset(err)) {
				err = fmt.Errorf("%w: %w", errStale, err)
			}
			return fail(fmt.Errorf("reading the response: %w", err))
		}
		if first && trace != nil && trace.GotFirstResponseByte != nil {
			trace.GotFirstResponseByte()
		}
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				err = fmt.Errorf("%w (over %d bytes)", errHeaderTooLarge, t.maxHeader())
			}
			return fail(fmt.Errorf("reading the response: %w", err))
		}
		if r.StatusCode < 100 || r.StatusCode > 999 {
			return fail(fmt.Errorf("reading the response: malformed status code %d", r.StatusCode))
		}
		// 1xx answers (100 Continue, 103 Early Hints) precede the real
		// one; a 101 would switch protocols, which no request here asks.
		if r.StatusCode >= 200 || r.StatusCode == http.StatusSwitchingProtocols {
			resp = r
			break
		}
		if n+1 > max1xx {
			return fail(errors.New("reading the response: too many 1xx informational responses"))
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(r.StatusCode, textproto.MIMEHeader(r.Header)); err != nil {
				return fail(err)
			}
		}
	}
	c.limit = math.MaxInt64
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("reading the response: unexpected 101 Switching Protocols"))
	}
	keep := keepAliveIdle(resp.Header)
	c.maxIdle = max(keep, 0)
	resp.Body = &body{
		ctx:       ctx,
		t:         t,
		c:         c,
		rc:        resp.Body,
		stop:      stop,
		reusable:  !resp.Close && !req.Close && keep >= 0,
		cancelled: &cancelled,
	}
	return resp, nil
}

// keepAliveIdle is how long a connection may idle before its reuse, by
// the answer's Keep-Alive header ("timeout=5", which Node sends): the
// backend closes it after that many seconds, and a request written as it
// does is lost to a race no retry may fix (it may have been seen). A
// second is left for the time between the backend starting its idle
// timer and this side's, or half the timeout when that is shorter. Zero:
// the backend did not say; negative: "timeout=0", do not reuse it.
func keepAliveIdle(h http.Header) time.Duration {
	for _, v := range h.Values("Keep-Alive") {
		for part := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "timeout") {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(val))
			switch {
			case err != nil || n < 0:
				return 0
			case n == 0:
				return -1
			}
			d := time.Duration(min(n, 1<<20)) * time.Second
			return max(d-time.Second, d/2)
		}
	}
	return 0
}

// earlyAnswer reads a final answer already sent on c when writing the
// request failed; nil if there is none. c is not reused after it.
func (t *Transport) earlyAnswer(c *conn, req *http.Request, cancelled *atomic.Bool) *http.Response {
	if err := c.nc.SetReadDeadline(time.Now().Add(earlyAnswerWait)); err != nil {
		return nil
	}
	c.limit = t.maxHeader()
	resp, err := http.ReadResponse(c.br, req)
	c.limit = math.MaxInt64
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 999 {
		return nil
	}
	// The body is read without the wait's deadline but still ends with
	// the request: the cancellation stores its flag before it sets its
	// deadline, so a cancellation this clearing may have overwritten is
	// seen below.
	c.nc.SetReadDeadline(time.Time{})
	if cancelled.Load() {
		return nil
	}
	resp.Close = true
	return resp
}

// earlyAnswerWait bounds the wait for an answer the backend sent before
// it hung up on a request being written.
const earlyAnswerWait = 200 * time.Millisecond

func (t *Transport) maxHeader() int64 {
	if t.MaxResponseHeaderSize > 0 {
		return t.MaxResponseHeaderSize
	}
	return DefaultMaxResponseHeaderSize
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (t *Transport) dial(ctx context.Context, key string) (*conn, error) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, key: key, limit: math.MaxInt64, peek: newPeeker(nc)}
	c.w.nc = nc
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(&c.w, 4096)
	return c, nil
}

// getIdle takes the most recently used idle connection to key that is
// still open; it closes the dead ones it passes.
func (t *Transport) getIdle(key string) (*conn, bool) {
	var expired []*conn
	defer func() { closeAll(expired) }()
	for {
		now := time.Now()
		t.mu.Lock()
		expired = t.pruneLocked(key, now, expired)
		list := t.idle[key]
		if len(list) == 0 {
			t.mu.Unlock()
			return nil, false
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[key] = list[:len(list)-1]
		t.mu.Unlock()
		if c.pastKeepAlive(now) || c.br.Buffered() > 0 || !c.peek.alive() {
			c.nc.Close()
			continue
		}
		return c, true
	}
}

// pruneLocked takes key's connections idle for longer than the idle
// timeout out of the pool and appends them to expired, for the caller to
// close once it has let go of the lock. The list is in the order they
// were put back, oldest first.
func (t *Transport) pruneLocked(key string, now time.Time, expired []*conn) []*conn {
	list := t.idle[key]
	n := 0
	for n < len(list) && now.Sub(list[n].idleAt) > t.idleTimeout() {
		expired = append(expired, list[n])
		list[n] = nil
		n++
	}
	switch {
	case n == len(list):
		delete(t.idle, key)
	case n > 0:
		t.idle[key] = append(list[:0], list[n:]...)
	}
	return expired
}

// pastKeepAlive reports whether c idled longer than its backend keeps
// an idle connection (see keepAliveIdle).
func (c *conn) pastKeepAlive(now time.Time) bool {
	return c.maxIdle > 0 && now.Sub(c.idleAt) >= c.maxIdle
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.nc.Close()
	}
}

// janitor closes expired idle connections of hosts no request comes to
// any more; it runs while any connection is idle. gen tells a run still
// due from before CloseIdleConnections from the current one.
func (t *Transport) janitor(gen uint64) {
	var expired []*conn
	t.mu.Lock()
	if gen != t.sweepGen {
		t.mu.Unlock()
		return
	}
	t.sweep = nil
	now := time.Now()
	for key, list := range t.idle {
		// The whole list: a backend's Keep-Alive timeout may have
		// passed for a connection newer than one within the idle
		// timeout.
		kept := list[:0]
		for _, c := range list {
			if now.Sub(c.idleAt) > t.idleTimeout() || c.pastKeepAlive(now) {
				expired = append(expired, c)
			} else {
				kept = append(kept, c)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = kept
		}
	}
	t.scheduleLocked()
	t.mu.Unlock()
	closeAll(expired)
}

func (t *Transport) scheduleLocked() {
	if t.sweep == nil && len(t.idle) > 0 {
		t.sweepGen++
		gen := t.sweepGen
		t.sweep = time.AfterFunc(t.idleTimeout()/2+time.Millisecond, func() { t.janitor(gen) })
	}
}

func (t *Transport) maxIdlePerHost() int {
	if t.MaxIdlePerHost > 0 {
		return t.MaxIdlePerHost
	}
	return DefaultMaxIdlePerHost
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

// putIdle keeps c for the next request to its host, or closes it when
// the host has enough idle connections.
func (t *Transport) putIdle(c *conn) {
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		c.nc.Close()
		return
	}
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*conn)
	}
	expired := t.pruneLocked(c.key, c.idleAt, nil)
	list := t.idle[c.key]
	if len(list) >= t.maxIdlePerHost() {
		expired = append(expired, c)
	} else {
		t.idle[c.key] = append(list, c)
		t.scheduleLocked()
	}
	t.mu.Unlock()
	closeAll(expired)
}

// CloseIdleConnections closes the idle connections, its own and the
// fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.sweepGen++
	t.mu.Unlock()
	for _, list := range idle {
		closeAll(list)
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// body is a response body on a held connection. Reading it to the end
// gives the connection back for reuse; closing it earlier closes the
// connection (draining an unknown rest, an endless SSE stream say, could
// block for ever).
type body struct {
	ctx       context.Context
	t         *Transport
	c         *conn
	rc        io.ReadCloser
	stop      func() bool
	reusable  bool
	cancelled *atomic.Bool
	done      atomic.Bool // the connection was given back or closed
	eof       atomic.Bool
}

var errBodyClosed = errors.New("http: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.eof.Load() {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
		b.release()
	case err != nil && b.cancelled.Load() && b.ctx.Err() != nil:
		// The deadline the cancellation set, reported as what it is.
		err = b.ctx.Err()
	}
	return n, err
}

// release hands the connection back once the body is read to its end.
func (b *body) release() {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && b.reusable && !b.cancelled.Load() {
		b.t.putIdle(b.c)
		return
	}
	b.c.nc.Close()
}

func (b *body) Close() error {
	if b.rc == http.NoBody {
		b.eof.Store(true)
		b.release()
		return nil
	}
	if b.done.CompareAndSwap(false, true) {
		b.stop()
		b.c.nc.Close()
	}
	return nil
}
