package proxy

// Multi round-trip requests (2026-07-28) in front of session-era backends.
//
// A 2025 backend asks for sampling, elicitation or roots with a request of
// its own while it works on a call. A 2026 client cannot receive server
// requests: it expects the call to end with an InputRequiredResult and
// retries it with inputResponses. So the gateway holds the backend call
// open (a heldCall, detached from the client's HTTP request), answers the
// client with the backend's requests as inputRequests and a requestState
// that names the heldCall, and on the retry hands the client's responses to
// the waiting backend requests and goes on waiting for the call's outcome:
// the final result, or further requests (another InputRequiredResult).
//
// requestState tokens are random, single use, bound to the method, target
// and principal of the first request, and expire with
// Options.ServerRequestTimeout. A requestState the gateway did not mint is a
// 2026 backend's own: it is relayed byte for byte, and the retry reaches the
// same backend because it names the same tool, prompt or resource.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// RequestStatePrefix marks the requestState tokens the gateway mints, and
// InputKeyPrefix the inputRequests keys it mints (replay tells them from a
// backend's own).
const (
	RequestStatePrefix = "mcptrail-rs1."
	InputKeyPrefix     = "mcptrail-"
	requestStatePrefix = RequestStatePrefix
)

// mrtrMethods may answer InputRequiredResult.
var mrtrMethods = map[string]bool{"tools/call": true, "prompts/get": true, "resources/read": true}

// Recorder attribute keys linking the requests of one chain.
const (
	attrChainOrigin   = "mcp.mrtr.origin_request_id"
	attrChainPrevious = "mcp.mrtr.previous_request_id"
	attrChainRound    = "mcp.mrtr.round"
)

// heldCall is a backend call kept open across a client's round trips.
type heldCall struct {
	g       *Gateway
	inner   *call // runs the backend call; its hops carry the origin request ID
	method  string
	target  string
	princ   string // the OwnerKey of the principal that started the call
	origin  string
	events  chan heldEvent
	cancel  context.CancelFunc
	out     switchReplier
	mu      sync.Mutex
	waiting map[string]*inputRequest // key → backend request awaiting the client
	token   string                   // the requestState that resumes this call now
	last    string                   // request ID of the latest request of the chain
	round   int
	timer   *time.Timer
	ctx     context.Context // the held call's own context, done when it ends
	task    bool            // the call was made task-augmented upstream (tasks.go)
	holding bool            // counted in g.heldBy (under mu)
	ended   bool            // the backend call is over (under mu)
}

type heldEvent struct {
	final *jsonrpc.Message
	input *inputRequest
}

// inputRequest is one backend request waiting for the client's answer.
type inputRequest struct {
	key    string
	req    jsonrpc.Message
	answer chan jsonrpc.Message // buffered, 1
}

// switchReplier sends an in-flight call's messages (progress, logs) to the
// client request that currently continues it; between round trips there is
// none and they are dropped, as the revision has no stream for them.
type switchReplier struct {
	mu  sync.Mutex
	cur replier
}

func (s *switchReplier) set(r replier) {
	s.mu.Lock()
	s.cur = r
	s.mu.Unlock()
}

func (s *switchReplier) notify(b []byte) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return errReplied
	}
	return r.notify(b)
}

// mrtrEligible reports whether c is a 2026 client's request that may end
// with an InputRequiredResult.
func (c *call) mrtrEligible() bool {
	return c.sess.modern() && mrtrMethods[c.msg.Method]
}

// serveModern serves a 2026 client's tools/call, prompts/get or
// resources/read: a retry that carries a gateway requestState resumes its
// held call; anything else starts one.
func (c *call) serveModern(ctx context.Context) jsonrpc.Message {
	if st, ok := c.params.GetString("requestState"); ok && strings.HasPrefix(st, requestStatePrefix) {
		return c.resume(ctx, st)
	}
	g := c.g
	inner := &call{g: g, ps: c.ps, sess: c.sess, msg: c.msg, params: c.params, meta: c.meta, reqID: c.reqID,
		start: c.start, inSize: c.inSize, princ: c.princ, traceID: c.traceID, spanID: c.spanID, target: c.target}
	inner.seq.Store(c.seq.Load())
	h := &heldCall{g: g, inner: inner, method: c.msg.Method, target: c.target, origin: c.reqID, last: c.reqID,
		events: make(chan heldEvent, 8), waiting: map[string]*inputRequest{}}
	h.princ = c.princ.OwnerKey()
	h.task = c.taskAugment()
	h.out.set(c.out)
	inner.out = &h.out
	inner.held = h
	// The backend call outlives this HTTP request: detach it, keeping the
	// trace, and end it at shutdown or when the client stops retrying.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.streams, cancel)
	h.cancel = func() { stop(); cancel() }
	h.ctx = hctx
	inner.cancel = h.cancel
	g.inflight.Add(1)
	go func() {
		defer g.inflight.Done()
		defer h.cancel()
		resp := inner.dispatch(hctx)
		h.unhold() // before the outcome is seen: its place is free by then
		h.deliver(resp)
	}()
	return h.next(ctx, c)
}

// deliver hands the held call's outcome to the client request waiting for
// it. When the call was cancelled (expired, client gone, shutdown) nobody
// may ever read it, and events may be full of unanswered input requests:
// give up then rather than block the call's goroutine forever.
func (h *heldCall) deliver(resp jsonrpc.Message) {
	select {
	case h.events <- heldEvent{final: &resp}:
	case <-h.ctx.Done():
	}
}

// resume continues a held call with the client's inputResponses.
func (c *call) resume(ctx context.Context, token string) jsonrpc.Message {
	v, ok := c.g.held.Load(token)
	if !ok {
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: unknown or expired requestState")
	}
	h := v.(*heldCall)
	princ := c.princ.OwnerKey()
	if h.method != c.msg.Method || h.target != c.target || h.princ != princ {
		// Not this chain's retry: leave the held call to its own client.
		// It is never taken out of held, so its expiry still finds it.
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: requestState does not belong to this request")
	}
	if !c.g.held.CompareAndDelete(token, h) {
		// Expired, or another retry took it, since the Load.
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: unknown or expired requestState")
	}
	var responses map[string]json.RawMessage
	_ = json.Unmarshal(c.params.Get("inputResponses"), &responses)
	h.mu.Lock()
	h.timer.Stop()
	h.answerRound(c, responses)
	h.mu.Unlock()
	h.out.set(c.out)
	return h.next(ctx, c)
}

// next waits for what the held call does next and answers the client
// request c with it: the call's outcome, or its requests for input.
func (h *heldCall) next(ctx context.Context, c *call) jsonrpc.Message {
	h.mu.Lock()
	pending := len(h.waiting)
	h.mu.Unlock()
	if pending > 0 {
		// The client left some requests unanswered: ask again.
		return h.inputRequired(c)
	}
	select {
	case ev := <-h.events:
		if ev.final != nil {
			return h.finish(c, *ev.final)
		}
		h.add(ev.input)
		// Backends may ask several things at once: gather what is
		// already there into one InputRequiredResult.
		for {
			select {
			case ev := <-h.events:
				if ev.final != nil {
					// Cannot happen while requests wait; keep it for later.
					h.events <- ev
					return h.inputRequired(c)
				}
				h.add(ev.input)
				continue
			default:
			}
			return h.inputRequired(c)
		}
	case <-h.ctx.Done():
		// The held call ended (shutdown): take its outcome if it left one.
		select {
		case ev := <-h.events:
			if ev.final != nil {
				return h.finish(c, *ev.final)
			}
		default:
		}
		c.outcome = recorder.OutcomeTransportError
		return c.fail(jsonrpc.CodeInternalError, "mcptrail: request cancelled")
	case <-ctx.Done():
		// The client went away: nobody will retry this chain.
		h.out.set(nil)
		h.cancel()
		c.outcome = recorder.OutcomeTransportError
		return c.fail(jsonrpc.CodeInternalError, "mcptrail: request cancelled")
	}
}

func (h *heldCall) add(in *inputRequest) {
	h.mu.Lock()
	h.waiting[in.key] = in
	h.mu.Unlock()
}

// finish copies the held call's outcome onto the client request that gets
// its final answer.
func (h *heldCall) finish(c *call, resp jsonrpc.Message) jsonrpc.Message {
	h.out.set(nil)
	in := h.inner
	c.server, c.routeRule, c.authResult, c.authRule = in.server, in.routeRule, in.authResult, in.authRule
	c.outcome, c.errCode, c.errMsg = in.outcome, in.errCode, in.errMsg
	if c.reqID == h.origin {
		c.seq.Store(in.seq.Load())
	}
	resp.ID = c.msg.ID
	if h.task {
		resp = c.taskCreated(in.server, resp)
	}
	return resp
}

// hold counts the call as held for its principal, once; it reports false
// when the principal already holds limits.max_held_per_principal calls.
func (h *heldCall) hold() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding || h.ended {
		return true
	}
	max := cmp.Or(h.g.conf().Limits.MaxHeldPerPrincipal, config.DefaultMaxHeldPerPrincipal)
	if !h.g.heldBy.acquire(h.princ, max) {
		return false
	}
	h.holding = true
	return true
}

// unhold ends the count of a call whose backend call is over.
func (h *heldCall) unhold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding {
		h.g.heldBy.release(h.princ)
		h.holding = false
	}
	h.ended = true
}

// inputRequired answers c with the backend requests that wait, under a
// fresh requestState, and keeps the call held until the retry or expiry.
// A principal holds at most limits.max_held_per_principal such calls: one
// more is cancelled and c refused.
func (h *heldCall) inputRequired(c *call) jsonrpc.Message {
	h.out.set(nil)
	if !h.hold() {
		h.cancel()
		max := cmp.Or(h.g.conf().Limits.MaxHeldPerPrincipal, config.DefaultMaxHeldPerPrincipal)
		c.server, c.routeRule = h.inner.server, h.inner.routeRule
		return c.refuseAtLimit(context.WithoutCancel(h.ctx), limitHeldPerPrincipal, RuleHeldPerPrincipal,
			"mcptrail: "+strconv.Itoa(max)+" calls of this principal already wait for input (limits.max_held_per_principal); answer or abandon one first", 0)
	}
	token := newRequestState()
	h.mu.Lock()
	reqs := h.inputRequests()
	h.token = token
	timeout := h.g.opts.ServerRequestTimeout
	h.timer = time.AfterFunc(timeout, func() { h.expire(token) })
	h.mu.Unlock()
	h.g.held.Store(token, h)
	res := &jsonrpc.Object{}
	res.Set("resultType", json.RawMessage(`"input_required"`))
	res.Set("inputRequests", reqs)
	res.SetString("requestState", token)
	c.server, c.routeRule = h.inner.server, h.inner.routeRule
	c.attrs = append(c.attrs, recorder.Attr{Key: "mcp.result_type", Value: "input_required"})
	return jsonrpc.NewResult(c.msg.ID, res.Marshal())
}

// inputRequests renders the backend requests that wait as the revision's
// InputRequests map. mu held.
func (h *heldCall) inputRequests() json.RawMessage {
	reqs := &jsonrpc.Object{}
	for key, in := range h.waiting {
		o := &jsonrpc.Object{}
		o.SetString("method", in.req.Method)
		params := in.req.Params
		if params == nil {
			params = json.RawMessage(`{}`) // roots/list has none; the request object needs them
		}
		o.Set("params", params)
		reqs.Set(key, o.Marshal())
	}
	return reqs.Marshal()
}

// expire ends a chain whose client did not retry in time: the backend's
// requests are refused and its call cancelled.
func (h *heldCall) expire(token string) {
	if _, ok := h.g.held.LoadAndDelete(token); !ok {
		return
	}
	h.mu.Lock()
	for key, in := range h.waiting {
		in.answer <- jsonrpc.NewError(in.req.ID, jsonrpc.CodeRequestTimeout, "mcptrail: the client did not retry with an answer to "+in.req.Method, errorData(h.origin))
		delete(h.waiting, key)
	}
	h.mu.Unlock()
	h.cancel()
}

// heldRequest turns a backend's request during a held call into an input
// request for the client and waits for the answer its retry brings.
func (c *call) heldRequest(ctx context.Context, b *Backend, req jsonrpc.Message) jsonrpc.Message {
	h := c.held
	in := &inputRequest{key: InputKeyPrefix + strconv.FormatInt(c.g.tokenSeq.Add(1), 36), req: req, answer: make(chan jsonrpc.Message, 1)}
	t0 := time.Now()
	var answer jsonrpc.Message
	cancelled := jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, "mcptrail: request cancelled", errorData(c.reqID))
	// h.ctx too: a stdio backend's request comes without the call's
	// context, and must not wait once the held call is over.
	select {
	case h.events <- heldEvent{input: in}:
		select {
		case answer = <-in.answer:
		case <-ctx.Done():
			answer = cancelled
		case <-h.ctx.Done():
			select {
			case answer = <-in.answer: // expire answers, then cancels
			default:
				answer = cancelled
			}
		}
	case <-ctx.Done():
		answer = cancelled
	case <-h.ctx.Done():
		answer = cancelled
	}
	answer.ID = req.ID
	c.recordServerRequest(b, req, answer, in.key, t0, recorder.Attr{Key: "mcp.mrtr.input_key", Value: in.key})
	return answer
}

func newRequestState() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return requestStatePrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// answerRound is one more round of h's chain, made by c: c's hops link to
// the chain, and the held requests c's responses name are answered. The
// caller holds h.mu.
func (h *heldCall) answerRound(c *call, responses map[string]json.RawMessage) {
	h.round++
	c.attrs = append(c.attrs,
		recorder.Attr{Key: attrChainOrigin, Value: h.origin},
		recorder.Attr{Key: attrChainPrevious, Value: h.last},
		recorder.Attr{Key: attrChainRound, Value: strconv.Itoa(h.round)})
	h.last = c.reqID
	for key, in := range h.waiting {
		if r, ok := responses[key]; ok {
			in.answer <- jsonrpc.NewResult(in.req.ID, r)
			delete(h.waiting, key)
		}
	}
}
