// Package bridge connects a stdio MCP client to a streamable HTTP MCP
// endpoint (normally the mcptrail gateway), so clients that can only spawn
// a local process reach a shared gateway: `mcptrail stdio --url URL`.
//
// Messages are relayed, not re-served: each newline-delimited JSON-RPC
// message read from stdin is POSTed as is; every message in the answer (a
// JSON body or an SSE stream) is written to stdout as one line. The session
// (Mcp-Session-Id) and protocol version from the initialize exchange are
// replayed on later requests. After initialization a GET stream carries
// server-initiated messages; the client's answers to server requests
// (sampling, elicitation) arrive on stdin and are POSTed back. HTTP failures
// become JSON-RPC errors for the pending request id. stdout carries only
// JSON-RPC; logs go to the logger.
package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/proxy/sessionseal"
	"github.com/mcptrail/mcptrail/proxy/sse"
)

// Config configures the bridge.
type Config struct {
	// URL is the streamable HTTP endpoint, for example http://gateway:8080/mcp.
	URL string
	// Headers are added to every HTTP request (from --header K:V).
	Headers map[string]string
	// Token, when set, is sent as "Authorization: Bearer <Token>"
	// (--token, or the MCPTRAIL_TOKEN environment variable).
	Token string
	// HTTPClient sends the requests; default a client without an overall
	// timeout, since tool calls and the GET stream may last long.
	HTTPClient *http.Client
	// MaxMessageBytes bounds one stdin line and one SSE event; default 64 MiB.
	MaxMessageBytes int
	// MaxInFlight bounds concurrent requests to the server; default 64.
	// Further requests wait, which back-pressures stdin.
	MaxInFlight int
	// DrainTimeout is how long to wait for pending requests after stdin
	// closes before cancelling them; default 10s.
	DrainTimeout time.Duration
	// ReconnectDelay is the pause before reopening a GET stream that ended;
	// default 1s.
	ReconnectDelay time.Duration
}

func (c *Config) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 64 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 64
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = time.Second
	}
}

// Validate reports the first invalid setting, naming its flag.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bridge: --url %q: want an http(s) URL", c.URL)
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return fmt.Errorf("bridge: --header %q: invalid header name", k)
		}
	}
	return nil
}

// ParseArgs parses the command line of `mcptrail stdio` (without the
// subcommand name): --url URL [--header K:V]... [--token T]. Usage and flag
// errors go to stderr.
func ParseArgs(args []string, stderr io.Writer) (Config, error) {
	cfg := Config{Headers: map[string]string{}}
	fs := flag.NewFlagSet("stdio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", "", "streamable HTTP endpoint of the gateway, e.g. http://127.0.0.1:8080/mcp")
	fs.Func("header", "extra HTTP header `K:V` (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return fmt.Errorf("want K:V, got %q", s)
		}
		cfg.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		return nil
	})
	fs.StringVar(&cfg.Token, "token", "", "bearer token (default $MCPTRAIL_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("bridge: unexpected argument %q", fs.Arg(0))
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("MCPTRAIL_TOKEN")
	}
	return cfg, cfg.Validate()
}

// Run relays between stdin/stdout and cfg.URL until stdin ends (after
// pending requests are answered, within DrainTimeout) or ctx is cancelled;
// then it deletes the session. Both are normal ends and return nil. It
// returns an error when stdin cannot be read or stdout cannot be written.
// A cancelled Run leaves one goroutine blocked reading stdin until stdin is
// closed (as it is when the process exits).
func Run(ctx context.Context, cfg Config, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &bridge{
		cfg: cfg,
		log: logger.With("component", "bridge"),
		out: &lineWriter{w: stdout},
		sem: make(chan struct{}, cfg.MaxInFlight),
	}
	return b.run(ctx, stdin)
}

type bridge struct {
	cfg Config
	log *slog.Logger
	out *lineWriter
	sem chan struct{}

	mu        sync.Mutex
	sessionID string
	protocol  string // negotiated in initialize
	listening bool

	reqs     sync.WaitGroup // in-flight requests
	listener sync.WaitGroup // the GET stream
}

func (b *bridge) run(ctx context.Context, stdin io.Reader) error {
	// Requests and the GET stream get their own context so that stdin EOF
	// can drain them gracefully while ctx cancellation stops them at once.
	work, cancelWork := context.WithCancel(ctx)
	defer cancelWork()

	type line struct {
		b   []byte
		err error
	}
	lines := make(chan line)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), b.cfg.MaxMessageBytes)
		for sc.Scan() {
			buf := bytes.Clone(sc.Bytes())
			select {
			case lines <- line{b: buf}:
			case <-work.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case lines <- line{err: err}:
			case <-work.Done():
			}
		}
	}()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case l, ok := <-lines:
			if !ok {
				b.log.Debug("stdin closed; draining pending requests")
				b.drain(cancelWork)
				break loop
			}
			if l.err != nil {
				runErr = fmt.Errorf("reading stdin: %w", l.err)
				break loop
			}
			if err := b.handle(work, l.b); err != nil {
				runErr = err
				break loop
			}
		}
		if err := b.out.failed(); err != nil {
			runErr = err
			break
		}
	}
	cancelWork()
	b.reqs.Wait()
	b.listener.Wait()
	b.deleteSession(ctx)
	if runErr == nil {
		runErr = b.out.failed()
	}
	return runErr
}

func (b *bridge) drain(cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() { b.reqs.Wait(); close(done) }()
	t := time.NewTimer(b.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		b.log.Warn("pending requests not answered before the drain timeout; cancelling", "timeout", b.cfg.DrainTimeout)
		cancel()
		<-done
	}
}

// handle relays one stdin line. It returns an error only when the bridge
// must stop (stdout failed).
func (b *bridge) handle(ctx context.Context, line []byte) error {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	msg, err := jsonrpc.Decode(line)
	if err != nil {
		code, id := jsonrpc.ErrorCode(err)
		b.log.Warn("invalid message on stdin", "err", err)
		e := jsonrpc.NewError(id, code, err.Error(), nil)
		b.out.write(e.Marshal())
		return nil
	}
	switch msg.Kind() {
	case jsonrpc.KindRequest:
		if msg.Method == string(mcp.MethodInitialize) {
			// Synchronous: later messages need the session it creates.
			b.post(ctx, msg, line, b.noteInitialize)
			return nil
		}
		select {
		case b.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		b.reqs.Go(func() {
			defer func() { <-b.sem }()
			b.post(ctx, msg, line, nil)
		})
	default:
		// Notifications and answers to server requests are quick (202) and
		// posted in order, so e.g. notifications/initialized precedes the
		// requests that follow it.
		b.post(ctx, msg, line, nil)
		if msg.Method == "notifications/initialized" {
			// Servers without an event store deliver server→client
			// requests (sampling, elicitation) only on an open GET stream:
			// relaying the next request before the stream is open can lose
			// them and leave that request hanging. Wait for it, bounded.
			t := time.NewTimer(listenOpenTimeout)
			select {
			case <-b.startListener(ctx):
			case <-ctx.Done():
			case <-t.C:
				b.log.Warn("GET stream not open in time; relaying on", "timeout", listenOpenTimeout)
			}
			t.Stop()
		}
	}
	return nil
}

// noteInitialize records the negotiated protocol version from the
// initialize result.
func (b *bridge) noteInitialize(m jsonrpc.Message) {
	if m.Result == nil {
		return
	}
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if json.Unmarshal(m.Result, &r) == nil && r.ProtocolVersion != "" {
		b.mu.Lock()
		b.protocol = r.ProtocolVersion
		b.mu.Unlock()
	}
}

func (b *bridge) setHeaders(h http.Header, msg *jsonrpc.Message) {
	b.mu.Lock()
	sid, proto := b.sessionID, b.protocol
	b.mu.Unlock()
	for k, v := range b.cfg.Headers {
		h.Set(k, v)
	}
	if b.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+b.cfg.Token)
	}
	if sid != "" {
		h.Set(mcp.HeaderSessionID, sid)
	}
	if msg != nil && msg.Params != nil {
		// Protocol 2026-07-28 carries the version per request in _meta and
		// wants it, with Mcp-Method and Mcp-Name, mirrored in headers.
		var p struct {
			Meta map[string]json.RawMessage `json:"_meta"`
		}
		var v string
		if json.Unmarshal(msg.Params, &p) == nil && json.Unmarshal(p.Meta[mcp.MetaKeyProtocolVersion], &v) == nil && v != "" {
			proto = v
			if sid == "" && mcp.IsModernProtocol(v) {
				// A sessionless client: its requests without _meta (a
				// ping it still sends) are of the same version.
				b.mu.Lock()
				b.protocol = v
				b.mu.Unlock()
			}
		}
	}
	if proto != "" {
		h.Set(mcp.HeaderProtocolVersion, proto)
		if msg != nil && msg.Method != "" {
			for k, v := range mcp.StandardHeaders(proto, mcp.MCPMethod(msg.Method), msg.Params) {
				h.Set(k, v)
			}
		}
	}
}

// post sends one message and relays everything in the answer to stdout.
// For a request, a failure is answered with a JSON-RPC error for its id.
// inspect, when set, sees every message of the answer.
func (b *bridge) post(ctx context.Context, msg jsonrpc.Message, raw []byte, inspect func(jsonrpc.Message)) {
	isReq := msg.Kind() == jsonrpc.KindRequest
	log := b.log.With("method", msg.Method, "jsonrpc_id", jsonrpc.IDString(msg.ID))
	fail := func(code int, text string, data any) {
		log.Warn("request failed", "code", code, "err", text)
		if !isReq {
			return
		}
		var d json.RawMessage
		if data != nil {
			d, _ = json.Marshal(data)
		}
		e := jsonrpc.NewError(msg.ID, code, text, d)
		b.out.write(e.Marshal())
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.cfg.URL, bytes.NewReader(raw))
	if err != nil {
		fail(jsonrpc.CodeInternalError, "bridge: building request: "+err.Error(), nil)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	b.setHeaders(req.Header, &msg)
	resp, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			fail(jsonrpc.CodeRequestTimeout, "bridge: request cancelled while shutting down", nil)
			return
		}
		fail(jsonrpc.CodeBackendUnavailable, "bridge: gateway unreachable: "+err.Error(), nil)
		return
	}
	defer resp.Body.Close()
	if msg.Method == string(mcp.MethodInitialize) {
		if sid := resp.Header.Get(mcp.HeaderSessionID); sid != "" {
			b.mu.Lock()
			b.sessionID = sid
			b.mu.Unlock()
		}
	}

	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if isReq {
			var m struct {
				Error *jsonrpc.Error `json:"error"`
			}
			if json.Unmarshal(body, &m) == nil && m.Error != nil && m.Error.Message != "" {
				// The server explained itself in JSON-RPC (its id may be
				// null): relay that error, addressed to the pending id.
				e := jsonrpc.NewError(msg.ID, m.Error.Code, m.Error.Message, m.Error.Data)
				log.Warn("request refused", "http_status", resp.StatusCode, "code", m.Error.Code)
				b.out.write(e.Marshal())
				return
			}
		}
		fail(httpStatusCode(resp.StatusCode),
			fmt.Sprintf("gateway answered HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)),
			map[string]any{"httpStatus": resp.StatusCode, "body": truncate(string(bytes.TrimSpace(body)), 1024)})
		return
	}
	if !isReq {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return
	}
	if resp.StatusCode == http.StatusAccepted {
		log.Debug("request accepted without a body; its answer is expected on the GET stream")
		return
	}

	answered := false
	emit := func(data []byte) {
		if len(bytes.TrimSpace(data)) == 0 {
			return // a priming event: an id for resumption, no message
		}
		m, err := jsonrpc.Decode(data)
		if err != nil {
			log.Warn("dropping undecodable message from gateway", "err", err)
			return
		}
		if m.Kind() == jsonrpc.KindResponse && bytes.Equal(m.ID, msg.ID) {
			answered = true
		}
		if inspect != nil {
			inspect(m)
		}
		b.out.write(data)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(b.cfg.MaxMessageBytes)+1))
		if err != nil {
			fail(jsonrpc.CodeBackendUnavailable, "bridge: reading response: "+err.Error(), nil)
			return
		}
		if len(body) > b.cfg.MaxMessageBytes {
			fail(jsonrpc.CodeInternalError, fmt.Sprintf("bridge: response exceeds %d bytes", b.cfg.MaxMessageBytes), nil)
			return
		}
		emit(body)
	case "text/event-stream":
		_, err := sse.Read(resp.Body, b.cfg.MaxMessageBytes, func(_, data []byte) bool {
			emit(data)
			return !answered // the stream may close once the response is out
		})
		if err != nil && !answered {
			if ctx.Err() != nil {
				fail(jsonrpc.CodeRequestTimeout, "bridge: request cancelled while shutting down", nil)
				return
			}
			fail(jsonrpc.CodeBackendUnavailable, "bridge: reading event stream: "+err.Error(), nil)
			return
		}
	default:
		fail(jsonrpc.CodeBackendUnavailable, fmt.Sprintf("bridge: unexpected Content-Type %q", resp.Header.Get("Content-Type")), nil)
		return
	}
	if !answered {
		fail(jsonrpc.CodeBackendUnavailable, "bridge: the gateway's answer carried no response for this request", nil)
	}
}

// listenOpenTimeout bounds how long stdin waits for the GET stream to open.
const listenOpenTimeout = 10 * time.Second

// startListener opens the GET stream once, after initialization. The
// returned channel is closed once the first attempt to open it has an
// outcome (open, refused or failed).
func (b *bridge) startListener(ctx context.Context) <-chan struct{} {
	opened := make(chan struct{})
	b.mu.Lock()
	if b.listening {
		b.mu.Unlock()
		close(opened)
		return opened
	}
	b.listening = true
	b.mu.Unlock()
	b.listener.Go(func() { b.listen(ctx, opened) })
	return opened
}

// listen relays the server's GET stream, reopening it (with Last-Event-ID)
// when it ends, until ctx is done or the server says it has none. It closes
// opened after the first attempt.
func (b *bridge) listen(ctx context.Context, opened chan struct{}) {
	var once sync.Once
	signal := func() { once.Do(func() { close(opened) }) }
	defer signal()
	lastID := ""
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.cfg.URL, nil)
		if err != nil {
			b.log.Error("building GET stream request", "err", err)
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		b.setHeaders(req.Header, nil)
		if lastID != "" {
			req.Header.Set(mcp.HeaderLastEventID, lastID)
		}
		resp, err := b.cfg.HTTPClient.Do(req)
		signal()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.log.Warn("opening GET stream", "err", err)
			}
		case resp.StatusCode == http.StatusMethodNotAllowed:
			resp.Body.Close()
			b.log.Info("gateway offers no GET stream; server-initiated messages arrive only on request streams")
			return
		case resp.StatusCode/100 != 2:
			resp.Body.Close()
			b.log.Warn("GET stream refused", "http_status", resp.StatusCode)
			return
		default:
			b.log.Debug("GET stream open")
			id, err := sse.Read(resp.Body, b.cfg.MaxMessageBytes, func(id, data []byte) bool {
				if len(bytes.TrimSpace(data)) == 0 {
					return true // a priming event
				}
				if _, err := jsonrpc.Decode(data); err != nil {
					b.log.Warn("dropping undecodable message from GET stream", "err", err)
					return true
				}
				b.out.write(data)
				return true
			})
			resp.Body.Close()
			if id != "" {
				lastID = id
			}
			if err != nil && ctx.Err() == nil {
				b.log.Warn("GET stream broke", "err", err)
			}
		}
		t := time.NewTimer(b.cfg.ReconnectDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// deleteSession ends the server session (best effort, 5s).
func (b *bridge) deleteSession(ctx context.Context) {
	b.mu.Lock()
	sid := b.sessionID
	b.mu.Unlock()
	if sid == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodDelete, b.cfg.URL, nil)
	if err != nil {
		return
	}
	b.setHeaders(req.Header, nil)
	resp, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		b.log.Warn("deleting session", "session_id", sessionseal.Public(sid), "err", err)
		return
	}
	resp.Body.Close()
	b.log.Debug("session deleted", "session_id", sessionseal.Public(sid), "http_status", resp.StatusCode)
}

// httpStatusCode maps an HTTP failure to the JSON-RPC code the client sees.
func httpStatusCode(status int) int {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return jsonrpc.CodeUnauthorized
	case http.StatusRequestEntityTooLarge:
		return jsonrpc.CodeRequestTooLarge
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return jsonrpc.CodeRequestTimeout
	case http.StatusBadRequest:
		return jsonrpc.CodeInvalidRequest
	}
	return jsonrpc.CodeBackendUnavailable
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// lineWriter writes whole messages as single lines; it is the only writer
// of stdout. After the first write error it drops everything.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf bytes.Buffer
	err error
}

func (l *lineWriter) write(msg []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.buf.Reset()
	if err := json.Compact(&l.buf, msg); err != nil {
		return // Decode already validated every message written here
	}
	l.buf.WriteByte('\n')
	if _, err := l.w.Write(l.buf.Bytes()); err != nil {
		l.err = fmt.Errorf("writing stdout: %w", err)
	}
}

func (l *lineWriter) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
