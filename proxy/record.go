package proxy

import (
	"time"
	"unicode/utf8"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// record hands one hop of this call to the recorder. fill sets what is
// specific to the hop; the common fields come from the call.
//
// It returns the recorder's refusal: under a fail_closed overflow policy a
// call whose inbound hop cannot be recorded must not proceed.
func (c *call) record(hop recorder.Hop, start time.Time, dur time.Duration, fill func(*recorder.Event)) error {
	g := c.g
	if g.rec == nil {
		return nil
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
	if len(c.attrs) > 0 {
		e.Attrs = append(e.Attrs, c.attrs...)
	}
	if fill != nil {
		fill(e)
	}
	if g.redactor != nil {
		e.RedactionVersion = g.redactor.Version()
		if !e.Unredacted && e.ErrorMessage != "" {
			var n int
			e.ErrorMessage, n = g.redactor.String(e.ErrorMessage)
			e.RedactionCount += uint16(n)
			e.ErrorMessage = capError(e.ErrorMessage)
		}
	} else if !e.Unredacted {
		e.ErrorMessage = capError(e.ErrorMessage)
	}
	err := g.rec.Record(e)
	if err != nil {
		g.logger.Error("recording event failed", "request_id", c.reqID, "hop", hop.String(), "err", err)
	}
	return err
}

// payload puts params and result on e, redacted and capped. Small payloads
// (Options.DeferRedactionBytes) are handed over raw with e.Unredacted set, so
// the recorder redacts them off the hot path (recorder.Config.Prepare =
// RedactEvent); large ones are redacted here, which also bounds what the
// recorder's queue holds. Without a redactor nothing is recorded:
// unredacted payloads never reach storage.
func (c *call) payload(e *recorder.Event, params, result []byte) {
	r := c.g.redactor
	if r == nil {
		return
	}
	e.Params, e.Result = params, result
	if len(params)+len(result) <= c.g.opts.DeferRedactionBytes {
		e.Unredacted = true
		return
	}
	redactPayloads(r, e)
}

// RedactEvent redacts and caps an event's payloads and error message in
// place and clears Unredacted. It is the recorder's Prepare hook for events
// the gateway hands over raw.
func RedactEvent(r Redactor, e *recorder.Event) {
	redactPayloads(r, e)
	if e.ErrorMessage != "" {
		var n int
		e.ErrorMessage, n = r.String(e.ErrorMessage)
		e.RedactionCount += uint16(n)
		e.ErrorMessage = capError(e.ErrorMessage)
	}
	e.Unredacted = false
}

// maxErrorMessage bounds a recorded error message, after redaction: the
// full error object is in the payload table.
const maxErrorMessage = 2048

// capError cuts s to maxErrorMessage bytes at a UTF-8 boundary, marking
// the cut.
func capError(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(truncated)"
}

func redactPayloads(r Redactor, e *recorder.Event) {
	if e.Params != nil {
		out, n, trunc, sum := r.Payload(e.Params)
		e.Params, e.ParamsSHA256 = out, sum
		e.RedactionCount += uint16(n)
		e.PayloadTruncated = e.PayloadTruncated || trunc
	}
	if e.Result != nil {
		out, n, trunc, sum := r.Payload(e.Result)
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
