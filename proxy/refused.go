package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Requests the gateway answers before routing (401, 400 with -32700 or
// -32600, 404 for an unknown session, 413, …) never reach Serve. So that
// `mcptrail trace <the ID in the error>` still finds them, observeExchanges
// records each one as an inbound and a response hop (outcome and reason)
// and gives it a span; a client notification (no answer) gets a span too.

// exchange is what the observer learns of one HTTP request.
type exchange struct {
	served atomic.Bool // Serve ran for it: recorded there
}

type exchangeKey struct{}

// markServed tells the observer of ctx's HTTP request that Serve handled it.
func markServed(ctx context.Context) {
	if ex, ok := ctx.Value(exchangeKey{}).(*exchange); ok {
		ex.served.Store(true)
	}
}

// maxObservedBody bounds what the observer keeps of a request body and of a
// refusal's body.
const maxObservedBody = 64 << 10

func (g *Gateway) observeExchanges(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mcp", "/message", "/sse":
		default:
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		ex := &exchange{}
		sw := &statusWriter{ResponseWriter: w}
		var body *cappedBuffer
		if r.Method == http.MethodPost && r.Body != nil {
			body = &cappedBuffer{}
			r.Body = teeBody{r.Body, body}
		}
		r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
		next.ServeHTTP(sw, r)
		if ex.served.Load() {
			return
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		var msg jsonrpc.Message
		if body != nil {
			msg, _ = jsonrpc.Decode(body.Bytes())
		}
		switch {
		case status >= 400:
			g.recordRefusal(r, sw, status, msg, body, start)
		case msg.Kind() == jsonrpc.KindNotification:
			g.notificationSpan(r, sw.Header().Get(HeaderRequestID), msg)
		}
	})
}

// recordRefusal records a request the gateway refused before routing.
func (g *Gateway) recordRefusal(r *http.Request, sw *statusWriter, status int, msg jsonrpc.Message, body *cappedBuffer, start time.Time) {
	reqID := sw.Header().Get(HeaderRequestID)
	if reqID == "" {
		return
	}
	var answer struct {
		Error *jsonrpc.Error `json:"error"`
	}
	_ = json.Unmarshal(sw.body.Bytes(), &answer)
	code, reason := 0, http.StatusText(status)
	if answer.Error != nil {
		code, reason = answer.Error.Code, answer.Error.Message
	}
	c := &call{g: g, ps: g.ps(), msg: msg, reqID: reqID, start: start}
	c.params = &jsonrpc.Object{}
	c.outcome, c.errCode, c.errMsg = recorder.OutcomeJSONRPCError, int32(code), reason
	if sw.deniedRule != "" {
		c.authResult, c.authRule = auth.ResultDenied, sw.deniedRule
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		c.outcome = recorder.OutcomeDenied
	}
	if msg.Method != "" {
		if p, err := jsonrpc.ParseObject(msg.Params); err == nil {
			c.params = p
			c.target = c.targetName()
		}
	}

	ctx, opts := g.clientTrace(r.Context(), r.Header, nil)
	_, span := g.tracer.Start(ctx, spanMethod(msg.Method), append(opts, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(
			attribute.String("mcptrail.request_id", reqID),
			attribute.String("network.transport", "tcp"),
			attribute.Int("http.response.status_code", status),
			attribute.String("error.type", errorType(code, status)),
			attribute.String("mcptrail.outcome", c.outcome.String()),
		))...)
	if msg.Method != "" && knownMethods[msg.Method] {
		span.SetAttributes(attribute.String("mcp.method.name", msg.Method))
	}
	if code != 0 {
		span.SetAttributes(attribute.String("rpc.response.status_code", strconv.Itoa(code)))
	}
	if len(msg.ID) > 0 {
		span.SetAttributes(attribute.String("jsonrpc.request.id", jsonrpc.IDString(msg.ID)))
	}
	span.SetStatus(codes.Error, capError(c.redactedErr()))
	if sc := span.SpanContext(); sc.IsValid() {
		c.traceID, c.spanID = sc.TraceID().String(), sc.SpanID().String()
	}
	span.End()

	reasonAttr := recorder.Attr{Key: "refused.http_status", Value: strconv.Itoa(status)}
	c.record(recorder.HopInbound, start, 0, func(e *recorder.Event) {
		if body != nil {
			e.RequestBytes = uint32(body.n)
			if msg.Method != "" {
				c.payload(e, msg.Params, nil)
			}
		}
		e.Attrs = append(e.Attrs, reasonAttr)
	})
	c.record(recorder.HopResponse, start, time.Since(start), func(e *recorder.Event) {
		e.ResponseBytes = uint32(sw.body.Len())
		if answer.Error != nil {
			c.payload(e, nil, answer.Error.JSON())
		}
		e.Attrs = append(e.Attrs, reasonAttr)
	})
}

// notificationSpan gives a client notification (answered 202, no result)
// its span.
func (g *Gateway) notificationSpan(r *http.Request, reqID string, msg jsonrpc.Message) {
	var meta *jsonrpc.Object
	if raw, ok := jsonrpc.Lookup(msg.Params, "_meta"); ok {
		meta, _ = jsonrpc.ParseObject(raw)
	}
	ctx, opts := g.clientTrace(r.Context(), r.Header, meta)
	_, span := g.tracer.Start(ctx, spanMethod(msg.Method), append(opts, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("mcptrail.request_id", reqID),
			attribute.String("network.transport", "tcp"),
		))...)
	if knownMethods[msg.Method] {
		span.SetAttributes(attribute.String("mcp.method.name", msg.Method))
	}
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
		span.SetAttributes(attribute.String("mcp.session.id", recordedSessionID(sid)))
	}
	span.End()
}

// errorType is the OTel error.type of a refusal: the JSON-RPC code, else
// the HTTP status.
func errorType(code, status int) string {
	if code != 0 {
		return strconv.Itoa(code)
	}
	return strconv.Itoa(status)
}

// statusWriter remembers the status and, for refusals, the body.
type statusWriter struct {
	http.ResponseWriter
	status int
	body   cappedBuffer
	// deniedRule is the rule of a policy denial answered before routing
	// (ambiguous-key): every hop of the refusal carries it, so that the
	// audit row says so whichever write batch its hops land in.
	deniedRule string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 {
		_, _ = w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps SSE streaming working through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cappedBuffer keeps the first maxObservedBody bytes written and counts all.
type cappedBuffer struct {
	buf bytes.Buffer
	n   int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.n += len(p)
	if room := maxObservedBody - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }
func (b *cappedBuffer) Len() int      { return b.n }

// teeBody copies what the handler reads of a request body.
type teeBody struct {
	io.ReadCloser
	w io.Writer
}

func (t teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 {
		_, _ = t.w.Write(p[:n])
	}
	return n, err
}

// spanMethod is a span name from a method a client sent: the method when it
// is one MCP defines, else a constant (span names must not take arbitrary
// client input).
func spanMethod(m string) string {
	if knownMethods[m] {
		return m
	}
	return "mcp.request"
}

// More methods MCP defines (metrics.go lists the requests it labels).
func init() {
	for _, m := range []string{
		"subscriptions/listen", "tasks/update", "sampling/createMessage", "elicitation/create", "roots/list",
		"notifications/initialized", "notifications/cancelled", "notifications/progress", "notifications/message",
		"notifications/roots/list_changed", "notifications/tools/list_changed", "notifications/prompts/list_changed",
		"notifications/resources/list_changed", "notifications/resources/updated", "notifications/elicitation/complete",
		"notifications/tasks/status",
	} {
		knownMethods[m] = true
	}
}
