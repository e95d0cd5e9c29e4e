package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/sse"
)

// upstreamConn is one live connection to a backend, speaking raw JSON-RPC:
// params go out as the bytes the gateway built, answers come back as the
// bytes the backend sent.
type upstreamConn interface {
	// call sends one request and waits for its answer. Notifications and
	// server→client requests that arrive first are delivered to the hooks
	// before call returns, in order. t, when not nil, gets the sub-timings
	// the transport can measure.
	call(ctx context.Context, id int64, method string, params []byte, header http.Header, t *hopTiming) (upstreamResult, error)
	notify(ctx context.Context, method string, params []byte) error
	setProtocolVersion(v string)
	close() error
}

// hopTiming holds what a transport can measure of one upstream call.
type hopTiming struct {
	connect time.Duration // dialing (and TLS) for a new connection; 0 when reused
	ttfb    time.Duration // request written → first byte of the answer
}

// connHooks receive what a backend sends on its own.
type connHooks struct {
	// notification gets the ctx of the call whose response stream carried
	// the notification, or a context without a call.
	notification func(context.Context, jsonrpc.Message)
	request      func(ctx context.Context, req jsonrpc.Message) jsonrpc.Message
}

// mcpConn adapts an mcp-go client transport (stdio, legacy SSE).
type mcpConn struct {
	tr interface {
		Start(ctx context.Context) error
		SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error)
		SendNotification(ctx context.Context, n mcp.JSONRPCNotification) error
		SetNotificationHandler(func(mcp.JSONRPCNotification))
		Close() error
	}
}

func newMCPConn(ctx context.Context, tr transport.Interface, hooks connHooks) (*mcpConn, error) {
	tr.SetNotificationHandler(func(n mcp.JSONRPCNotification) {
		params, _ := json.Marshal(n.Params)
		if string(params) == "{}" || string(params) == "null" {
			params = nil
		}
		hooks.notification(context.Background(), jsonrpc.NewNotification(n.Method, params))
	})
	if bidi, ok := tr.(transport.BidirectionalInterface); ok {
		bidi.SetRequestHandler(func(ctx context.Context, r transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
			params, err := json.Marshal(r.Params)
			if err != nil {
				return nil, err
			}
			id, _ := json.Marshal(r.ID)
			resp := hooks.request(ctx, jsonrpc.NewRequest(id, r.Method, params))
			out := &transport.JSONRPCResponse{JSONRPC: "2.0", ID: r.ID, Result: resp.Result}
			if resp.Error != nil {
				var data any
				if resp.Error.Data != nil {
					_ = json.Unmarshal(resp.Error.Data, &data)
				}
				out.Error = &mcp.JSONRPCErrorDetails{Code: resp.Error.Code, Message: resp.Error.Message, Data: data}
			}
			return out, nil
		})
	}
	if err := tr.Start(ctx); err != nil {
		_ = tr.Close()
		return nil, err
	}
	return &mcpConn{tr: tr}, nil
}

func (c *mcpConn) call(ctx context.Context, id int64, method string, params []byte, header http.Header, _ *hopTiming) (upstreamResult, error) {
	req := transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(id), Method: method, Header: header}
	if params != nil {
		req.Params = json.RawMessage(params)
	}
	res := upstreamResult{ID: strconv.FormatInt(id, 10)}
	resp, err := c.tr.SendRequest(ctx, req)
	if err != nil {
		return res, err
	}
	res.Result = resp.Result
	if resp.Error != nil {
		e := &jsonrpc.Error{Code: resp.Error.Code, Message: resp.Error.Message}
		if resp.Error.Data != nil {
			e.Data, _ = json.Marshal(resp.Error.Data)
		}
		res.Error = e
	}
	return res, nil
}

func (c *mcpConn) notify(ctx context.Context, method string, params []byte) error {
	n := mcp.JSONRPCNotification{JSONRPC: "2.0", Notification: mcp.Notification{Method: method}}
	if params != nil {
		var fields map[string]any
		if err := json.Unmarshal(params, &fields); err != nil {
			return fmt.Errorf("notification params: %w", err)
		}
		n.Params.AdditionalFields = fields
	}
	return c.tr.SendNotification(ctx, n)
}

func (c *mcpConn) setProtocolVersion(v string) {
	if hc, ok := c.tr.(interface{ SetProtocolVersion(string) }); ok {
		hc.SetProtocolVersion(v)
	}
}

func (c *mcpConn) close() error { return c.tr.Close() }

// httpConn is the gateway's own streamable-HTTP client: a request goes out
// as the bytes the gateway built, a JSON answer is read into one buffer, an
// SSE answer is relayed event by event in order. It measures connect time
// and time to first byte per call.
type httpConn struct {
	url     string
	shown   string // url as errors show it: no password, no query
	client  *http.Client
	headers map[string]string
	hooks   connHooks
	logger  *slog.Logger

	session  atomic.Pointer[string]
	version  atomic.Pointer[string]
	ctx      context.Context // lives until close
	cancel   context.CancelFunc
	listenWG sync.WaitGroup
	listenOn sync.Once
}

// maxUpstreamMessage bounds one answer from a backend.
const maxUpstreamMessage = 64 << 20

var errSessionGone = errors.New("backend session expired (HTTP 404)")

// httpStatusError is a backend's HTTP refusal of one call (a 4xx or 5xx
// without a JSON-RPC body). The connection itself still works, so unlike a
// network error it does not take the backend down.
type httpStatusError struct {
	status int
	msg    string
}

func (e *httpStatusError) Error() string { return e.msg }

func newHTTPConn(url string, client *http.Client, headers map[string]string, hooks connHooks, logger *slog.Logger) *httpConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &httpConn{url: url, shown: shownURL(url), client: client, headers: headers, hooks: hooks, logger: logger, ctx: ctx, cancel: cancel}
}

// shownURL is a backend URL fit for error messages, which reach clients,
// logs and storage: a password or a query string (api_key=...) may be a
// secret.
func shownURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "the backend URL"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.Fragment = ""
	return u.Redacted()
}

// doRequest is c.client.Do with an error that does not repeat the URL
// (*url.Error quotes it, query string included).
func (c *httpConn) doRequest(req *http.Request) (*http.Response, error) {
	resp, err := c.client.Do(req)
	if ue, ok := err.(*neturl.Error); ok {
		err = ue.Err
	}
	return resp, err
}

func (c *httpConn) setProtocolVersion(v string) { c.version.Store(&v) }

func (c *httpConn) newRequest(ctx context.Context, method string, body []byte, header http.Header) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	h := req.Header
	if body != nil {
		h["Content-Type"] = contentJSON
		h["Accept"] = acceptBoth
	} else {
		h["Accept"] = acceptSSE
	}
	if s := c.session.Load(); s != nil {
		h["Mcp-Session-Id"] = []string{*s}
	}
	if v := c.version.Load(); v != nil {
		h["Mcp-Protocol-Version"] = []string{*v}
	}
	for k, v := range c.headers {
		h.Set(k, v)
	}
	return req, nil
}

var (
	contentJSON = []string{"application/json"}
	acceptBoth  = []string{"application/json, text/event-stream"}
	acceptSSE   = []string{"text/event-stream"}
)

func (c *httpConn) call(ctx context.Context, id int64, method string, params []byte, header http.Header, t *hopTiming) (upstreamResult, error) {
	res := upstreamResult{ID: strconv.FormatInt(id, 10)}
	body := jsonrpc.NewRequest(jsonrpc.IntID(id), method, params).Marshal()
	req, err := c.newRequest(ctx, http.MethodPost, body, header)
	if err != nil {
		return res, err
	}
	// The trace callbacks may run on other goroutines than this one
	// (net/http's Transport, for https and proxied backends, dials,
	// writes and reads on its own).
	var dialStart, connect, wrote, ttfb atomic.Int64
	if t != nil {
		since := func(v *atomic.Int64) int64 { return time.Now().UnixNano() - v.Load() }
		req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			ConnectStart:         func(string, string) { dialStart.Store(time.Now().UnixNano()) },
			ConnectDone:          func(string, string, error) { connect.Store(since(&dialStart)) },
			TLSHandshakeDone:     func(tls.ConnectionState, error) { connect.Store(since(&dialStart)) },
			WroteRequest:         func(httptrace.WroteRequestInfo) { wrote.Store(time.Now().UnixNano()) },
			GotFirstResponseByte: func() { ttfb.Store(since(&wrote)) },
		}))
		defer func() {
			t.connect, t.ttfb = time.Duration(connect.Load()), time.Duration(ttfb.Load())
		}()
	}
	resp, err := c.doRequest(req)
	if err != nil {
		return res, fmt.Errorf("POST %s: %w", c.shown, err)
	}
	defer resp.Body.Close()
	if method == "initialize" {
		if s := resp.Header.Get("Mcp-Session-Id"); s != "" {
			c.session.Store(&s)
		}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && c.session.Load() != nil:
		return res, errSessionGone
	case resp.StatusCode >= 300:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		// A JSON-RPC error body is an answer; anything else is a
		// transport failure.
		if m, err := jsonrpc.Decode(b); err == nil && m.Error != nil {
			res.Error = m.Error
			return res, nil
		}
		return res, &httpStatusError{status: resp.StatusCode, msg: fmt.Sprintf("POST %s: HTTP %d: %s", c.shown, resp.StatusCode, strings.TrimSpace(string(b)))}
	}
	idRaw := jsonrpc.IntID(id)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var found bool
		_, err := sse.Read(resp.Body, maxUpstreamMessage, func(_, data []byte) bool {
			if len(bytes.TrimSpace(data)) == 0 {
				return true // a priming event (SEP-1699): an id and no message
			}
			m, err := jsonrpc.Decode(data)
			if err != nil {
				c.logger.Warn("undecodable message from backend", "err", err)
				return true
			}
			if m.Kind() == jsonrpc.KindResponse && bytes.Equal(m.ID, idRaw) {
				res.Result, res.Error, found = m.Result, m.Error, true
				return false
			}
			// On the request's own stream, so ctx tells whose call it is.
			c.dispatch(ctx, m)
			return true
		})
		if err != nil {
			return res, err
		}
		if !found {
			return res, fmt.Errorf("POST %s: the SSE stream ended without an answer", c.shown)
		}
		c.startListen(method, res)
		return res, nil
	}
	b, err := readAllSized(io.LimitReader(resp.Body, maxUpstreamMessage), min(resp.ContentLength, maxUpstreamMessage))
	if err != nil {
		return res, fmt.Errorf("reading answer from %s: %w", c.shown, err)
	}
	m, err := jsonrpc.Decode(b)
	if err != nil {
		return res, fmt.Errorf("decoding answer from %s: %w", c.shown, err)
	}
	if m.Kind() != jsonrpc.KindResponse {
		return res, fmt.Errorf("%s answered %s with a %q message", c.shown, method, m.Method)
	}
	res.Result, res.Error = m.Result, m.Error
	c.startListen(method, res)
	return res, nil
}

// startListen opens the standalone GET stream once the backend accepted
// initialize, whether it answered with JSON or with an SSE stream.
func (c *httpConn) startListen(method string, res upstreamResult) {
	if method == "initialize" && res.Error == nil {
		c.listenOn.Do(func() {
			c.listenWG.Add(1)
			go c.listen()
		})
	}
}

// dispatch hands a message the backend sent on its own to the hooks:
// notifications in order, requests on their own goroutine (their answer is
// POSTed back).
func (c *httpConn) dispatch(ctx context.Context, m jsonrpc.Message) {
	switch m.Kind() {
	case jsonrpc.KindNotification:
		c.hooks.notification(ctx, m)
	case jsonrpc.KindRequest:
		// m aliases the SSE reader's event buffer, which the next event
		// overwrites: the goroutine needs its own copy.
		m.ID, m.Params = bytes.Clone(m.ID), bytes.Clone(m.Params)
		go func() {
			answer := c.hooks.request(ctx, m)
			answer.ID = m.ID
			if err := c.post(c.ctx, answer.Marshal()); err != nil {
				c.logger.Warn("answering a backend request failed", "method", m.Method, "err", err)
			}
		}()
	}
}

// post sends a message that gets no JSON-RPC answer (notification, response).
func (c *httpConn) post(ctx context.Context, body []byte) error {
	req, err := c.newRequest(ctx, http.MethodPost, body, nil)
	if err != nil {
		return err
	}
	resp, err := c.doRequest(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", c.shown, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: HTTP %d", c.shown, resp.StatusCode)
	}
	return nil
}

func (c *httpConn) notify(ctx context.Context, method string, params []byte) error {
	return c.post(ctx, jsonrpc.NewNotification(method, params).Marshal())
}

// listen keeps the standalone GET stream open for what the backend sends
// outside any request (list_changed, resource updates, logs). A 405 means
// the backend offers none.
func (c *httpConn) listen() {
	defer c.listenWG.Done()
	for c.ctx.Err() == nil {
		req, err := c.newRequest(c.ctx, http.MethodGet, nil, nil)
		if err != nil {
			return
		}
		resp, err := c.client.Do(req)
		if err == nil {
			switch {
			case resp.StatusCode == http.StatusMethodNotAllowed:
				resp.Body.Close()
				return
			case resp.StatusCode == http.StatusOK:
				_, _ = sse.Read(resp.Body, maxUpstreamMessage, func(_, data []byte) bool {
					if m, err := jsonrpc.Decode(data); err == nil {
						c.dispatch(c.ctx, m)
					}
					return true
				})
			}
			resp.Body.Close()
		}
		if !sleepCtx(c.ctx, time.Second) {
			return
		}
	}
}

func (c *httpConn) close() error {
	c.cancel()
	if c.session.Load() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if req, err := c.newRequest(ctx, http.MethodDelete, nil, nil); err == nil {
			if resp, err := c.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	c.listenWG.Wait()
	return nil
}
