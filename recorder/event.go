// Package recorder makes every hop of every MCP call durable: the event model,
// a bounded in-memory queue, a checksummed on-disk spool and a batching writer
// that hands events to a storage backend (see recorder/clickhouse).
//
// The recorder imports nothing else of mcptrail; the proxy talks to it through
// a small interface the proxy declares.
package recorder

import (
	"strings"
	"unsafe"
)

// Hop says which leg of a call an Event describes.
type Hop uint8

// Hops, in the order they usually occur within one request.
const (
	HopUnknown       Hop = iota
	HopInbound           // client → gateway: the request as the gateway received it
	HopAuth              // the authentication/authorization decision
	HopRoute             // the routing decision; no longer recorded (it is on the upstream and response hops), kept for older data
	HopUpstream          // gateway → backend, one event per attempt
	HopResponse          // gateway → client: what the client got back
	HopNotification      // a notification relayed in either direction
	HopServerRequest     // a backend → client request (sampling, elicitation, roots)
)

var hopNames = [...]string{"unknown", "inbound", "auth", "route", "upstream", "response", "notification", "server_request"}

// String returns the name used in storage and on the command line.
func (h Hop) String() string {
	if int(h) < len(hopNames) {
		return hopNames[h]
	}
	return "unknown"
}

// ParseHop is the inverse of Hop.String; unknown names map to HopUnknown.
func ParseHop(s string) Hop {
	for i, n := range hopNames {
		if n == s {
			return Hop(i)
		}
	}
	return HopUnknown
}

// Outcome is the most severe failure level of a hop. The three failure levels
// are kept apart because they mean different things to an on-call engineer:
// the transport broke, the peer answered with a JSON-RPC error, or the tool ran
// and reported isError.
type Outcome uint8

// Outcomes, from best to worst.
const (
	OutcomeOK             Outcome = iota
	OutcomeToolError              // result with isError: true
	OutcomeJSONRPCError           // a JSON-RPC error object (ErrorCode says which)
	OutcomeTransportError         // no answer: connection refused, timeout, backend died
	OutcomeDenied                 // refused by policy (auth or allowlist) before any upstream call
)

var outcomeNames = [...]string{"ok", "tool_error", "jsonrpc_error", "transport_error", "denied"}

// String returns the name used in storage and on the command line.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// ParseOutcome is the inverse of Outcome.String; ok is returned for unknown names.
func ParseOutcome(s string) Outcome {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i)
		}
	}
	return OutcomeOK
}

// Failed reports whether the outcome counts as a failed call.
func (o Outcome) Failed() bool { return o != OutcomeOK }

// Event is one hop of one request. It is a flat value so that the hot path can
// fill it without allocating beyond its strings and payload bytes; the queue
// takes ownership of the Event and its byte slices once Record is called.
type Event struct {
	EventID   string // ULID, unique per event; the idempotency key in storage
	RequestID string // ULID of the client request this hop belongs to
	SessionID string // client-facing MCP session id (Mcp-Session-Id or SSE session)
	TraceID   string // W3C trace id, hex; empty when tracing is off
	SpanID    string // span of this hop, hex
	Hop       Hop
	Seq       uint32 // order of this hop within its request, from 0

	TimeNs     int64 // wall-clock start of the hop, Unix nanoseconds
	DurationUs int64 // total duration of the hop in microseconds
	QueueUs    int64 // time spent waiting at a concurrency cap, µs
	ConnectUs  int64 // time to obtain an upstream connection, µs (when measurable)
	TTFBUs     int64 // time to first byte of the upstream answer, µs (when measurable)

	Method string // JSON-RPC method, e.g. tools/call
	Server string // backend namespace the hop concerns, e.g. crm
	Target string // tool, prompt or resource URI as the client named it, e.g. crm.search
	RPCID  string // JSON-RPC id on this hop, as JSON text

	Principal    string // authenticated principal; empty when auth is off
	AuthDecision string // allowed | denied | none
	AuthRule     string // the token or pattern that decided

	RouteRule string // which routing rule chose the backend
	Backend   string // backend that served the hop (after fallbacks)
	Attempt   uint8  // 1 for the first upstream attempt
	Fallback  bool   // this attempt went to a fallback backend

	Outcome      Outcome
	ErrorCode    int32  // JSON-RPC error code when Outcome is OutcomeJSONRPCError (or the gateway's own)
	ErrorMessage string // redacted error text

	RequestBytes  uint32 // size of the request on this hop as sent
	ResponseBytes uint32 // size of the response on this hop as received

	ClientName      string
	ClientVersion   string
	ProtocolVersion string // negotiated with the client
	UpstreamVersion string // negotiated with the backend (upstream hops)

	GatewayInstance string // host/instance id of the gateway
	GatewayVersion  string
	ConfigHash      string // sha256 of the effective config, hex

	RedactionVersion string // identifies the redaction rule set that was applied
	RedactionCount   uint16 // how many values were redacted on this hop

	// Payloads, already redacted and capped by the caller (see redact). Nil
	// means "not recorded"; the storage keeps them in a separate table.
	Params []byte
	Result []byte // result or error object
	// PayloadTruncated is set when Params or Result were cut at the cap.
	PayloadTruncated bool
	// ParamsSHA256 and ResultSHA256 are hex digests of the original,
	// unredacted, uncapped payloads, so equal payloads stay comparable
	// (keyed, HMAC-SHA256 with the redaction key, when recorder/redact
	// made them).
	ParamsSHA256 string
	ResultSHA256 string

	// Attrs holds extra key/value pairs (kept as parallel arrays in storage).
	Attrs []Attr

	// Unredacted marks an event whose Params, Result, ErrorMessage and
	// other client-supplied strings (Method, Target, RPCID, ClientName, …)
	// may still be raw: the producer deferred redaction to keep it off its
	// hot path. A Pipeline runs Config.Prepare on such an event before it
	// reaches the spool, and drops Params, Result and ErrorMessage if there
	// is no Prepare. It is never stored.
	Unredacted bool
}

// Attr is an extra key/value pair on an Event.
type Attr struct{ Key, Value string }

// AttrAuthRoles is the auth hop attribute that records the principal's
// roles, comma-separated in binding order; storage copies it into the
// audit trail's roles.
const AttrAuthRoles = "auth.roles"

// Roles returns the roles an auth hop recorded (AttrAuthRoles), nil when
// it recorded none.
func (e *Event) Roles() []string {
	for _, a := range e.Attrs {
		if a.Key == AttrAuthRoles && a.Value != "" {
			return strings.Split(a.Value, ",")
		}
	}
	return nil
}

// Clone returns a deep copy of e: its strings, payloads and attributes
// share no memory with e's. A Writer that keeps events past WriteBatch
// must keep clones: the events it is given point into the spool segment
// being written, whose memory the pipeline reuses for the next one.
func (e *Event) Clone() Event {
	c := *e
	for _, s := range c.stringFields() {
		*s = strings.Clone(*s)
	}
	if e.Params != nil {
		c.Params = append(make([]byte, 0, len(e.Params)), e.Params...)
	}
	if e.Result != nil {
		c.Result = append(make([]byte, 0, len(e.Result)), e.Result...)
	}
	if e.Attrs != nil {
		c.Attrs = make([]Attr, len(e.Attrs))
		for i, a := range e.Attrs {
			c.Attrs[i] = Attr{Key: strings.Clone(a.Key), Value: strings.Clone(a.Value)}
		}
	}
	return c
}

// stringFields points at every string field of e (Attrs aside): the one
// list Clone, memSize and the spooler's size bound go through.
func (e *Event) stringFields() [25]*string {
	return [...]*string{&e.EventID, &e.RequestID, &e.SessionID, &e.TraceID, &e.SpanID, &e.Method, &e.Server,
		&e.Target, &e.RPCID, &e.Principal, &e.AuthDecision, &e.AuthRule, &e.RouteRule, &e.Backend, &e.ErrorMessage,
		&e.ClientName, &e.ClientVersion, &e.ProtocolVersion, &e.UpstreamVersion, &e.GatewayInstance, &e.GatewayVersion,
		&e.ConfigHash, &e.RedactionVersion, &e.ParamsSHA256, &e.ResultSHA256}
}

// eventOverhead is what an Event costs in memory besides the bytes its
// strings and slices point to: the struct and allocation rounding.
const eventOverhead = int64(unsafe.Sizeof(Event{})) + 64

// memSize is the approximate memory ev holds, for Config.QueueBytes. It
// must not change while ev is queued (Prepare runs after the spooler took
// it off the queue).
func (e *Event) memSize() int64 {
	n := cap(e.Params) + cap(e.Result)
	for _, s := range e.stringFields() {
		n += len(*s)
	}
	for _, a := range e.Attrs {
		n += len(a.Key) + len(a.Value) + 32
	}
	return eventOverhead + int64(n)
}
