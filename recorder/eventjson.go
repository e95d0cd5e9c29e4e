package recorder

import "time"

// EventJSON is the one JSON shape of a recorded event, payloads aside:
// `mcptrail trace --json` prints it and a replay bundle's event line wraps
// it, each adding the payloads (params, result) in its own encoding. A new
// Event field is added here, in NewEventJSON and in Event, and nowhere
// else.
type EventJSON struct {
	EventID    string    `json:"event_id"`
	RequestID  string    `json:"request_id"`
	SessionID  string    `json:"session_id,omitempty"`
	TraceID    string    `json:"trace_id,omitempty"`
	SpanID     string    `json:"span_id,omitempty"`
	Hop        string    `json:"hop"`
	Seq        uint32    `json:"seq"`
	Time       time.Time `json:"time"`    // TimeNs, for people
	TimeNs     int64     `json:"time_ns"` // exact
	DurationUs int64     `json:"duration_us"`
	QueueUs    int64     `json:"queue_us,omitempty"`
	ConnectUs  int64     `json:"connect_us,omitempty"`
	TTFBUs     int64     `json:"ttfb_us,omitempty"`

	Method       string `json:"method,omitempty"`
	Server       string `json:"server,omitempty"`
	Target       string `json:"target,omitempty"`
	RPCID        string `json:"rpc_id,omitempty"`
	Principal    string `json:"principal,omitempty"`
	AuthDecision string `json:"auth_decision,omitempty"`
	AuthRule     string `json:"auth_rule,omitempty"`
	RouteRule    string `json:"route_rule,omitempty"`
	Backend      string `json:"backend,omitempty"`
	Attempt      uint8  `json:"attempt,omitempty"`
	Fallback     bool   `json:"fallback,omitempty"`

	Outcome       string `json:"outcome"`
	ErrorCode     int32  `json:"error_code,omitempty"`
	ErrorMessage  string `json:"error_message,omitempty"`
	RequestBytes  uint32 `json:"request_bytes,omitempty"`
	ResponseBytes uint32 `json:"response_bytes,omitempty"`

	ClientName       string `json:"client_name,omitempty"`
	ClientVersion    string `json:"client_version,omitempty"`
	ProtocolVersion  string `json:"protocol_version,omitempty"`
	UpstreamVersion  string `json:"upstream_version,omitempty"`
	GatewayInstance  string `json:"gateway_instance,omitempty"`
	GatewayVersion   string `json:"gateway_version,omitempty"`
	ConfigHash       string `json:"config_hash,omitempty"`
	RedactionVersion string `json:"redaction_version,omitempty"`
	RedactionCount   uint16 `json:"redaction_count,omitempty"`
	PayloadTruncated bool   `json:"payload_truncated,omitempty"`
	ParamsSHA256     string `json:"params_sha256,omitempty"`
	ResultSHA256     string `json:"result_sha256,omitempty"`

	Attrs []AttrJSON `json:"attrs,omitempty"`
}

// AttrJSON is one Attr (a list keeps their order and repeats).
type AttrJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// NewEventJSON returns e's JSON shape (without Params and Result).
func NewEventJSON(e *Event) EventJSON {
	j := EventJSON{
		EventID: e.EventID, RequestID: e.RequestID, SessionID: e.SessionID, TraceID: e.TraceID, SpanID: e.SpanID,
		Hop: e.Hop.String(), Seq: e.Seq, Time: time.Unix(0, e.TimeNs).UTC(), TimeNs: e.TimeNs, DurationUs: e.DurationUs,
		QueueUs: e.QueueUs, ConnectUs: e.ConnectUs, TTFBUs: e.TTFBUs, Method: e.Method, Server: e.Server, Target: e.Target,
		RPCID: e.RPCID, Principal: e.Principal, AuthDecision: e.AuthDecision, AuthRule: e.AuthRule, RouteRule: e.RouteRule,
		Backend: e.Backend, Attempt: e.Attempt, Fallback: e.Fallback, Outcome: e.Outcome.String(),
		ErrorCode: e.ErrorCode, ErrorMessage: e.ErrorMessage, RequestBytes: e.RequestBytes, ResponseBytes: e.ResponseBytes,
		ClientName: e.ClientName, ClientVersion: e.ClientVersion, ProtocolVersion: e.ProtocolVersion,
		UpstreamVersion: e.UpstreamVersion, GatewayInstance: e.GatewayInstance, GatewayVersion: e.GatewayVersion,
		ConfigHash: e.ConfigHash, RedactionVersion: e.RedactionVersion, RedactionCount: e.RedactionCount,
		PayloadTruncated: e.PayloadTruncated, ParamsSHA256: e.ParamsSHA256, ResultSHA256: e.ResultSHA256,
	}
	for _, a := range e.Attrs {
		j.Attrs = append(j.Attrs, AttrJSON{a.Key, a.Value})
	}
	return j
}

// Event returns the event j describes (without Params and Result). TimeNs
// wins over Time; Time is used when TimeNs is absent.
func (j *EventJSON) Event() Event {
	ns := j.TimeNs
	if ns == 0 && !j.Time.IsZero() {
		ns = j.Time.UnixNano()
	}
	e := Event{
		EventID: j.EventID, RequestID: j.RequestID, SessionID: j.SessionID, TraceID: j.TraceID, SpanID: j.SpanID,
		Hop: ParseHop(j.Hop), Seq: j.Seq, TimeNs: ns, DurationUs: j.DurationUs, QueueUs: j.QueueUs,
		ConnectUs: j.ConnectUs, TTFBUs: j.TTFBUs, Method: j.Method, Server: j.Server, Target: j.Target, RPCID: j.RPCID,
		Principal: j.Principal, AuthDecision: j.AuthDecision, AuthRule: j.AuthRule, RouteRule: j.RouteRule,
		Backend: j.Backend, Attempt: j.Attempt, Fallback: j.Fallback, Outcome: ParseOutcome(j.Outcome),
		ErrorCode: j.ErrorCode, ErrorMessage: j.ErrorMessage, RequestBytes: j.RequestBytes, ResponseBytes: j.ResponseBytes,
		ClientName: j.ClientName, ClientVersion: j.ClientVersion, ProtocolVersion: j.ProtocolVersion,
		UpstreamVersion: j.UpstreamVersion, GatewayInstance: j.GatewayInstance, GatewayVersion: j.GatewayVersion,
		ConfigHash: j.ConfigHash, RedactionVersion: j.RedactionVersion, RedactionCount: j.RedactionCount,
		PayloadTruncated: j.PayloadTruncated, ParamsSHA256: j.ParamsSHA256, ResultSHA256: j.ResultSHA256,
	}
	for _, a := range j.Attrs {
		e.Attrs = append(e.Attrs, Attr{Key: a.Key, Value: a.Value})
	}
	return e
}
