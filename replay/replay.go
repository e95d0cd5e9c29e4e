// Package replay holds hop-isolated replay: turning recorded events back into
// requests and exchanges, and (in sub-packages) comparing answers (diff),
// serving recorded backends (match, mockserver), carrying incidents between
// machines (bundle), restoring redacted secrets (secrets) and reporting
// (report).
package replay

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
)

// Request is one recorded client request with its hops.
type Request struct {
	RequestID string
	SessionID string
	Method    string
	Server    string
	Target    string
	// Inbound is the request as the gateway received it; nil if not recorded.
	Inbound *recorder.Event
	// Upstream holds one event per attempt, in order.
	Upstream []recorder.Event
	// Response is what the client got; nil if not recorded.
	Response *recorder.Event
	// Other hops (auth, route, notification, server_request), in order.
	Other []recorder.Event
}

// FinalUpstream returns the last upstream attempt, or nil.
func (r *Request) FinalUpstream() *recorder.Event {
	if len(r.Upstream) == 0 {
		return nil
	}
	return &r.Upstream[len(r.Upstream)-1]
}

// Requests groups events by request id. Requests are ordered by their first
// event's time, hops by seq. Events without a request id are dropped.
func Requests(events []recorder.Event) []Request {
	byID := map[string][]recorder.Event{}
	var ids []string
	for _, e := range events {
		if e.RequestID == "" {
			continue
		}
		if _, ok := byID[e.RequestID]; !ok {
			ids = append(ids, e.RequestID)
		}
		byID[e.RequestID] = append(byID[e.RequestID], e)
	}
	out := make([]Request, 0, len(ids))
	for _, id := range ids {
		evs := byID[id]
		slices.SortStableFunc(evs, func(a, b recorder.Event) int {
			return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.TimeNs, b.TimeNs))
		})
		r := Request{RequestID: id}
		for i := range evs {
			e := &evs[i]
			if r.SessionID == "" {
				r.SessionID = e.SessionID
			}
			if r.Method == "" {
				r.Method = e.Method
			}
			if r.Server == "" {
				r.Server = e.Server
			}
			if r.Target == "" {
				r.Target = e.Target
			}
			switch e.Hop {
			case recorder.HopInbound:
				r.Inbound = e
			case recorder.HopUpstream:
				r.Upstream = append(r.Upstream, *e)
			case recorder.HopResponse:
				r.Response = e
			default:
				r.Other = append(r.Other, *e)
			}
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b Request) int { return cmp.Compare(firstTime(a), firstTime(b)) })
	return out
}

func firstTime(r Request) int64 {
	t := int64(0)
	for _, e := range []*recorder.Event{r.Inbound, r.FinalUpstream(), r.Response} {
		if e != nil && (t == 0 || e.TimeNs < t) {
			t = e.TimeNs
		}
	}
	return t
}

// Progress returns the params of the progress notifications recorded for
// r, in order.
func (r *Request) Progress() []json.RawMessage {
	var out []json.RawMessage
	for i := range r.Other {
		if e := &r.Other[i]; e.Hop == recorder.HopNotification && e.Method == "notifications/progress" && len(e.Params) > 0 {
			out = append(out, json.RawMessage(e.Params))
		}
	}
	return out
}

// Logs returns the params of the log notifications (notifications/message)
// recorded for r, in order.
func (r *Request) Logs() []json.RawMessage {
	var out []json.RawMessage
	for i := range r.Other {
		if e := &r.Other[i]; e.Hop == recorder.HopNotification && e.Method == "notifications/message" && len(e.Params) > 0 {
			out = append(out, json.RawMessage(e.Params))
		}
	}
	return out
}

// Exchange converts one event to an exchange: its params as the request and
// its result (or error object) as the response. On upstream hops the
// protocol version is the one negotiated with the backend.
func Exchange(e *recorder.Event) diff.Exchange {
	x := diff.Exchange{
		RequestID: e.RequestID, SessionID: e.SessionID, Method: e.Method, Server: e.Server, Target: e.Target,
		Request: json.RawMessage(e.Params), Response: json.RawMessage(e.Result),
		Outcome: e.Outcome, ErrorCode: int(e.ErrorCode), DurationUs: e.DurationUs,
		ProtocolVersion: e.ProtocolVersion, Truncated: e.PayloadTruncated,
	}
	if e.Hop == recorder.HopUpstream && e.UpstreamVersion != "" {
		x.ProtocolVersion = e.UpstreamVersion
	}
	return x
}

// NewStore builds the mock's answer store from every upstream event, in
// recorded time order (retries included, so a recorded failure followed by a
// successful retry replays the same way).
func NewStore(events []recorder.Event, cfg match.Config) (*match.Store, error) {
	ups := make([]*recorder.Event, 0, len(events))
	for i := range events {
		if events[i].Hop == recorder.HopUpstream {
			ups = append(ups, &events[i])
		}
	}
	slices.SortStableFunc(ups, func(a, b *recorder.Event) int { return cmp.Compare(a.TimeNs, b.TimeNs) })
	// Progress and log notifications a backend sent during a call, and its
	// requests to the client, so the mock sends them too.
	progress := map[string][]json.RawMessage{}
	serverReqs := map[string][]diff.ServerRequest{}
	logs := map[string][]json.RawMessage{}
	notes := slices.Clone(events)
	slices.SortStableFunc(notes, func(a, b recorder.Event) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.TimeNs, b.TimeNs))
	})
	for i := range notes {
		if e := &notes[i]; e.Hop == recorder.HopNotification && e.Method == "notifications/progress" && len(e.Params) > 0 {
			progress[e.RequestID] = append(progress[e.RequestID], json.RawMessage(e.Params))
		}
		if e := &notes[i]; e.Hop == recorder.HopNotification && e.Method == "notifications/message" && len(e.Params) > 0 {
			logs[e.RequestID] = append(logs[e.RequestID], json.RawMessage(e.Params))
		}
		if e := &notes[i]; e.Hop == recorder.HopServerRequest && e.Method != "" {
			serverReqs[e.RequestID] = append(serverReqs[e.RequestID], diff.ServerRequest{Method: e.Method, Params: json.RawMessage(e.Params)})
		}
	}
	last := map[string]*recorder.Event{}
	for _, e := range ups {
		last[e.RequestID] = e
	}
	s := match.NewStore(cfg)
	for _, e := range ups {
		x := Exchange(e)
		if last[e.RequestID] == e {
			x.Progress = progress[e.RequestID]
			x.ServerRequests = serverReqs[e.RequestID]
			x.Logs = logs[e.RequestID]
		}
		if err := s.Add(x); err != nil {
			return nil, fmt.Errorf("building replay store from event %s: %w", e.EventID, err)
		}
	}
	return s, nil
}

// ToolsLists returns, per server, the first recorded upstream tools/list
// result without a cursor (the first page), for a bundle header.
func ToolsLists(events []recorder.Event) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopUpstream || e.Method != "tools/list" || e.Outcome != recorder.OutcomeOK || len(e.Result) == 0 {
			continue
		}
		if _, ok := out[e.Server]; ok {
			continue
		}
		var p struct {
			Cursor string `json:"cursor"`
		}
		if len(e.Params) > 0 && json.Unmarshal(e.Params, &p) == nil && p.Cursor != "" {
			continue
		}
		out[e.Server] = json.RawMessage(e.Result)
	}
	return out
}
