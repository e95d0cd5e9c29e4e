package diff

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/mcptrail/mcptrail/recorder"
)

// Exchange is one request and its answer on one hop, recorded or replayed.
type Exchange struct {
	RequestID string `json:"request_id,omitempty"` // recorded request this exchange belongs to
	SessionID string `json:"session_id,omitempty"`
	Method    string `json:"method"`
	Server    string `json:"server,omitempty"` // backend namespace
	Target    string `json:"target,omitempty"` // name as the client saw it, e.g. everything.echo
	// Request is the params object as sent on this hop.
	Request json.RawMessage `json:"request,omitempty"`
	// Response is the result object, or the JSON-RPC error object when the
	// outcome is jsonrpc_error; nil after a transport error. A full JSON-RPC
	// response envelope is accepted too.
	Response json.RawMessage `json:"response,omitempty"`
	// Outcome as recorded. When it is ok (the zero value) Classify derives
	// the outcome from Response instead, so callers may leave it unset.
	Outcome   recorder.Outcome `json:"-"`
	ErrorCode int              `json:"error_code,omitempty"`
	// DurationUs is how long the answer took, in microseconds.
	DurationUs int64 `json:"duration_us,omitempty"`
	// ProtocolVersion is the MCP version negotiated on this hop.
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Truncated is set when the recorded payloads were cut at the cap; such
	// exchanges cannot be compared byte-for-byte.
	Truncated bool `json:"truncated,omitempty"`
	// Progress holds the params of the progress notifications sent for
	// this request before its answer, in order.
	Progress []json.RawMessage `json:"progress,omitempty"`
	// Logs holds the params of the log notifications (notifications/message)
	// sent for this request before its answer, in order.
	Logs []json.RawMessage `json:"logs,omitempty"`
	// ServerRequests are the requests the backend sent to the client while
	// it worked on this request (sampling, elicitation, roots), in order.
	ServerRequests []ServerRequest `json:"server_requests,omitempty"`
}

// ServerRequest is one request a backend sent to the client during a call.
type ServerRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Classify returns the outcome of an exchange and the JSON-RPC error code (0
// unless jsonrpc_error): the recorded Outcome when it is a failure, else what
// the response shows — no response is a transport error, an error object a
// JSON-RPC error, a result with isError:true a tool error.
func Classify(x Exchange) (recorder.Outcome, int) {
	if x.Outcome != recorder.OutcomeOK {
		return x.Outcome, x.ErrorCode
	}
	res, errObj := splitResponse(x.Response)
	switch {
	case res == nil && errObj == nil:
		return recorder.OutcomeTransportError, 0
	case errObj != nil:
		var e struct {
			Code int `json:"code"`
		}
		_ = json.Unmarshal(errObj, &e)
		return recorder.OutcomeJSONRPCError, e.Code
	}
	var r struct {
		IsError bool `json:"isError"`
	}
	if json.Unmarshal(res, &r) == nil && r.IsError {
		return recorder.OutcomeToolError, 0
	}
	return recorder.OutcomeOK, 0
}

// splitResponse returns (result, nil) or (nil, errorObject) for a response
// given as a result, an error object or a whole JSON-RPC envelope.
func splitResponse(b json.RawMessage) (result, errObj json.RawMessage) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	if b[0] != '{' {
		return b, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b, nil
	}
	if _, ok := m["jsonrpc"]; ok {
		if e, ok := m["error"]; ok && string(e) != "null" {
			return nil, e
		}
		if r, ok := m["result"]; ok {
			return r, nil
		}
		return nil, nil
	}
	if len(m) <= 3 {
		code, msg := m["code"], m["message"]
		_, okData := m["data"]
		if len(code) > 0 && (code[0] == '-' || (code[0] >= '0' && code[0] <= '9')) &&
			len(msg) > 0 && msg[0] == '"' && len(m) == 2+btoi(okData) {
			return nil, b
		}
	}
	return b, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ResponseBody returns the part of a response that is compared: the result
// or the error object.
func ResponseBody(b json.RawMessage) json.RawMessage {
	r, e := splitResponse(b)
	if e != nil {
		return e
	}
	return r
}

// Result is the comparison of a recorded and a replayed exchange.
type Result struct {
	Method     string           `json:"method"`
	Server     string           `json:"server,omitempty"`
	Target     string           `json:"target,omitempty"`
	OldOutcome recorder.Outcome `json:"-"`
	NewOutcome recorder.Outcome `json:"-"`
	// OldOutcomeName and NewOutcomeName spell the outcomes for JSON output.
	OldOutcomeName string `json:"old_outcome"`
	NewOutcomeName string `json:"new_outcome"`
	// Changes, outcome change first, then by path.
	Changes []Change `json:"changes,omitempty"`
	// Ignored counts differences hidden by ignore rules.
	Ignored int `json:"ignored,omitempty"`
	// Err is set when an answer could not be parsed; the comparison then
	// fell back to bytes.
	Err string `json:"error,omitempty"`
}

// Identical reports whether no (unignored) difference was found.
func (r Result) Identical() bool { return len(r.Changes) == 0 }

// OutcomeChanged reports whether the outcome differs.
func (r Result) OutcomeChanged() bool {
	return len(r.Changes) > 0 && r.Changes[0].Kind == KindOutcomeChanged
}

// MaxRisk is the highest risk among the changes (RiskNone when identical).
func (r Result) MaxRisk() Risk {
	m := RiskNone
	for _, c := range r.Changes {
		m = max(m, c.Risk)
	}
	return m
}

// Compare compares the answers of a recorded and a replayed exchange. Rules
// are filtered by the recorded exchange's server and target. An outcome
// change (including a changed JSON-RPC error code) comes first; the bodies
// are then diffed structurally unless one side has no answer at all.
func Compare(recorded, replayed Exchange, rules IgnoreRules) Result {
	res := Result{Method: recorded.Method, Server: recorded.Server, Target: recorded.Target}
	rules = rules.For(recorded.Server, recorded.Target)
	oo, oc := Classify(recorded)
	no, nc := Classify(replayed)
	res.OldOutcome, res.NewOutcome = oo, no
	res.OldOutcomeName, res.NewOutcomeName = oo.String(), no.String()
	a, b := ResponseBody(recorded.Response), ResponseBody(replayed.Response)
	if len(rules) > 0 && rules.Ignored(nil) {
		// "/**" or "/": the whole answer, outcome included, is accepted.
		if oo != no || oc != nc || !bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) && !Equal(a, b) {
			res.Ignored = 1
		}
		return res
	}
	outcomeChanged := oo != no || oc != nc
	if outcomeChanged {
		res.Changes = append(res.Changes, Change{
			Path: "", Kind: KindOutcomeChanged, Risk: RiskHigh,
			Old: outcomeJSON(oo, oc, a), New: outcomeJSON(no, nc, b),
		})
	}
	if a == nil || b == nil {
		return res
	}
	_, ea := splitResponse(recorded.Response)
	_, eb := splitResponse(replayed.Response)
	if outcomeChanged && (ea == nil) != (eb == nil) {
		// A result against an error object: their members have nothing in
		// common; the outcome change carries the error's code and message.
		return res
	}
	av, errA := Parse(a)
	bv, errB := Parse(b)
	if errA != nil || errB != nil {
		if !bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) {
			res.Err = fmt.Sprintf("comparing bytes: recorded: %v; replayed: %v", errA, errB)
			res.Changes = append(res.Changes, Change{Kind: KindValueChanged, Risk: RiskMedium, Old: a, New: b})
		}
		return res
	}
	d := differ{rules: rules, errObj: oo == recorder.OutcomeJSONRPCError && no == recorder.OutcomeJSONRPCError,
		list: ListMember[recorded.Method].Field, skipIsError: outcomeChanged}
	d.walk(nil, av, bv)
	res.Changes = append(res.Changes, d.out...)
	res.Ignored = d.ignored
	return res
}

// maxOutcomeMessage bounds the error message quoted in an outcome change.
const maxOutcomeMessage = 300

// outcomeJSON spells an outcome for an outcome change: "ok",
// "jsonrpc_error -32602: Unknown tool: x", "tool_error: <first text>".
func outcomeJSON(o recorder.Outcome, code int, body json.RawMessage) json.RawMessage {
	s := o.String()
	if (o == recorder.OutcomeJSONRPCError || o == recorder.OutcomeTransportError) && code != 0 {
		s = fmt.Sprintf("%s %d", o, code)
	}
	var msg string
	switch o {
	case recorder.OutcomeJSONRPCError, recorder.OutcomeTransportError:
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &e)
		msg = e.Message
	case recorder.OutcomeToolError:
		var r struct {
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		}
		_ = json.Unmarshal(body, &r)
		for _, c := range r.Content {
			if c.Type == "text" && c.Text != "" {
				msg = c.Text
				break
			}
		}
	}
	if msg != "" {
		if r := []rune(msg); len(r) > maxOutcomeMessage {
			msg = string(r[:maxOutcomeMessage-1]) + "…"
		}
		s += ": " + msg
	}
	b, _ := json.Marshal(s)
	return b
}

// ProgressPath is the path under which progress notification changes are
// reported: (progress)/N/member; it is no member of any answer.
const ProgressPath = "/(progress)"

// CompareProgress compares the progress notifications of a recorded and a
// replayed request, by position, ignoring the progress token (rewritten
// for the replay) and _meta. A lost notification is medium risk, an extra
// one low, a changed value (progress, total, message) low.
func CompareProgress(recorded, replayed []json.RawMessage, rules IgnoreRules) []Change {
	return compareNotifications("(progress)", recorded, replayed, rules)
}

// CompareLogs is CompareProgress for the log notifications of a request
// (notifications/message params: level, logger, data), under /(log)/N.
func CompareLogs(recorded, replayed []json.RawMessage, rules IgnoreRules) []Change {
	return compareNotifications("(log)", recorded, replayed, rules)
}

func compareNotifications(root string, recorded, replayed []json.RawMessage, rules IgnoreRules) []Change {
	norm := func(ps []json.RawMessage) []any {
		out := make([]any, 0, len(ps))
		for _, p := range ps {
			v, err := Parse(p)
			if err != nil {
				v = string(p)
			}
			if m, ok := v.(map[string]any); ok {
				delete(m, "progressToken")
				delete(m, "_meta")
			}
			out = append(out, v)
		}
		return out
	}
	d := differ{rules: rules}
	d.walk([]string{root}, norm(recorded), norm(replayed))
	for i := range d.out {
		c := &d.out[i]
		switch c.Kind {
		case KindRemoved:
			c.Risk = RiskMedium
		default:
			c.Risk = RiskLow
		}
	}
	return d.out
}
