package proxy

import (
	"strings"
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
		GatewayVersion:  g.version,
		ConfigHash:      c.ps.cfg.Hash,
	}
	if c.princ != nil {
		e.Principal = c.princ.Name
	} else if !c.ps.auth.Enabled() {
		e.Principal = "anonymous" // auth off: everyone is, as the README says
	}
	if c.sess != nil {
		e.SessionID = c.sess.recID
		e.ProtocolVersion, e.ClientName, e.ClientVersion = c.sess.client()
	}
	if hop == recorder.HopResponse {
		e.Outcome, e.ErrorCode, e.ErrorMessage = c.outcome, c.errCode, c.errMsg
		if c.princ != nil && len(c.princ.Roles) > 0 && c.authResult != "" {
			// The audit row is the response hop's: it must carry the
			// roles even when the auth hop lands in another batch.
			e.Attrs = append(e.Attrs, recorder.Attr{Key: AttrAuthRoles, Value: strings.Join(c.princ.Roles, ",")})
		}
	}
	if len(c.attrs) > 0 {
		e.Attrs = append(e.Attrs, c.attrs...)
	}
	if fill != nil {
		fill(e)
	}
	if r := g.redactor; r != nil {
		e.RedactionVersion = r.Version()
		if g.opts.DeferRedactionBytes > 0 {
			// The recorder redacts the client's strings with the payloads,
			// off the hot path (RedactEvent); large payloads are redacted
			// already and carry their digest.
			e.Unredacted = true
		} else {
			redactFields(r, e)
		}
	} else if !e.Unredacted {
		e.ErrorMessage = capError(e.ErrorMessage)
		capIdentifiers(e)
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

// RedactEvent redacts and caps an event's payloads, error message and the
// other strings a client or backend chose (redactFields) in place and
// clears Unredacted. It is the recorder's Prepare hook for events the
// gateway hands over raw.
func RedactEvent(r Redactor, e *recorder.Event) {
	redactPayloads(r, e)
	redactFields(r, e)
	e.Unredacted = false
}

// redactFields redacts every string of e that a client, a backend or the
// configuration can put a secret in, except the payloads: the method, the
// target (a tool or prompt name, a resource URI), the JSON-RPC id, the
// client's and backend's self-descriptions, the rules and the error
// message (capped after redaction), and the extra attributes (by key rule
// too). The ids the gateway makes (event, session, trace, span) are its
// own; a client's request id is accepted only when no rule finds a secret
// in it (Gateway.acceptRequestID).
func redactFields(r Redactor, e *recorder.Event) {
	for _, f := range [...]*string{&e.Method, &e.Target, &e.RPCID, &e.ClientName, &e.ClientVersion,
		&e.ProtocolVersion, &e.UpstreamVersion, &e.AuthRule, &e.RouteRule, &e.ErrorMessage} {
		if *f == "" {
			continue
		}
		var n int
		*f, n = r.String(*f)
		e.RedactionCount += uint16(n)
	}
	e.ErrorMessage = capError(e.ErrorMessage)
	defer capIdentifiers(e) // after redaction, attributes included
	for i := range e.Attrs {
		// "key=value" lets the key rules see the attribute's name.
		a := &e.Attrs[i]
		prefix := a.Key + "="
		red, n := r.String(prefix + a.Value)
		if n == 0 {
			continue
		}
		if strings.HasPrefix(red, prefix) {
			a.Value = red[len(prefix):]
		} else {
			a.Key, a.Value = "", red // the key itself held a secret
		}
		e.RedactionCount += uint16(n)
	}
}

// acceptRequestID reports whether a client-supplied request id may be
// used: it has the allowed format, and no redaction rule finds a secret in
// it (the id is stored, indexed and logged as is, so a secret in it would
// leak). A refused id is replaced by a fresh one.
func (g *Gateway) acceptRequestID(id string) bool {
	if !validRequestID(id) {
		return false
	}
	if g.redactor == nil {
		return true
	}
	_, n := g.redactor.String(id)
	return n == 0
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

// redactPayloads redacts and caps the payloads not yet redacted: a digest
// is set when a payload is.
func redactPayloads(r Redactor, e *recorder.Event) {
	if e.Params != nil && e.ParamsSHA256 == "" {
		out, n, trunc, sum := r.Payload(e.Params)
		e.Params, e.ParamsSHA256 = out, sum
		e.RedactionCount += uint16(n)
		e.PayloadTruncated = e.PayloadTruncated || trunc
	}
	if e.Result != nil && e.ResultSHA256 == "" {
		out, n, trunc, sum := r.Payload(e.Result)
		e.Result, e.ResultSHA256 = out, sum
		e.RedactionCount += uint16(n)
		e.PayloadTruncated = e.PayloadTruncated || trunc
	}
}

// recordNotification records a notification relayed for this call.
func (g *Gateway) recordNotification(c *call, server string, n *jsonrpc.Message) {
	g.relayedSpan(c, server, n.Method)
	c.record(recorder.HopNotification, time.Now(), 0, func(e *recorder.Event) {
		e.Method = n.Method
		e.Server = server
		c.payload(e, n.Params, nil)
	})
}
