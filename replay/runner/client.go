package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/secrets"
)

// clientSession replays one recorded client session against the gateway:
// initialize (the recorded one when present), then every request in order.
// Requests recorded in a sessionless revision (2026-07-28: no initialize,
// version and client in each request's _meta) are sent that way again, with
// the recorded protocol version and the standard headers; a multi
// round-trip chain's retry carries the requestState and input keys the
// gateway minted in this replay.
func clientSession(ctx context.Context, o Options, reqs []replay.Request, idx []int, cases []*report.Case, tick func()) error {
	var initReq *replay.Request
	principal := ""
	legacy := false // the session has requests of a session-era revision
	for _, i := range idx {
		r := &reqs[i]
		if r.Method == "initialize" && initReq == nil {
			initReq = r
		}
		if r.Method == "initialize" || sessionlessVersion(r) == "" {
			legacy = true
		}
		for _, e := range []*recorder.Event{r.Inbound, r.Response} {
			if e != nil && principal == "" {
				principal = e.Principal
			}
		}
	}
	headers := map[string]string{}
	if tok, ok := o.Tokens[principal]; ok {
		headers["Authorization"] = "Bearer " + tok
	} else if tok, ok := o.Tokens[""]; ok {
		headers["Authorization"] = "Bearer " + tok
	}
	cur := &currentRequest{}
	if !o.KeepPlaceholders {
		cur.fill = o.Secrets.FillAll
	}
	// One transport per protocol version: the session's, and one per
	// sessionless version (never initialized, no session id).
	trs := map[string]*transport.StreamableHTTP{}
	defer func() {
		for _, tr := range trs {
			_ = tr.Close()
		}
	}()
	open := func(version string) (*transport.StreamableHTTP, error) {
		if tr := trs[version]; tr != nil {
			return tr, nil
		}
		tr, err := transport.NewStreamableHTTP(o.GatewayURL, transport.WithHTTPHeaders(headers))
		if err != nil {
			return nil, fmt.Errorf("connecting to gateway %s: %w", o.GatewayURL, err)
		}
		tr.SetRequestHandler(cur.answer)
		tr.SetNotificationHandler(cur.notification)
		if version != "" {
			tr.SetProtocolVersion(version)
		}
		if err := tr.Start(ctx); err != nil {
			return nil, fmt.Errorf("starting gateway session: %w", err)
		}
		trs[version] = tr
		return tr, nil
	}

	sessionErr := func(err error) {
		var unresolved *secrets.UnresolvedError
		skip := errors.As(err, &unresolved)
		for _, i := range idx {
			if reqs[i].Method == "initialize" {
				continue
			}
			recorded := recordedAnswer(&reqs[i], o.Secrets, o.KeepPlaceholders)
			c := report.Failed(recorded, err)
			if skip {
				// Nothing was sent: like a request with an unresolved
				// placeholder, the session is skipped, not failed.
				c = report.Skipped(recorded, err.Error())
			}
			hideSecrets(o.Secrets, &c)
			cases[i] = &c
			tick()
		}
	}
	if legacy {
		tr, err := open("")
		if err == nil {
			err = initialize(ctx, o, tr, initReq)
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr // interrupted: not a gateway failure
			}
			sessionErr(fmt.Errorf("initializing a gateway session: %w", err))
			return nil
		}
	}

	p := pacer{speed: o.Speed}
	seq := 0
	chains := &chains{}
	for _, i := range idx {
		r := &reqs[i]
		if r.Method == "initialize" {
			continue
		}
		recorded := recordedAnswer(r, o.Secrets, o.KeepPlaceholders)
		version := sessionlessVersion(r)
		tr, err := open(version)
		var c report.Case
		if err != nil {
			c = report.Failed(recorded, err)
		} else {
			c = clientRequest(ctx, o, tr, cur, &p, r, recorded, &seq, version, chains)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		hideSecrets(o.Secrets, &c)
		cases[i] = &c
		tick()
	}
	return nil
}

// sessionlessVersion is the protocol version r was recorded with when it
// is a sessionless revision's (2026-07-28 and later), else "".
func sessionlessVersion(r *replay.Request) string {
	for _, e := range []*recorder.Event{r.Inbound, r.Response} {
		if e != nil && e.SessionID == "" && mcp.IsModernProtocol(e.ProtocolVersion) {
			return e.ProtocolVersion
		}
	}
	return ""
}

func clientRequest(ctx context.Context, o Options, tr *transport.StreamableHTTP, cur *currentRequest, p *pacer,
	r *replay.Request, recorded diff.Exchange, seq *int, version string, ch *chains) report.Case {
	switch {
	case r.Inbound == nil || r.Inbound.Params == nil && r.Response == nil:
		return report.Skipped(recorded, "the client request was not recorded")
	case r.Response == nil:
		return report.Skipped(recorded, "the client response was not recorded")
	case r.Inbound.PayloadTruncated || r.Response.PayloadTruncated:
		return report.Skipped(recorded, "the recorded payload was truncated at the payload cap")
	}
	if o.Mode == ModeE2E && r.Method == "tools/call" {
		// e2e reaches live backends: the same write guard as upstream.
		server, tool := r.Server, ""
		if up := r.FinalUpstream(); up != nil {
			var pr struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(up.Params, &pr)
			server, tool = up.Server, pr.Name
		} else {
			sep := o.Separator
			if sep == "" {
				sep = "."
			}
			server, tool, _ = strings.Cut(r.Target, sep)
		}
		if why := o.writeGuard(server, tool); why != "" {
			return report.Skipped(recorded, why)
		}
	}
	*seq++
	token := "replay-" + strconv.Itoa(*seq)
	params := rewriteParams(r.Inbound.Params, token)
	// Name the recorded request, so a mock answers exactly its answers and
	// a recording candidate gateway files the replay next to it.
	params = withRequestID(params, match.ReplayRequestID(r.RequestID))
	if !o.KeepPlaceholders {
		filled, err := o.Secrets.FillAll(params)
		if err != nil {
			return report.Skipped(recorded, err.Error())
		}
		params = filled
	}
	if err := p.wait(ctx, r.Inbound.TimeNs); err != nil {
		return report.Failed(recorded, err)
	}
	if err := o.markSent(ctx, r.RequestID); err != nil {
		return report.Failed(recorded, err)
	}
	if o.Mode == ModeE2E {
		// A live stdio backend's request to the client carries no link to
		// its call: the gateway can route it only while its call is the
		// only one in flight.
		unlock := o.exclusive(r)
		defer unlock()
	}
	cur.set(r)
	cur.setToken(token)
	defer cur.set(nil)
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t0 := time.Now()
	params = ch.resume(params)
	req := transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(*seq)), Method: r.Method}
	if len(params) > 0 {
		req.Params = json.RawMessage(params)
	}
	if h := mcp.StandardHeaders(version, mcp.MCPMethod(r.Method), params); len(h) > 0 {
		req.Header = http.Header{}
		for k, v := range h {
			req.Header.Set(k, v)
		}
	}
	resp, err := tr.SendRequest(rctx, req)
	dur := time.Since(t0)
	if err != nil {
		return report.Failed(recorded, fmt.Errorf("sending %s to the gateway: %w", r.Method, err))
	}
	replayed := diff.Exchange{Method: r.Method, DurationUs: max(dur.Microseconds(), 1)}
	if resp.Error != nil {
		replayed.Response = responseJSON(nil, resp.Error.Code, resp.Error.Message, resp.Error.Data)
	} else {
		replayed.Response = resp.Result
		ch.note(r.Response, resp.Result)
	}
	replayed.Outcome, replayed.ErrorCode = gatewayOutcome(replayed.Response)
	replayed.Response = normalizeAnswer(replayed.Response)
	o.Logger.Debug("replayed", "request_id", r.RequestID, "method", r.Method, "target", r.Target, "duration", dur)
	c := report.WithProgress(report.Compared(recorded, replayed, o.Ignore), r.Progress(), cur.takeProgress(), o.Ignore)
	return report.WithLogs(c, r.Logs(), cur.takeLogs(), o.Ignore)
}

// recordedAnswer is the exchange a client-side replay is compared with: the
// recorded response hop, normalized. Its outcome is derived from the answer
// itself (like the replayed one's), so a recorded denial compares equal to a
// replayed denial.
func recordedAnswer(r *replay.Request, s *secrets.Secrets, keep bool) diff.Exchange {
	var x diff.Exchange
	if r.Response != nil {
		x = replay.Exchange(r.Response)
		if x.Response != nil {
			x.Outcome, x.ErrorCode = gatewayOutcome(x.Response)
			x.Response = normalizeAnswer(x.Response)
			if !keep {
				x.Response = fillRecorded(s, x.Response)
			}
		}
	}
	x.RequestID, x.SessionID, x.Method, x.Server, x.Target = r.RequestID, r.SessionID, r.Method, r.Server, r.Target
	return x
}

// gatewayOutcome labels an answer the way the recording (calls, trace)
// labels it: the gateway's own error for a backend that timed out (-32004)
// or failed (-32001), stamped with its request id, is a transport error;
// anything else is derived from the answer (ok).
func gatewayOutcome(answer []byte) (recorder.Outcome, int) {
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			RequestID string `json:"requestId"`
			Server    string `json:"server"`
		} `json:"data"`
	}
	if json.Unmarshal(answer, &e) == nil && e.Message != "" && e.Data.RequestID != "" && e.Data.Server != "" &&
		(e.Code == jsonrpc.CodeRequestTimeout || e.Code == jsonrpc.CodeBackendUnavailable) {
		return recorder.OutcomeTransportError, e.Code
	}
	return recorder.OutcomeOK, 0
}

// initialize opens the gateway session with the recorded initialize params
// (or a minimal set), then sends notifications/initialized.
func initialize(ctx context.Context, o Options, tr *transport.StreamableHTTP, r *replay.Request) error {
	params := json.RawMessage(`{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcptrail-replay","version":"1"}}`)
	if r != nil && r.Inbound != nil && len(r.Inbound.Params) > 0 {
		params = rewriteParams(r.Inbound.Params, "")
		if !o.KeepPlaceholders {
			filled, err := o.Secrets.FillAll(params)
			if err != nil {
				return err // never send an unresolved placeholder
			}
			params = filled
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(int64(0)), Method: "initialize", Params: params})
	if err != nil {
		return err
	}
	if resp.Error != nil {
		return fmt.Errorf("initialize: %d %s", resp.Error.Code, resp.Error.Message)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	_ = json.Unmarshal(resp.Result, &res)
	if res.ProtocolVersion != "" {
		tr.SetProtocolVersion(res.ProtocolVersion)
	}
	o.against.noteInitialize("gateway", o.GatewayURL, nil, resp.Result)
	return tr.SendNotification(ctx, mcp.JSONRPCNotification{JSONRPC: "2.0", Notification: mcp.Notification{Method: "notifications/initialized"}})
}

// currentRequest answers server→client requests (sampling, elicitation,
// roots) of the request in flight with what the client answered when it was
// recorded.
type currentRequest struct {
	// fill prepares recorded answers for a live backend (see
	// recordedServerAnswer); nil in mock mode, where only the mock sees them.
	fill func([]byte) ([]byte, error)
	mu   sync.Mutex
	r    *replay.Request
	used map[int]bool
	// token is the progress token of the request in flight; progress
	// collects the params of its progress notifications.
	token    string
	progress []json.RawMessage
	// logs collects the params of the log notifications that arrive while
	// the request is in flight (on its own stream: the replay opens no
	// other).
	logs []json.RawMessage
}

func (c *currentRequest) set(r *replay.Request) {
	c.mu.Lock()
	c.r, c.used = r, map[int]bool{}
	c.mu.Unlock()
}

func (c *currentRequest) setToken(tok string) {
	c.mu.Lock()
	c.token, c.progress, c.logs = tok, nil, nil
	c.mu.Unlock()
}

// notification keeps the progress and log notifications of the request in
// flight.
func (c *currentRequest) notification(n mcp.JSONRPCNotification) {
	if n.Method != "notifications/progress" && n.Method != "notifications/message" {
		return
	}
	b, err := json.Marshal(n.Params)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.Method == "notifications/message" {
		if c.r != nil {
			c.logs = append(c.logs, b)
		}
		return
	}
	if tok, _ := n.Params.AdditionalFields["progressToken"].(string); tok != "" && tok == c.token {
		c.progress = append(c.progress, b)
	}
}

func (c *currentRequest) takeLogs() []json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.logs
	c.logs = nil
	return l
}

func (c *currentRequest) takeProgress() []json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress
	c.progress = nil
	return p
}

func (c *currentRequest) answer(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.r == nil {
		return transport.NewJSONRPCErrorResponse(req.ID, -32601, "mcptrail replay: no request in flight", nil), nil
	}
	return recordedServerAnswer(c.r, c.used, req, c.fill), nil
}

// recordedServerAnswer finds the next unused recorded server_request hop of
// r with the same method and returns its recorded answer. When fill is not
// nil the answer goes to a live backend: fill (Secrets.FillAll) restores its
// redacted values, and an answer that would keep an unresolved placeholder
// is replaced by an error, so the placeholder is never sent.
func recordedServerAnswer(r *replay.Request, used map[int]bool, req transport.JSONRPCRequest, fill func([]byte) ([]byte, error)) *transport.JSONRPCResponse {
	for i, e := range r.Other {
		if e.Hop != recorder.HopServerRequest || e.Method != req.Method || used[i] {
			continue
		}
		used[i] = true
		if fill != nil {
			var err error
			if e.Result, err = fill(e.Result); err == nil {
				var msg []byte
				msg, err = fill([]byte(e.ErrorMessage))
				e.ErrorMessage = string(msg)
			}
			if err != nil {
				return transport.NewJSONRPCErrorResponse(req.ID, -32603,
					"mcptrail replay: the recorded client answer to "+req.Method+" for request "+r.RequestID+" cannot be sent: "+err.Error(), nil)
			}
		}
		if e.Outcome == recorder.OutcomeJSONRPCError {
			var eo struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Data    any    `json:"data"`
			}
			if json.Unmarshal(e.Result, &eo) != nil || eo.Code == 0 {
				eo.Code, eo.Message = int(e.ErrorCode), e.ErrorMessage
			}
			return transport.NewJSONRPCErrorResponse(req.ID, eo.Code, eo.Message, eo.Data)
		}
		if len(e.Result) == 0 {
			break
		}
		return transport.NewJSONRPCResultResponse(req.ID, json.RawMessage(e.Result))
	}
	return transport.NewJSONRPCErrorResponse(req.ID, -32601,
		"mcptrail replay: no recorded client answer to "+req.Method+" for request "+r.RequestID, nil)
}

// hasUnusedServerRequest reports whether r's recording holds a request of
// method from the backend to the client that has not been answered yet.
func hasUnusedServerRequest(r *replay.Request, used map[int]bool, method string) bool {
	for i, e := range r.Other {
		if e.Hop == recorder.HopServerRequest && e.Method == method && !used[i] {
			return true
		}
	}
	return false
}

// exclusive holds the replay's server-request lock for r: alone when r's
// recording holds requests from the backend to the client (sampling,
// elicitation, roots), shared otherwise, so that such a request always has
// exactly one call it can belong to, whatever the concurrency. It returns
// the unlock.
func (o Options) exclusive(r *replay.Request) func() {
	if o.serverReqs == nil {
		return func() {}
	}
	if slices.ContainsFunc(r.Other, func(e recorder.Event) bool { return e.Hop == recorder.HopServerRequest }) {
		o.serverReqs.Lock()
		return o.serverReqs.Unlock
	}
	o.serverReqs.RLock()
	return o.serverReqs.RUnlock
}

var errNoTarget = errors.New("no target configured for this server")
