package proxy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// NewHTTPServer is the http.Server for the gateway's handler h, with the
// connection limits of l (zero values take their defaults). There is no
// ReadTimeout or WriteTimeout: streams live long; a request body has its own
// deadline (limits.body_read_timeout), set once its bearer token is checked.
func NewHTTPServer(h http.Handler, l config.Limits) *http.Server {
	return &http.Server{
		Handler:           bodyDeadline(h, cmp.Or(l.BodyReadTimeout, config.DefaultBodyReadTimeout)),
		ReadHeaderTimeout: cmp.Or(l.ReadHeaderTimeout, config.DefaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(l.IdleTimeout, config.DefaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
	}
}

// bodyDeadline gives every request that has a body limits.body_read_timeout
// to deliver it, whichever handler answers: one that never reads it (an
// unknown path, a refused method) would otherwise have net/http drain it,
// at the client's pace, before the answer goes out. readBody clears the
// deadline once the body is in, so a response stream is not cut.
func bodyDeadline(h http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		h.ServeHTTP(w, r)
	})
}

// Handler returns the gateway's MCP listener:
//
//	/mcp       streamable HTTP (POST, GET stream, DELETE)
//	/sse       legacy SSE stream; /message takes its POSTs
//	/healthz   the process is alive
//	/readyz    config loaded and the required backends initialized
//
// The MCP endpoints refuse browser origins not in allowed_origins (403).
// The admin endpoints (/statusz, /metrics; see AdminHandler) are here too
// unless admin.listen moves them to their own listener.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/mcp", g.checkOrigin(g.serveStreamable))
	mux.HandleFunc(WellKnownProtectedResource, g.serveResourceMetadata)
	mux.HandleFunc(WellKnownProtectedResource+"/", g.serveResourceMetadata)
	mux.HandleFunc("/sse", g.checkOrigin(g.serveSSE))
	mux.HandleFunc("/message", g.checkOrigin(g.serveSSEMessage))
	g.probes(mux)
	if g.conf().Admin.Listen == "" {
		g.adminEndpoints(mux, true)
	}
	return g.observeExchanges(mux)
}

// StatusProvider is implemented by a Recorder that reports its health:
// /statusz shows it and /readyz consults it (unless the recorder says it
// may be ready while degraded).
type StatusProvider interface {
	RecorderStatus() recorder.Status
}

// Status is what /statusz reports.
type Status struct {
	Version  string `json:"version"`
	Instance string `json:"instance"`
	Ready    bool   `json:"ready"`
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors"`
	Denied   int64  `json:"denied"`
	Dropped  int64  `json:"dropped_stream_messages"`
	Sessions int    `json:"sessions"`
	// SessionsResumed counts the sealed sessions this replica rebuilt from
	// an id it did not hold (another replica opened them).
	SessionsResumed int64            `json:"sessions_resumed,omitempty"`
	Listens         int              `json:"listen_streams"` // open subscriptions/listen (2026-07-28)
	Backends        []BackendStatus  `json:"backends"`
	Recorder        *recorder.Status `json:"recorder,omitempty"`
	// Config is the config in force and the outcome of the last reload.
	Config *ReloadStatus `json:"config,omitempty"`
}

// BackendStatus is one backend's health.
type BackendStatus struct {
	Name            string `json:"name"`
	Transport       string `json:"transport"`
	Ready           bool   `json:"ready"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// ServerName and ServerVersion are the backend's serverInfo: which
	// build of it the gateway is talking to.
	ServerName    string `json:"server_name,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	Tools         int    `json:"tools"`
	// ProfileConnections are the extra connections open for client
	// capability profiles (one per distinct set clients declared).
	ProfileConnections int    `json:"profile_connections"`
	LastError          string `json:"last_error,omitempty"`
	// Circuit is the backend's circuit breaker: closed, open or half_open;
	// CircuitOpens counts the times it opened; ToolsOpen counts the tools
	// whose own breaker is open or half-open.
	Circuit      string `json:"circuit"`
	CircuitOpens uint64 `json:"circuit_opens"`
	ToolsOpen    int    `json:"circuit_tools_open"`
}

// Status snapshots the gateway's counters.
func (g *Gateway) Status() Status {
	bs := g.bs()
	ready, _ := g.Ready()
	st := Status{
		Version: g.version, Instance: g.instance, Ready: ready,
		Requests: g.stats.requests.Load(), Errors: g.stats.errors.Load(),
		Denied: g.stats.denied.Load(), Dropped: g.stats.dropped.Load(),
	}
	st.Sessions = g.sessions.Len()
	if g.sealed != nil {
		st.SessionsResumed = g.sealed.resumed.Load()
	}
	g.listens.each(func(*listener) { st.Listens++ })
	for _, name := range bs.order {
		b := bs.byName[name]
		bs := BackendStatus{Name: name, Transport: b.cfg.Transport}
		if s := b.snap.Load(); s != nil {
			bs.Ready, bs.ProtocolVersion, bs.Tools = true, s.protocolVersion, len(s.lists[listTools])
			bs.ProfileConnections = b.profileConnections()
			bs.ServerName, bs.ServerVersion = s.serverName()
		}
		if err := b.LastError(); err != nil {
			bs.LastError = err.Error()
		}
		state, toolsOpen := b.brk.states()
		bs.Circuit, bs.CircuitOpens, bs.ToolsOpen = state.String(), b.brk.all.openCount(), toolsOpen
		st.Backends = append(st.Backends, bs)
	}
	if sp, ok := g.rec.(StatusProvider); ok {
		rs := sp.RecorderStatus()
		st.Recorder = &rs
	}
	rl := g.ReloadStatus()
	st.Config = &rl
	return st
}

// requestIDFrom takes an acceptable X-Request-Id header or makes a new one.
func (g *Gateway) requestIDFrom(r *http.Request) (id string, fromClient bool) {
	if h := r.Header.Get(HeaderRequestID); g.acceptRequestID(h) {
		return h, true
	}
	return NewRequestID(), false
}

// writeRPCError answers with a gateway-produced JSON-RPC error; extra are
// key, value pairs for error.data.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg, requestID string, extra ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderRequestID, requestID)
	w.WriteHeader(status)
	m := jsonrpc.NewError(id, code, msg, errorData(requestID, extra...))
	_, _ = w.Write(m.Marshal())
}

// authenticate checks the bearer token when auth is configured. It writes
// the 401 itself and returns ok=false.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, reqID string) (*auth.Principal, bool) {
	a := g.ps().auth
	if !a.Enabled() {
		return nil, true
	}
	p, err := a.AuthenticateContext(r.Context(), r.Header.Get("Authorization"))
	if err == nil {
		g.metrics.policyDecision(r.Context(), "bearer_token", DecisionAllowed, p.TokenName)
		return p, true
	}
	g.stats.denied.Add(1)
	if reqID == r.Header.Get(HeaderRequestID) {
		// Unauthenticated: the client's ID is nobody's to record under.
		reqID = NewRequestID()
	}
	desc, status, challenge := g.authFailure(err)
	g.metrics.policyDecision(r.Context(), "bearer_token", DecisionDenied, desc)
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeRPCError(w, status, nil, jsonrpc.CodeUnauthorized, "mcptrail: "+desc, reqID)
	closeUnread(w)
	if g.rec != nil {
		_ = g.rec.Record(&recorder.Event{
			RequestID: reqID, Hop: recorder.HopAuth, TimeNs: time.Now().UnixNano(),
			AuthDecision: "denied", AuthRule: desc, Outcome: recorder.OutcomeDenied,
			ErrorCode: jsonrpc.CodeUnauthorized, ErrorMessage: desc,
			GatewayInstance: g.instance, GatewayVersion: g.version, ConfigHash: g.conf().Hash,
		})
	}
	g.logger.Warn("request denied", "request_id", reqID, "reason", desc, "detail", err.Error(), "remote", r.RemoteAddr)
	return nil, false
}

// closeUnread makes the connection of an answered request close without
// reading the rest of its body. net/http would otherwise drain up to 256 KiB
// of it before sending the answer and again when the handler returns, and a
// client trickling its body would hold the connection (unauthenticated,
// before a 401) for as long as it likes. Call it after writing the answer.
func closeUnread(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// readBody reads a POST body within the configured limit. A declared length
// over the limit is refused before anything is read.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, reqID string) ([]byte, bool) {
	limit := g.conf().MaxBodyBytes
	if limit <= 0 {
		limit = config.DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		writeRPCError(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.CodeRequestTooLarge, "mcptrail: request body exceeds max_body_bytes", reqID)
		closeUnread(w)
		return nil, false
	}
	// The body must arrive within limits.body_read_timeout of the headers.
	timeout := cmp.Or(g.conf().Limits.BodyReadTimeout, config.DefaultBodyReadTimeout)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := readAllSized(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeRPCError(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.CodeRequestTooLarge, "mcptrail: request body exceeds max_body_bytes", reqID)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeRPCError(w, http.StatusRequestTimeout, nil, jsonrpc.CodeRequestTimeout, "mcptrail: request body not received within limits.body_read_timeout ("+timeout.String()+")", reqID)
			closeUnread(w)
			g.logger.Warn("request body too slow: connection closed", "request_id", reqID, "timeout", timeout, "remote", r.RemoteAddr)
		default:
			writeRPCError(w, http.StatusBadRequest, nil, jsonrpc.CodeParseError, "mcptrail: reading request body: "+err.Error(), reqID)
		}
		return nil, false
	}
	return body, true
}

// readAllSized reads r to the end, in one allocation when the length is
// known in advance.
func readAllSized(r io.Reader, length int64) ([]byte, error) {
	if length <= 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, length+1) // +1 detects a body longer than declared
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:n], nil
	case err != nil:
		return nil, err
	}
	// Longer than declared: read the rest the slow way.
	rest, err := io.ReadAll(r)
	return append(buf, rest...), err
}

// decode parses one message, answering decode errors itself. A message
// refused for an ambiguous key is recorded as a denial of principal p.
func (g *Gateway) decode(w http.ResponseWriter, body []byte, reqID string, p *auth.Principal) (jsonrpc.Message, bool) {
	msg, err := jsonrpc.Decode(body)
	if err != nil {
		code, id := jsonrpc.ErrorCode(err)
		if g.recordAmbiguous(reqID, p, err) {
			if sw, ok := w.(*statusWriter); ok {
				sw.deniedRule = RuleAmbiguousKey
			}
		}
		writeRPCError(w, http.StatusBadRequest, id, code, "mcptrail: "+err.Error(), reqID)
		return msg, false
	}
	return msg, true
}

// readMessage authenticates a POST, reads its body within the limit and
// decodes one message, answering every failure itself. Once the caller is
// authenticated, a request ID taken from the client's X-Request-Id is
// scoped to its principal (auth.Principal.ScopeRequestID) in *reqID.
func (g *Gateway) readMessage(w http.ResponseWriter, r *http.Request, reqID *string) (p *auth.Principal, msg jsonrpc.Message, size int, ok bool) {
	if p, ok = g.authenticate(w, r, *reqID); !ok {
		return
	}
	if *reqID == r.Header.Get(HeaderRequestID) {
		*reqID = p.ScopeRequestID(*reqID)
	}
	body, ok := g.readBody(w, r, *reqID)
	if !ok {
		return
	}
	msg, ok = g.decode(w, body, *reqID, p)
	return p, msg, len(body), ok
}

// acceptOneWay handles the messages that get no JSON-RPC answer: client
// notifications, and client answers to server→client requests. It reports
// whether msg was one of them.
func (g *Gateway) acceptOneWay(sess *Session, msg jsonrpc.Message) bool {
	switch msg.Kind() {
	case jsonrpc.KindNotification:
		g.clientNotification(sess, msg)
	case jsonrpc.KindResponse:
		if !sess.deliver(msg) && !g.relayAnswer(sess, msg) {
			g.logger.Warn("answer to an unknown server request", "session_id", sess.recID, "id", capForLog(string(msg.ID), maxRPCIDBytes))
		}
	default:
		return false
	}
	return true
}

func (g *Gateway) serveStreamable(w http.ResponseWriter, r *http.Request) {
	reqID, fromClient := g.requestIDFrom(r)
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		g.serveStreamGET(w, r, reqID)
		return
	case http.MethodDelete:
		p, ok := g.authenticate(w, r, reqID)
		if !ok {
			return
		}
		id := r.Header.Get("Mcp-Session-Id")
		if sess, ok := g.lookupSession(r, id, false, p, reqID, ""); ok && g.sessions.Delete(id, sess) {
			g.sealed.revoke(sess)
			g.revokeShared(sess, reqID)
			sess.close()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeRPCError(w, http.StatusNotFound, nil, jsonrpc.CodeInvalidRequest, "mcptrail: unknown session", reqID)
		return
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeRPCError(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "mcptrail: method not allowed", reqID)
		return
	}
	start := time.Now()
	principal, msg, size, ok := g.readMessage(w, r, &reqID)
	if !ok {
		return
	}

	sid := r.Header.Get("Mcp-Session-Id")
	var sess *Session
	switch {
	case msg.Method == "initialize":
		var err error
		if sess, err = g.initSession(msg, principal, reqID); err == nil {
			err = g.sessions.add(sess, g.conf().Limits)
		}
		if err != nil {
			g.refuseSession(w, r, err, msg.ID, reqID, principal)
			return
		}
	case sid != "":
		sess, ok = g.lookupSession(r, sid, false, principal, reqID, msg.Method)
		if !ok {
			// The spec's signal to re-initialize.
			writeRPCError(w, http.StatusNotFound, msg.ID, jsonrpc.CodeInvalidRequest, "mcptrail: unknown or expired session", reqID)
			return
		}
	case msg.Method == "server/discover" || isModernRequest(r, msg):
		// 2026-07-28 has no sessions: each request stands alone.
		if sess, ok = g.modernSession(w, r, msg, reqID); !ok {
			return
		}
	default:
		writeRPCError(w, http.StatusBadRequest, msg.ID, jsonrpc.CodeInvalidRequest, "mcptrail: missing Mcp-Session-Id header (initialize first)", reqID)
		return
	}

	if g.acceptOneWay(sess, msg) {
		w.Header().Set(HeaderRequestID, reqID)
		w.WriteHeader(http.StatusAccepted)
		return
	}

	out := &httpReplier{w: w, reqID: reqID, sessionID: sess.id, modern: sess.modern()}
	if !fromClient {
		// Generated here, but a valid ID in params._meta takes precedence.
		reqID = ""
	}
	resp := g.Serve(r.Context(), Inbound{Session: sess, Msg: msg, Header: r.Header, Principal: principal, RequestID: reqID, Size: size, Start: start, out: out})
	if msg.Method == "initialize" && resp.Error != nil {
		// A refused initialize opens no session.
		g.sessions.Delete(sess.id, sess)
		sess.close()
		out.mu.Lock()
		out.sessionID = ""
		out.mu.Unlock()
	}
	out.final(resp)
}

// refuseSession answers a new session refused at a cap (limits.*).
func (g *Gateway) refuseSession(w http.ResponseWriter, r *http.Request, err error, id json.RawMessage, reqID string, p *auth.Principal) {
	status := http.StatusServiceUnavailable
	var le *errSessionLimit
	if errors.As(err, &le) {
		status = le.status
		g.metrics.limitRefusal(r.Context(), le.limit)
	}
	w.Header().Set("Retry-After", "60")
	writeRPCError(w, status, id, jsonrpc.CodeInvalidRequest, err.Error(), reqID)
	g.logger.Warn("session refused", "request_id", reqID, "principal", principalName(p), "reason", err.Error(), "remote", r.RemoteAddr)
}

// isModernRequest reports a 2026-07-28 request: it carries its protocol
// version in the header or in _meta instead of a session.
func isModernRequest(r *http.Request, msg jsonrpc.Message) bool {
	if h := r.Header.Get("Mcp-Protocol-Version"); h != "" && !slices.Contains(clientVersions, h) {
		// A version of the sessionless era, or one the gateway does not
		// know: modernSession accepts the first and refuses the second.
		return true
	}
	meta := requestMeta(msg)
	if meta == nil {
		return false
	}
	_, ok := meta.GetString(metaProtocolVersion)
	return ok
}

// clientNotification handles a notification from a client.
func (g *Gateway) clientNotification(sess *Session, msg jsonrpc.Message) {
	bs := g.bs()
	switch msg.Method {
	case "notifications/initialized":
	case "notifications/cancelled":
		o, err := jsonrpc.ParseObject(msg.Params)
		if err != nil {
			return
		}
		reason, _ := o.GetString("reason")
		sess.cancelCall(o.Get("requestId"), reason)
	case "notifications/roots/list_changed":
		// To the backends this session sent requests to, on the connection
		// that declared its capabilities (profile.go): only they can have
		// asked it for roots. Others sharing that connection's profile
		// are other clients' business.
		key, _, _ := sess.capabilityProfile()
		for _, name := range bs.order {
			if !sess.usedBackend(name) {
				continue
			}
			if s := bs.byName[name].variantSnaps()[key]; s != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = s.conn.notify(ctx, msg.Method, nil)
				cancel()
			}
		}
	}
}

// httpReplier answers one POST: as a single JSON body when nothing needs to
// reach the client first, or as an SSE stream once something does.
type httpReplier struct {
	w         http.ResponseWriter
	reqID     string
	sessionID string
	mu        sync.Mutex
	sse       bool
	done      bool
	stuck     bool // a write timed out: the client stopped reading
	modern    bool // a 2026-07-28 request: an unknown method is HTTP 404
}

var (
	errReplied = errors.New("request already answered")
	errStuck   = errors.New("client stopped reading its stream")
)

// notifyWriteTimeout bounds one write of a notification to a client's
// stream. Notifications are written on the goroutine that reads the
// backend, so a client that stops reading must not stall every call on that
// backend for longer than this.
const notifyWriteTimeout = 5 * time.Second

// setRequestID adopts the ID the gateway settled on (the client may send
// it in params._meta instead of the header).
func (h *httpReplier) setRequestID(id string) {
	h.mu.Lock()
	h.reqID = id
	h.mu.Unlock()
}

func (h *httpReplier) header(contentType string, status int) {
	hd := h.w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set(HeaderRequestID, h.reqID)
	if h.sessionID != "" {
		hd.Set("Mcp-Session-Id", h.sessionID)
	}
	if contentType == "text/event-stream" {
		hd.Set("Cache-Control", "no-cache")
	}
	h.w.WriteHeader(status)
}

func (h *httpReplier) notify(b []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return errReplied
	}
	if h.stuck {
		return errStuck
	}
	if !h.sse {
		h.sse = true
		h.header("text/event-stream", http.StatusOK)
	}
	rc := http.NewResponseController(h.w)
	_ = rc.SetWriteDeadline(time.Now().Add(notifyWriteTimeout))
	err := writeSSE(h.w, b)
	_ = rc.SetWriteDeadline(time.Time{})
	if err != nil {
		h.stuck = true
	}
	return err
}

// finalWriteTimeout bounds writing a request's answer (a variable for
// tests): a client that stops reading it must not hold the handler and its
// connection forever. Generous, for large answers on slow links.
var finalWriteTimeout = 60 * time.Second

func (h *httpReplier) final(m jsonrpc.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = true
	b := m.Marshal()
	// Also covers the flush net/http does after the handler returns; the
	// server clears it before the connection's next request.
	_ = http.NewResponseController(h.w).SetWriteDeadline(time.Now().Add(finalWriteTimeout))
	if h.sse {
		_ = writeSSE(h.w, b)
		return
	}
	status := http.StatusOK
	if h.modern && m.Error != nil && m.Error.Code == jsonrpc.CodeMethodNotFound {
		status = http.StatusNotFound
	}
	if ra := retryAfterHeader(m); ra != "" {
		h.w.Header().Set("Retry-After", ra)
	}
	h.header("application/json", status)
	_, _ = h.w.Write(b)
}

// streamWriteTimeout bounds one write to a standalone stream (a variable
// for tests).
var streamWriteTimeout = notifyWriteTimeout

// streamWriter writes a standalone stream's messages (and keepalives), each
// within streamWriteTimeout: a client that stops reading its stream ends it
// (and frees its goroutine and connection) instead of blocking it forever.
func streamWriter(w http.ResponseWriter) func([]byte) error {
	rc := http.NewResponseController(w)
	return func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		return writeSSE(w, b)
	}
}

func writeSSE(w http.ResponseWriter, b []byte) error {
	var err error
	if b == nil {
		_, err = io.WriteString(w, ": keepalive\n\n")
	} else {
		buf := make([]byte, 0, len(b)+24)
		buf = append(buf, "event: message\ndata: "...)
		buf = append(buf, b...)
		buf = append(buf, "\n\n"...)
		_, err = w.Write(buf)
	}
	if err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// serveStreamGET is the standalone SSE stream of a streamable-HTTP session.
func (g *Gateway) serveStreamGET(w http.ResponseWriter, r *http.Request, reqID string) {
	p, ok := g.authenticate(w, r, reqID)
	if !ok {
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		writeRPCError(w, http.StatusNotAcceptable, nil, jsonrpc.CodeInvalidRequest, "mcptrail: GET /mcp needs Accept: text/event-stream", reqID)
		return
	}
	sess, ok := g.lookupSession(r, r.Header.Get("Mcp-Session-Id"), false, p, reqID, "")
	if !ok {
		writeRPCError(w, http.StatusNotFound, nil, jsonrpc.CodeInvalidRequest, "mcptrail: unknown or expired session", reqID)
		return
	}
	if !sess.claimStream() {
		// One stream per session, so no message is split between two.
		writeRPCError(w, http.StatusConflict, nil, jsonrpc.CodeInvalidRequest, "mcptrail: this session already has an open GET stream (one per session); close it first", reqID)
		return
	}
	defer sess.releaseStream()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Mcp-Session-Id", sess.id)
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	ctx, cancel := g.streamContext(r.Context())
	defer cancel()
	sess.streamLoop(ctx, streamWriter(w))
}

// streamContext ends a long-lived stream when the client goes or the
// gateway closes its streams.
func (g *Gateway) streamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(g.streams, cancel)
	return ctx, func() { stop(); cancel() }
}

// serveSSE is the legacy (2024-11-05) SSE transport: GET /sse opens the
// stream and names the endpoint for POSTs; every answer goes on the stream.
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	reqID, _ := g.requestIDFrom(r)
	if r.Method != http.MethodGet {
		writeRPCError(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "mcptrail: GET /sse opens the stream", reqID)
		return
	}
	p, ok := g.authenticate(w, r, reqID)
	if !ok {
		return
	}
	sess := g.newSession(newID(), p)
	sess.legacy = true
	sess.claimStream()
	if err := g.sessions.add(sess, g.conf().Limits); err != nil {
		g.refuseSession(w, r, err, nil, reqID, p)
		return
	}
	defer func() {
		g.sessions.Delete(sess.id, sess)
		sess.close()
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "event: endpoint\ndata: /message?sessionId="+sess.id+"\n\n"); err != nil {
		return
	}
	_ = http.NewResponseController(w).Flush()
	ctx, cancel := g.streamContext(r.Context())
	defer cancel()
	sess.streamLoop(ctx, streamWriter(w))
}

// sessionReplier sends request-related messages on the session stream.
type sessionReplier struct{ s *Session }

func (r sessionReplier) notify(b []byte) error { r.s.push(b); return nil }

func (g *Gateway) serveSSEMessage(w http.ResponseWriter, r *http.Request) {
	reqID, fromClient := g.requestIDFrom(r)
	if r.Method != http.MethodPost {
		writeRPCError(w, http.StatusMethodNotAllowed, nil, jsonrpc.CodeInvalidRequest, "mcptrail: POST /message", reqID)
		return
	}
	start := time.Now()
	principal, msg, size, ok := g.readMessage(w, r, &reqID)
	if !ok {
		return
	}
	sess, ok := g.lookupSession(r, r.URL.Query().Get("sessionId"), true, principal, reqID, msg.Method)
	if !ok {
		writeRPCError(w, http.StatusNotFound, msg.ID, jsonrpc.CodeInvalidRequest, "mcptrail: unknown sessionId", reqID)
		return
	}
	if !fromClient {
		// The 202 goes out now, before Serve runs: settle the ID Serve
		// would take from params._meta here, so header and answer agree.
		reqID = g.metaRequestID(msg, principal, reqID)
	}
	w.Header().Set(HeaderRequestID, reqID)
	if msg.Kind() == jsonrpc.KindRequest {
		// A request: the 202 goes out before it is served, so nothing
		// else bounds how many one session has running.
		max := cmp.Or(g.conf().Limits.MaxInflightPerSession, config.DefaultMaxInflightPerSession)
		if n := sess.legacyIn.Add(1); int(n) > max {
			sess.legacyIn.Add(-1)
			g.metrics.limitRefusal(r.Context(), limitInflightPerSession)
			w.Header().Set("Retry-After", "1")
			writeRPCError(w, http.StatusTooManyRequests, msg.ID, jsonrpc.CodeLimited, "mcptrail: "+strconv.Itoa(max)+
				" requests of this session are being served (limits.max_inflight_per_session); wait for an answer",
				reqID, "limit", limitInflightPerSession)
			return
		}
	}
	if msg.Kind() == jsonrpc.KindRequest {
		sess.accept(msg.ID) // before the 202: a cancel sent after it finds the request
	}
	w.WriteHeader(http.StatusAccepted)
	if g.acceptOneWay(sess, msg) {
		return
	}
	g.inflight.Add(1)
	go func() {
		defer g.inflight.Done()
		defer sess.release(msg.ID)
		resp := g.Serve(context.Background(), Inbound{Session: sess, Msg: msg, Header: r.Header.Clone(), Principal: principal, RequestID: reqID, Size: size, Start: start, out: sessionReplier{sess}})
		sess.legacyIn.Add(-1) // served: before the client can see the answer
		// The answer is the only copy the client gets: wait for room on
		// the stream rather than drop it.
		sess.pushWait(resp.Marshal(), 30*time.Second)
	}()
}
