package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// replier carries messages that belong to one in-flight request (progress,
// server→client requests) to the client before its final answer.
type replier interface {
	notify(b []byte) error
}

// Inbound is one client request as a transport hands it to the gateway.
type Inbound struct {
	Session   *Session
	Msg       jsonrpc.Message
	Header    http.Header // HTTP headers of the client request, may be nil
	Principal *auth.Principal
	// RequestID is the client's X-Request-Id when valid, already scoped to
	// the principal (auth.Principal.ScopeRequestID); "" to take one from
	// params._meta (scoped here) or generate one.
	RequestID string
	Size      int // bytes of the request as received
	Start     time.Time
	out       replier
}

// call is the state of one client request while the gateway serves it.
type call struct {
	g      *Gateway
	sess   *Session
	msg    jsonrpc.Message
	params *jsonrpc.Object
	meta   *jsonrpc.Object // params._meta as received, nil when absent
	reqID  string
	start  time.Time
	out    replier
	cancel context.CancelFunc
	// cancelReason is the client's reason when it cancelled the request.
	cancelReason atomic.Pointer[string]
	seq          atomic.Uint32
	inSize       int
	princ        *auth.Principal
	// ps is the policy the call runs under, taken when it started: a
	// reload never changes it midway.
	ps      *policySet
	traceID string
	spanID  string

	// routing and outcome, filled as the call proceeds
	server     string
	target     string
	authResult string
	authRule   string
	routeRule  string
	outcome    recorder.Outcome
	errCode    int32
	errMsg     string

	// toolWait is the wait at the tool's concurrency cap, toolTimeout its
	// own timeout (0: the server's); toolqueue.go.
	toolWait    time.Duration
	toolTimeout time.Duration

	held  *heldCall       // a 2026 client's call held across round trips (mrtr.go)
	attrs []recorder.Attr // added to every hop this call records

	// upFail is how the last upstream attempt failed (resilience.go).
	upFail upFailure
}

// validRequestID accepts client-supplied request IDs that are safe to log and
// store: 1–128 characters of [A-Za-z0-9._:-].
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// metaRequestID is the request ID a client put in params._meta, scoped to
// its principal, when acceptable; otherwise def.
func (g *Gateway) metaRequestID(msg jsonrpc.Message, p *auth.Principal, def string) string {
	if raw, ok := jsonrpc.Lookup(msg.Params, "_meta"); ok {
		if meta, err := jsonrpc.ParseObject(raw); err == nil {
			if id, ok := meta.GetString(MetaRequestID); ok && g.acceptRequestID(id) {
				return p.ScopeRequestID(id)
			}
		}
	}
	return def
}

// NewRequestID returns a fresh ULID request ID.
func NewRequestID() string { return ulid.Make().String() }

// Serve handles one client request and returns the final answer. Messages
// that must reach the client before it go through in.out.
func (g *Gateway) Serve(ctx context.Context, in Inbound) jsonrpc.Message {
	markServed(ctx)
	g.inflight.Add(1)
	defer g.inflight.Done()
	g.stats.requests.Add(1)
	c := &call{g: g, ps: g.ps(), sess: in.Session, msg: in.Msg, reqID: in.RequestID, start: in.Start, out: in.out, inSize: in.Size, princ: in.Principal}
	if c.start.IsZero() {
		c.start = time.Now()
	}
	params, err := jsonrpc.ParseObject(in.Msg.Params)
	if err != nil {
		params = &jsonrpc.Object{}
	}
	c.params = params
	var meta *jsonrpc.Object
	if raw := params.Get("_meta"); raw != nil {
		meta, _ = jsonrpc.ParseObject(raw)
	}
	c.meta = meta
	if c.reqID == "" && meta != nil {
		if id, ok := meta.GetString(MetaRequestID); ok && g.acceptRequestID(id) {
			c.reqID = in.Principal.ScopeRequestID(id)
		}
	}
	if c.reqID == "" {
		c.reqID = NewRequestID()
	}
	c.target = c.targetName()
	if r, ok := in.out.(interface{ setRequestID(string) }); ok {
		r.setRequestID(c.reqID)
	}

	// Trace context: HTTP headers first, params._meta wins when present;
	// a parent or only links (config client_trace_context, tracectx.go).
	ctx, spanOpts := g.clientTrace(ctx, in.Header, meta)
	spanOpts = append(spanOpts, trace.WithSpanKind(trace.SpanKindServer))
	ctx, span := g.tracer.Start(ctx, c.spanName(), spanOpts...)
	// Attributes are built only for a span that records them: with tracing
	// off (the default) or a trace sampled out, they would be thrown away.
	// No sampler mcptrail can be configured with reads them at Start.
	if span.IsRecording() {
		span.SetAttributes(c.semconvAttrs(c.protocolVersion())...)
		span.SetAttributes(attribute.String("jsonrpc.request.id", jsonrpc.IDString(in.Msg.ID)),
			attribute.String("mcptrail.request_id", c.reqID))
		if in.Session != nil {
			span.SetAttributes(attribute.String("mcp.session.id", in.Session.recID))
		}
	}
	if sc := span.SpanContext(); sc.IsValid() {
		c.traceID, c.spanID = sc.TraceID().String(), sc.SpanID().String()
	}
	ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	if c.sess != nil {
		c.sess.touch()
		c.sess.trackCall(c)
		defer c.sess.untrackCall(c)
	}
	recErr := c.record(recorder.HopInbound, c.start, time.Since(c.start), func(e *recorder.Event) {
		e.RequestBytes = uint32(in.Size)
		c.payload(e, in.Msg.Params, nil)
	})

	var resp jsonrpc.Message
	switch {
	case g.closing.Load():
		resp = c.fail(jsonrpc.CodeBackendUnavailable, "mcptrail: gateway is shutting down")
	case recErr != nil:
		// The recorder refuses events (recorder.overflow: fail_closed and
		// its queue or spool is full): an unrecorded call must not run.
		resp = c.fail(jsonrpc.CodeBackendUnavailable, "mcptrail: the call cannot be recorded and recorder.overflow is fail_closed: "+recErr.Error())
	case c.mrtrEligible():
		resp = c.serveModern(ctx)
	case c.sess.modern() && in.Msg.Method == "subscriptions/listen":
		resp = c.listen(ctx)
	case c.sess.modern() && isTaskMethod(in.Msg.Method):
		resp = c.serveTask(ctx)
	case c.sess.modern() && in.Msg.Method == "logging/setLevel":
		// Removed in 2026-07-28 (the level travels per request); answered
		// for clients that still send it, without changing the level of
		// backend connections other clients share.
		resp = jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	default:
		resp = c.dispatch(ctx)
	}
	if c.sess.modern() {
		resp = c.modernize(resp)
	}
	resp = c.stamp(resp)
	if c.outcome.Failed() {
		g.stats.errors.Add(1)
		span.SetStatus(codes.Error, capError(c.redactedErr())) // spans leave the process
	}
	setOutcomeAttrs(span, c.outcome, c.errCode)
	if c.server != "" {
		span.SetAttributes(attribute.String("mcptrail.server", c.server))
	}
	span.SetAttributes(attribute.String("mcptrail.outcome", c.outcome.String()))
	span.End()
	g.metrics.observeCall(ctx, c, time.Since(c.start))
	c.record(recorder.HopResponse, c.start, time.Since(c.start), func(e *recorder.Event) {
		if resp.Error != nil {
			c.payload(e, nil, resp.Error.JSON())
		} else {
			c.payload(e, nil, resp.Result)
		}
		e.ResponseBytes = uint32(len(resp.Result))
	})
	if c.outcome.Failed() {
		g.logger.Warn("request failed", "request_id", c.reqID, "trace_id", c.traceID, "method", capForLog(in.Msg.Method, maxMethodBytes),
			"target", capForLog(c.target, maxTargetBytes), "server", c.server, "outcome", c.outcome.String(), "code", c.errCode, "error", capError(c.redactedErr()))
	} else {
		g.logger.Debug("request served", "request_id", c.reqID, "trace_id", c.traceID, "method", capForLog(in.Msg.Method, maxMethodBytes),
			"target", capForLog(c.target, maxTargetBytes), "server", c.server, "duration", time.Since(c.start))
	}
	return resp
}

func (c *call) redactedErr() string {
	if c.g.redactor == nil {
		return c.errMsg
	}
	s, _ := c.g.redactor.String(c.errMsg)
	return s
}

// targetName is what the request is about: a tool, prompt or resource.
func (c *call) targetName() string {
	switch c.msg.Method {
	case "tools/call", "prompts/get":
		s, _ := c.params.GetString("name")
		return s
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		s, _ := c.params.GetString("uri")
		return s
	case "completion/complete":
		if ref, err := jsonrpc.ParseObject(c.params.Get("ref")); err == nil {
			if s, ok := ref.GetString("name"); ok {
				return s
			}
			s, _ := ref.GetString("uri")
			return s
		}
	}
	return ""
}

// fail builds a gateway-produced error; its data carries the request ID.
func (c *call) fail(code int, msg string, extra ...string) jsonrpc.Message {
	if c.outcome < recorder.OutcomeJSONRPCError {
		c.outcome = recorder.OutcomeJSONRPCError
	}
	c.errCode, c.errMsg = int32(code), msg
	return jsonrpc.NewError(c.msg.ID, code, msg, errorData(c.reqID, extra...))
}

// failInternal is fail for a failure of what the gateway stands on (Redis,
// a backend's connection): the client is told msg and the request ID, not
// the detail, which names internal addresses and errors; the log line
// (with the request ID) and the recorded answer carry it.
func (c *call) failInternal(code int, msg string, detail error, extra ...string) jsonrpc.Message {
	m := c.fail(code, msg+" (request "+c.reqID+"; the gateway log has the cause)", extra...)
	c.errMsg = msg + ": " + detail.Error()
	c.g.logger.Warn(msg, "request_id", c.reqID, "err", detail)
	return m
}

// stamp puts the request ID on the answer: result._meta for results that
// have content. An empty result ({} — ping, logging/setLevel,
// subscriptions) stays byte-for-byte empty, as the spec requires; its
// request ID travels in the X-Request-Id header only. A result without
// _meta (the usual case) gets one appended without being re-encoded.
func (c *call) stamp(m jsonrpc.Message) jsonrpc.Message {
	if m.Result == nil || isEmptyObject(m.Result) {
		return m
	}
	existing, has := jsonrpc.Lookup(m.Result, "_meta")
	if !has {
		stampMeta := appendMetaStamp(make([]byte, 0, 48), c.reqID)
		if out, err := jsonrpc.AppendMember(m.Result, "_meta", stampMeta); err == nil {
			m.Result = out
		}
		return m
	}
	o, err := jsonrpc.ParseObject(m.Result)
	if err != nil {
		return m
	}
	meta, err := jsonrpc.ParseObject(existing)
	if err != nil {
		meta = &jsonrpc.Object{}
	}
	meta.SetString(MetaRequestID, c.reqID)
	o.Set("_meta", meta.Marshal())
	m.Result = o.Marshal()
	return m
}

// isEmptyObject reports whether b is the JSON object {} (with any
// whitespace inside).
func isEmptyObject(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}

// appendMetaStamp appends {"mcptrail.dev/request-id":"<id>"}; request IDs
// are validated to need no escaping.
func appendMetaStamp(dst []byte, reqID string) []byte {
	dst = append(dst, `{"`+MetaRequestID+`":"`...)
	dst = append(dst, reqID...)
	return append(dst, `"}`...)
}

func (c *call) notify(b []byte) {
	if c.out == nil || c.out.notify(b) != nil {
		if c.sess != nil {
			c.sess.push(b)
		}
	}
}

// dispatch routes the request by method.
func (c *call) dispatch(ctx context.Context) jsonrpc.Message {
	g := c.g
	bs := g.bs()
	if strings.HasSuffix(c.msg.Method, "/list") {
		c.ensureProfile(ctx)
	}
	switch m := c.msg.Method; m {
	case "initialize":
		return c.initialize()
	case "server/discover":
		return c.discover()
	case "ping":
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	case "tools/list":
		return c.list(ctx, listTools)
	case "prompts/list":
		return c.list(ctx, listPrompts)
	case "resources/list":
		return c.list(ctx, listResources)
	case "resources/templates/list":
		return c.list(ctx, listTemplates)
	case "tools/call", "prompts/get":
		name := c.target
		if name == "" {
			return c.fail(jsonrpc.CodeInvalidParams, m+`: missing "name"`)
		}
		kind, what, ak := listTools, "tool", auth.Tools
		if m == "prompts/get" {
			kind, what, ak = listPrompts, "prompt", auth.Prompts
		}
		target, server, rt, ok := g.nameTarget(kind, name)
		if resp, allowed := c.authorize(ctx, ak, target, server); !allowed {
			return resp
		}
		if ok && kind == listTools && c.hiddenTool(name) {
			ok = false
		}
		if !ok {
			return c.fail(jsonrpc.CodeInvalidParams, fmt.Sprintf("Unknown %s: %s", what, name)+g.removedHint(name))
		}
		if kind == listTools {
			if res, valid := c.validateArguments(ctx, rt); !valid {
				return jsonrpc.NewResult(c.msg.ID, res)
			}
			if res, ok := c.checkArgumentRules(ctx, rt); !ok {
				return jsonrpc.NewResult(c.msg.ID, res)
			}
			release, resp, ok := c.limitTool(ctx, target, rt)
			if !ok {
				return resp
			}
			defer release()
			return c.filterOutput(ctx, rt, c.forwardNamed(ctx, c.params, rt))
		}
		if resp, ok := c.limitRate(ctx, ""); !ok {
			return resp
		}
		return c.forwardNamed(ctx, c.params, rt)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		uri := c.target
		rt, ok := c.catalog().routeURI(uri)
		if !ok {
			rt = resourceRoute{uri: uri}
		}
		if resp, allowed := c.authorize(ctx, auth.Resources, uriTarget(rt), rt.server); !allowed {
			return resp
		}
		b := bs.byName[rt.server]
		if !ok || b == nil {
			return c.fail(jsonrpc.CodeResourceNotFound, "Resource not found: "+uri, "uri", uri)
		}
		if m == "resources/read" {
			if resp, ok := c.limitRate(ctx, ""); !ok {
				return resp
			}
		}
		if m == "resources/subscribe" {
			if maxSubs := cmp.Or(c.ps.cfg.Limits.MaxSubscriptions, config.DefaultMaxSubscriptions); !c.sess.canSubscribe(uri, maxSubs) {
				return c.fail(jsonrpc.CodeInvalidRequest, fmt.Sprintf("resources/subscribe: the session has %d subscriptions, limits.max_subscriptions", maxSubs), "uri", uri)
			}
		}
		c.routeRule = "uri:" + rt.server
		if m != "resources/read" && modernUpstream(b.cfg.ProtocolVersion) {
			return c.subscribeModern(ctx, b, rt)
		}
		if m == "resources/unsubscribe" && c.sess.subscribed(uri) && (g.sharedSubscription(c.sess, uri) || g.listens.wantsURI(uri, nil)) {
			// The backend keeps one subscription per connection: another
			// session on this one (or a 2026 listen, whose connection may
			// be the same) still holds it.
			c.sess.subscribe(uri, false)
			return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
		}
		c.params.SetString("uri", rt.uri)
		resp := c.forward(ctx, b)
		if resp.Error == nil {
			switch m {
			case "resources/subscribe":
				c.sess.subscribe(uri, true)
			case "resources/unsubscribe":
				c.sess.subscribe(uri, false)
			case "resources/read":
				if uri != rt.uri {
					resp.Result = renameContents(resp.Result, rt.uri, uri)
				}
			}
		}
		return resp
	case "completion/complete":
		ref, err := jsonrpc.ParseObject(c.params.Get("ref"))
		if err != nil {
			return c.fail(jsonrpc.CodeInvalidParams, `completion/complete: invalid "ref"`)
		}
		// The reference's type says which field the backend reads; route
		// and authorize by that one, not by whichever is present.
		switch typ, _ := ref.GetString("type"); typ {
		case "ref/prompt":
			name, _ := ref.GetString("name")
			target, server, rt, ok := g.nameTarget(listPrompts, name)
			if resp, allowed := c.authorize(ctx, auth.Completions, target, server); !allowed {
				return resp
			}
			if ok {
				if !plainJSONString(ref.Get("name"), rt.name) {
					ref.SetString("name", rt.name)
					c.params.Set("ref", ref.Marshal())
				}
				c.routeRule = "namespace:" + rt.server
				return c.forward(ctx, bs.byName[rt.server])
			}
			return c.fail(jsonrpc.CodeInvalidParams, "Unknown prompt: "+name)
		case "ref/resource":
		default:
			return c.fail(jsonrpc.CodeInvalidParams, `completion/complete: "ref.type" must be "ref/prompt" or "ref/resource"`)
		}
		uri, _ := ref.GetString("uri")
		rt, ok := c.catalog().routeURI(uri)
		if !ok {
			rt = resourceRoute{uri: uri}
		}
		if resp, allowed := c.authorize(ctx, auth.Completions, uriTarget(rt), rt.server); !allowed {
			return resp
		}
		if b := bs.byName[rt.server]; ok && b != nil {
			ref.SetString("uri", rt.uri)
			c.params.Set("ref", ref.Marshal())
			c.routeRule = "uri:" + rt.server
			return c.forward(ctx, b)
		}
		return c.fail(jsonrpc.CodeResourceNotFound, "Resource not found: "+uri)
	case "logging/setLevel":
		level, _ := c.params.GetString("level")
		if c.sess != nil {
			c.sess.setLogLevel(level)
		}
		// Fan out to every backend that logs and that the principal may
		// use; each leg is its own sub-call so its hops are recorded
		// under this request.
		for i, name := range bs.order {
			b := bs.byName[name]
			if c.ps.auth.Enabled() && !c.princ.MayUse(name, g.sep()) {
				continue
			}
			if s := b.snap.Load(); s != nil && s.has("logging") {
				sub := &call{g: g, ps: c.ps, sess: c.sess, msg: c.msg, reqID: c.reqID, start: time.Now(), out: c.out,
					cancel: c.cancel, princ: c.princ, traceID: c.traceID, spanID: c.spanID, routeRule: "fanout"}
				sub.params, _ = jsonrpc.ParseObject(c.msg.Params)
				if raw := sub.params.Get("_meta"); raw != nil {
					sub.meta, _ = jsonrpc.ParseObject(raw)
				}
				sub.seq.Store(c.seq.Load() + uint32(i+1)*16)
				sub.forward(ctx, b)
			}
		}
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	default:
		// Unknown methods are denied unless a methods pattern allows
		// them; then relayed unchanged to the backend they name (a
		// namespaced "name" param), or to the only backend there is.
		// Routed first, so that the decision covers the backend it would
		// reach: a methods pattern never opens a backend the principal
		// may not use.
		var (
			rt     nameRoute
			named  bool
			server string
		)
		if name, ok := c.params.GetString("name"); ok {
			if rt, named = g.routeName(listTools, name); named {
				server = rt.server
			}
		}
		if !named && len(bs.order) == 1 {
			server = bs.order[0]
		}
		if resp, allowed := c.authorize(ctx, auth.Methods, m, server); !allowed {
			return resp
		}
		switch {
		case named:
			return c.forwardNamed(ctx, c.params, rt)
		case server != "":
			c.routeRule = "single-backend"
			return c.forward(ctx, bs.byName[server])
		}
		return c.fail(jsonrpc.CodeMethodNotFound, "Method not found: "+m)
	}
}

// catalog is the merged catalog for this call's client (its capability
// profile).
func (c *call) catalog() *catalog {
	if c.sess != nil && c.sess.cat != nil {
		return c.sess.cat // a 2026 request's, loaded once (modernSession)
	}
	key, _ := c.profile()
	return c.g.catalogFor(key)
}

// forwardNamed forwards a request whose params "name" was routed by rt,
// giving the backend its own name.
func (c *call) forwardNamed(ctx context.Context, params *jsonrpc.Object, rt nameRoute) jsonrpc.Message {
	b := c.g.bs().byName[rt.server]
	if b == nil {
		// Routed by a catalog from before a reload removed the server.
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: server "+rt.server+" was removed from the configuration")
	}
	if b.namespace() == "" {
		c.routeRule = "bare:" + rt.server
	} else {
		c.routeRule = "namespace:" + rt.server
	}
	if !plainJSONString(params.Get("name"), rt.name) {
		// Re-encoded unless it is already rt.name spelled plainly: the
		// backend must read exactly the name that was authorized, not an
		// escape sequence (a lone surrogate) it could decode differently.
		params.SetString("name", rt.name)
	}
	return c.forward(ctx, b)
}

// renameContents gives the contents of a resources/read result that carry
// the backend's URI the name the client asked by. Only contents[].uri is
// rewritten: text or blobs that happen to hold the URI are the resource's
// own bytes.
func renameContents(result json.RawMessage, backendURI, clientURI string) json.RawMessage {
	o, err := jsonrpc.ParseObject(result)
	if err != nil {
		return result
	}
	var contents []json.RawMessage
	if json.Unmarshal(o.Get("contents"), &contents) != nil {
		return result
	}
	changed := false
	for i, raw := range contents {
		item, err := jsonrpc.ParseObject(raw)
		if err != nil {
			continue
		}
		if u, ok := item.GetString("uri"); ok && u == backendURI {
			item.SetString("uri", clientURI)
			contents[i] = item.Marshal()
			changed = true
		}
	}
	if !changed {
		return result
	}
	// By hand: json.Marshal would re-escape the backend's bytes (<, >, &).
	parts := make([][]byte, len(contents))
	for i, c := range contents {
		parts[i] = c
	}
	b := append([]byte{'['}, bytes.Join(parts, []byte{','})...)
	o.Set("contents", append(b, ']'))
	return o.Marshal()
}

// plainJSONString reports whether raw is the JSON string s written without
// escapes and in ASCII.
func plainJSONString(raw []byte, s string) bool {
	if len(raw) != len(s)+2 || raw[0] != '"' || string(raw[1:len(raw)-1]) != s {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			return false
		}
	}
	return true
}

// initialize answers the client's handshake with the gateway's own identity
// and the union of backend capabilities.
func (c *call) initialize() jsonrpc.Message {
	var p initParams
	if err := json.Unmarshal(c.msg.Params, &p); err != nil {
		return c.fail(jsonrpc.CodeInvalidParams, "initialize: invalid params: "+err.Error())
	}
	version := negotiatedVersion(p.ProtocolVersion)
	if c.sess != nil {
		c.sess.setClient(version, p.ClientInfo.Name, p.ClientInfo.Version, p.Capabilities)
		key, caps, _ := c.sess.capabilityProfile()
		c.g.connectProfile(key, caps)
	}
	res := map[string]any{
		"protocolVersion": version,
		"capabilities":    c.g.capabilities(),
		"serverInfo":      c.g.serverInfo,
	}
	if s := c.g.instructions(c.princ); s != "" {
		res["instructions"] = s
	}
	b, _ := json.Marshal(res)
	return jsonrpc.NewResult(c.msg.ID, b)
}

// discover answers server/discover (protocol 2026-07-28) so modern clients
// can use the gateway without a session.
func (c *call) discover() jsonrpc.Message {
	res := map[string]any{
		"supportedVersions": append([]string{protocol2026}, clientVersions...),
		"capabilities":      c.g.capabilities(),
		"serverInfo":        c.g.serverInfo,
	}
	if s := c.g.instructions(c.princ); s != "" {
		res["instructions"] = s
	}
	b, _ := json.Marshal(res)
	return jsonrpc.NewResult(c.msg.ID, b)
}

// list serves a merged list page from the catalog, filtered by policy.
func (c *call) list(ctx context.Context, kind listKind) jsonrpc.Message {
	cat := c.catalog()
	items := cat.items[kind]
	if kind == listTools && len(cat.badHeaders) > 0 && c.sess.modern() {
		valid := make([]catalogItem, 0, len(items))
		for _, it := range items {
			if _, bad := cat.badHeaders[it.name]; !bad {
				valid = append(valid, it)
			}
		}
		items = valid
	}
	if c.ps.policyOn() {
		// The same decision as the call each item would take.
		req := PolicyRequest{Principal: c.princ, Method: listCall[kind].method, Kind: listCall[kind].kind}
		allowed := make([]catalogItem, 0, len(items))
		for _, it := range items {
			req.Target, req.Server = it.target, it.server
			if c.allowed(ctx, &req) {
				allowed = append(allowed, it)
			}
		}
		items = allowed
	}
	offset := 0
	if cur, ok := c.params.GetString("cursor"); ok && cur != "" {
		b, err := base64.RawURLEncoding.DecodeString(cur)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 || n > len(items) {
			return c.fail(jsonrpc.CodeInvalidParams, "invalid cursor")
		}
		offset = n
	}
	end := min(offset+c.g.opts.PageSize, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return jsonrpc.NewResult(c.msg.ID, renderList(listFields[kind], items[offset:end], next))
}

// forwardOnce sends the (already rewritten) request to b once and relays
// its answer; c.upFail says how it failed. attempt counts from 1 across
// retries and fallbacks.
func (c *call) forwardOnce(ctx context.Context, b *Backend, attempt int, fallback bool) jsonrpc.Message {
	g := c.g
	c.server = b.Name()
	c.upFail = upUnavailable
	wait, err := b.acquire(ctx)
	if err != nil {
		c.outcome = recorder.OutcomeTransportError
		return c.fail(jsonrpc.CodeRequestTimeout, err.Error(), "server", b.Name())
	}
	defer b.release()
	if c.sess != nil && c.sess.id != "" {
		c.sess.markUsed(b.Name())
	}
	key, caps := c.profile()
	snap, err := b.snapFor(ctx, key, caps)
	if snap == nil {
		c.outcome = recorder.OutcomeTransportError
		cause := errors.New("not connected")
		if err != nil {
			cause = fmt.Errorf("connecting for this client's capabilities: %w", err)
		} else if err := b.LastError(); err != nil {
			cause = err
		}
		resp := c.failInternal(jsonrpc.CodeBackendUnavailable, "mcptrail: backend "+b.Name()+" is unavailable", cause, "server", b.Name())
		c.outcome = recorder.OutcomeTransportError
		return resp
	}

	// Each attempt edits its own copies: a retry or a fallback sends what
	// the client sent, not what the previous attempt rewrote for its
	// backend (stripped 2026 keys, a gateway progress token, its span).
	meta := c.meta.Clone()
	if snap.protocolVersion != protocol2026 {
		// Per-request protocol keys of 2026-07-28 clients mean nothing to
		// an older backend; strip them.
		meta.DeletePrefix("io.modelcontextprotocol/")
	}
	if tok := meta.Get("progressToken"); tok != nil {
		gw := `"mcptrail-` + strconv.FormatInt(g.tokenSeq.Add(1), 36) + `"`
		g.progress.Store(gw, &progressRoute{c: c, original: tok})
		defer g.progress.Delete(gw)
		meta.Set("progressToken", json.RawMessage(gw))
	}
	meta.SetString(MetaRequestID, c.reqID)

	upName := spanMethod(c.msg.Method)
	if c.listedTarget() != "" {
		if n, ok := c.params.GetString("name"); ok {
			upName += " " + n // as the backend knows it
		}
	}
	ctx, span := g.tracer.Start(ctx, upName, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() { // as for the call's span
		span.SetAttributes(c.semconvAttrs(snap.protocolVersion)...)
		span.SetAttributes(attribute.String("mcptrail.server", b.Name()), attribute.String("mcptrail.request_id", c.reqID))
	}
	g.prop.Inject(ctx, metaCarrier{meta})
	upParams := c.params.Clone()
	upParams.Set("_meta", meta.Marshal())
	params := upParams.Marshal()

	var header http.Header
	if b.cfg.Transport != "stdio" {
		header = http.Header{HeaderRequestID: []string{c.reqID}}
		g.prop.Inject(ctx, propagation.HeaderCarrier(header))
	}
	timeout := b.cfg.Timeout
	if c.toolTimeout > 0 {
		timeout = c.toolTimeout
	}
	if timeout <= 0 {
		timeout = config.DefaultServerTimeout
	}
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, callKey{}, c), timeout)
	defer cancel()

	id := b.nextID.Add(1)
	idKey := strconv.FormatInt(id, 10)
	b.inflight.Store(idKey, c)
	defer b.inflight.Delete(idKey)
	var timing hopTiming
	var tp *hopTiming
	if g.rec != nil {
		tp = &timing // httptrace costs allocations: only when recording
	}
	t0 := time.Now()
	resp, err := snap.conn.call(cctx, id, c.msg.Method, params, header, tp)
	dur := time.Since(t0)

	up := jsonrpc.Message{ID: jsonrpc.IntID(id)}
	var upOutcome recorder.Outcome
	var out jsonrpc.Message
	switch {
	case err != nil:
		upOutcome = recorder.OutcomeTransportError
		switch {
		case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			c.upFail = upTimeout
			out = c.fail(jsonrpc.CodeRequestTimeout, fmt.Sprintf("mcptrail: backend %s did not answer %s within %s", b.Name(), c.msg.Method, timeout), "server", b.Name())
			c.cancelUpstream(snap, id, "timeout")
		case ctx.Err() != nil:
			reason := "cancelled by the client"
			if r := c.cancelReason.Load(); r != nil && *r != "" {
				reason = *r
			}
			c.upFail = upCancelled
			out = c.fail(jsonrpc.CodeInternalError, "mcptrail: request cancelled: "+reason, "server", b.Name())
			c.cancelUpstream(snap, id, reason)
		default:
			c.upFail = upTransport
			out = c.failInternal(jsonrpc.CodeBackendUnavailable, "mcptrail: backend "+b.Name()+" failed", err, "server", b.Name())
			// A refusal of this one call (HTTP 4xx/5xx) leaves the
			// connection usable; anything else means it is gone.
			var hs *httpStatusError
			if !errors.As(err, &hs) {
				b.markDown(snap.conn, err)
			}
		}
		c.outcome = recorder.OutcomeTransportError
		up.Error = &jsonrpc.Error{Code: int(c.errCode), Message: c.errMsg}
	case resp.Error != nil:
		c.upFail = upNone
		upOutcome = recorder.OutcomeJSONRPCError
		e := resp.Error
		up.Error = e
		out = jsonrpc.Message{ID: c.msg.ID, Error: e}
		c.outcome, c.errCode, c.errMsg = recorder.OutcomeJSONRPCError, int32(e.Code), e.Message
	default:
		c.upFail = upNone
		up.Result = resp.Result
		out = jsonrpc.NewResult(c.msg.ID, resp.Result)
		if c.msg.Method == "tools/call" && isToolError(resp.Result) {
			upOutcome = recorder.OutcomeToolError
			c.outcome = recorder.OutcomeToolError
			c.errMsg = toolErrorText(resp.Result)
		}
	}
	span.SetAttributes(attribute.String("jsonrpc.request.id", idKey))
	if upOutcome.Failed() {
		span.SetStatus(codes.Error, upOutcome.String())
		code := int32(0)
		if up.Error != nil {
			code = int32(up.Error.Code)
		}
		setOutcomeAttrs(span, upOutcome, code)
	}
	c.record(recorder.HopUpstream, t0, dur, func(e *recorder.Event) {
		e.RPCID = idKey
		e.Attempt = uint8(min(attempt, 255))
		e.Fallback = fallback
		e.Outcome = upOutcome
		e.QueueUs = (c.toolWait + wait).Microseconds()
		e.ConnectUs = timing.connect.Microseconds()
		e.TTFBUs = timing.ttfb.Microseconds()
		e.UpstreamVersion = snap.protocolVersion
		e.RequestBytes = uint32(len(params))
		e.ResponseBytes = uint32(len(up.Result))
		if sc := span.SpanContext(); sc.IsValid() {
			e.SpanID = sc.SpanID().String()
		}
		if up.Error != nil {
			e.ErrorCode = int32(up.Error.Code)
			e.ErrorMessage = up.Error.Message
			c.payload(e, params, up.Error.JSON())
		} else {
			if upOutcome == recorder.OutcomeToolError {
				e.ErrorMessage = c.errMsg
			}
			c.payload(e, params, up.Result)
		}
	})
	return out
}

// cancelByClient ends the call on the client's notifications/cancelled.
func (c *call) cancelByClient(reason string) {
	c.cancelReason.Store(&reason)
	c.cancel()
}

// cancelUpstream tells the backend to stop working on request id.
func (c *call) cancelUpstream(snap *backendSnapshot, id int64, reason string) {
	params, _ := json.Marshal(map[string]any{"requestId": id, "reason": reason})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = snap.conn.notify(ctx, "notifications/cancelled", params)
}

// isToolError reports whether a tools/call result has isError: true,
// without decoding the result.
func isToolError(result json.RawMessage) bool {
	v, ok := jsonrpc.Lookup(result, "isError")
	return ok && string(v) == "true"
}

func toolErrorText(result json.RawMessage) string {
	var r struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	_ = json.Unmarshal(result, &r)
	for _, c := range r.Content {
		if c.Type == "text" {
			// Not cut here: redaction must see the whole text (a cut
			// JSON body escapes key rules); record caps it afterwards.
			return c.Text
		}
	}
	return "tool returned isError"
}

// serverRequest relays a backend's request to this call's client and waits
// for the client's answer.
func (c *call) serverRequest(ctx context.Context, b *Backend, req jsonrpc.Message) jsonrpc.Message {
	capability := ""
	switch {
	case strings.HasPrefix(req.Method, "sampling/"):
		capability = "sampling"
	case strings.HasPrefix(req.Method, "elicitation/"):
		capability = "elicitation"
	case strings.HasPrefix(req.Method, "roots/"):
		capability = "roots"
	}
	if capability != "" && !c.sess.hasCapability(capability) {
		return jsonrpc.NewError(req.ID, jsonrpc.CodeMethodNotFound, "mcptrail: the client does not support "+capability, errorData(c.reqID))
	}
	if c.held != nil {
		return c.heldRequest(ctx, b, req)
	}
	// The replica's tag keeps ids of server requests unique across
	// replicas that share a session (shared.go).
	gwID := json.RawMessage(`"mcptrail-s` + c.g.replicaTag + strconv.FormatInt(c.g.tokenSeq.Add(1), 36) + `"`)
	ch, done := c.sess.awaitResponse(string(gwID))
	defer done()
	t0 := time.Now()
	fwd := jsonrpc.NewRequest(gwID, req.Method, req.Params)
	c.notify(fwd.Marshal())
	timer := time.NewTimer(c.g.opts.ServerRequestTimeout)
	defer timer.Stop()
	var answer jsonrpc.Message
	select {
	case answer = <-ch:
		answer.ID = req.ID
	case <-ctx.Done():
		answer = jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, "mcptrail: request cancelled", errorData(c.reqID))
	case <-timer.C:
		answer = jsonrpc.NewError(req.ID, jsonrpc.CodeRequestTimeout, "mcptrail: the client did not answer "+req.Method, errorData(c.reqID))
	}
	c.recordServerRequest(b, req, answer, string(gwID), t0)
	return answer
}

// recordServerRequest records a backend's request during c and the answer
// it got, under rpcID (the id the client saw; attrs are extra attributes).
func (c *call) recordServerRequest(b *Backend, req, answer jsonrpc.Message, rpcID string, t0 time.Time, attrs ...recorder.Attr) {
	c.record(recorder.HopServerRequest, t0, time.Since(t0), func(e *recorder.Event) {
		e.Method = req.Method
		e.Server = b.Name()
		e.RPCID = rpcID
		e.Attrs = append(e.Attrs, attrs...)
		if answer.Error != nil {
			e.Outcome = recorder.OutcomeJSONRPCError
			e.ErrorCode = int32(answer.Error.Code)
			e.ErrorMessage = answer.Error.Message
			c.payload(e, req.Params, answer.Error.JSON())
		} else {
			c.payload(e, req.Params, answer.Result)
		}
	})
}

// metaCarrier adapts a _meta object to OTel propagation.
type metaCarrier struct{ o *jsonrpc.Object }

func (m metaCarrier) Get(key string) string { s, _ := m.o.GetString(key); return s }
func (m metaCarrier) Set(key, value string) { m.o.SetString(key, value) }
func (m metaCarrier) Keys() []string        { return m.o.Keys() }

var _ propagation.TextMapCarrier = metaCarrier{}

// hiddenTool reports whether a 2026-07-28 client must not see the tool: its
// x-mcp-header annotations are invalid, and such a client MUST exclude it
// (server/tools), so the gateway treats it as unknown.
func (c *call) hiddenTool(name string) bool {
	// The client's own catalog, loaded once with the request
	// (modernSession): a tool may be bad only in a profile's catalog.
	if !c.sess.modern() {
		return false
	}
	_, hidden := c.catalog().badHeaders[name]
	return hidden
}
