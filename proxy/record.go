package proxy

import (
	"time"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// record hands one hop of this call to the recorder. fill sets what is
// specific to the hop; the common fields come from the call.
func (c *call) record(hop recorder.Hop, start time.Time, dur time.Duration, fill func(*recorder.Event)) {
	g := c.g
	if g.rec == nil {
		return
	}
	e := &recorder.Event{
		RequestID:       c.reqID,
		TraceID:         c.traceID,
		SpanID:          c.spanID,
		Hop:             hop,
		Seq:             c.seq.Add(1) - 1,
		TimeNs:          start.UnixNano(),
		DurationUs:      dur.Microseconds(),
		Method:          c.msg.Method,
		Server:          c.server,
		Target:          c.target,
		RPCID:           jsonrpc.IDString(c.msg.ID),
		AuthDecision:    c.authResult,
		AuthRule:        c.authRule,
		RouteRule:       c.routeRule,
		Backend:         c.server,
		GatewayInstance: g.instance,
		GatewayVersion:  Version,
		ConfigHash:      g.cfg.Hash,
	}
	if c.princ != nil {
		e.Principal = c.princ.Name
	}
	if c.sess != nil {
		e.SessionID = c.sess.id
		e.ProtocolVersion, e.ClientName, e.ClientVersion = c.sess.client()
	}
	if hop == recorder.HopResponse {
		e.Outcome, e.ErrorCode, e.ErrorMessage = c.outcome, c.errCode, c.errMsg
	}
	if fill != nil {
		fill(e)
	}
	if g.redactor != nil {
		e.RedactionVersion = g.redactor.Version()
		if e.ErrorMessage != "" {
			var n int
			e.ErrorMessage, n = g.redactor.String(e.ErrorMessage)
			e.RedactionCount += uint16(n)
		}
	}
	if err := g.rec.Record(e); err != nil {
		g.logger.Error("recording event failed", "request_id", c.reqID, "hop", hop.String(), "err", err)
	}
}

// payload redacts and caps params and result onto e. Without a redactor
// nothing is recorded: unredacted payloads never leave the process.
func (c *call) payload(e *recorder.Event, params, result []byte) {
	r := c.g.redactor
	if r == nil {
		return
	}
	if params != nil {
		out, n, trunc, sum := r.Payload(params)
		e.Params, e.ParamsSHA256 = out, sum
		e.RedactionCount += uint16(n)
		e.PayloadTruncated = e.PayloadTruncated || trunc
	}
	if result != nil {
		out, n, trunc, sum := r.Payload(result)
		e.Result, e.ResultSHA256 = out, sum
		e.RedactionCount += uint16(n)
		e.PayloadTruncated = e.PayloadTruncated || trunc
	}
}

// recordNotification records a notification relayed for this call.
func (g *Gateway) recordNotification(c *call, server string, n *jsonrpc.Message) {
	c.record(recorder.HopNotification, time.Now(), 0, func(e *recorder.Event) {
		e.Method = n.Method
		e.Server = server
		c.payload(e, n.Params, nil)
	})
}
