package runner

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
)

// Multi round-trip requests (2026-07-28) in a replay. A call that needs the
// client's input ends with an InputRequiredResult whose requestState and
// inputRequests keys the gateway mints anew on every run; the client's retry
// names them. So the replay links each recorded round to the live one: the
// retry is sent with the live requestState and its inputResponses under the
// live keys, and both answers are compared with those tokens normalized.

// inputRequired is the part of an InputRequiredResult a chain needs.
type inputRequired struct {
	ResultType    string                  `json:"resultType"`
	InputRequests map[string]inputRequest `json:"inputRequests"`
	RequestState  string                  `json:"requestState"`
}

type inputRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func parseInputRequired(b []byte) (inputRequired, bool) {
	var ir inputRequired
	if json.Unmarshal(diff.ResponseBody(b), &ir) != nil || ir.ResultType != "input_required" {
		return ir, false
	}
	return ir, true
}

// orderedKeys returns the keys of an inputRequests object in a run-independent
// order: by method, then canonical params, then key.
func orderedKeys(m map[string]inputRequest) []string {
	keys := make([]string, 0, len(m))
	canon := map[string]string{}
	for k, v := range m {
		keys = append(keys, k)
		c, err := diff.Canonical(v.Params)
		if err != nil {
			c = v.Params
		}
		canon[k] = string(c)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[a].Method, m[b].Method), cmp.Compare(canon[a], canon[b]), cmp.Compare(a, b))
	})
	return keys
}

// chains maps the tokens of one replayed session's recorded rounds to the
// live ones. Used by one session's goroutine only.
type chains struct {
	state map[string]string            // recorded requestState → live
	keys  map[string]map[string]string // recorded requestState → recorded input key → live
}

// note links a recorded InputRequiredResult (the response hop) to the live
// answer of its replay.
func (c *chains) note(recorded *recorder.Event, live json.RawMessage) {
	if recorded == nil {
		return
	}
	rec, ok := parseInputRequired(recorded.Result)
	if !ok || rec.RequestState == "" {
		return
	}
	got, ok := parseInputRequired(live)
	if !ok || got.RequestState == "" {
		return
	}
	if c.state == nil {
		c.state, c.keys = map[string]string{}, map[string]map[string]string{}
	}
	c.state[rec.RequestState] = got.RequestState
	rk, gk := orderedKeys(rec.InputRequests), orderedKeys(got.InputRequests)
	m := map[string]string{}
	for i := range min(len(rk), len(gk)) {
		m[rk[i]] = gk[i]
	}
	c.keys[rec.RequestState] = m
}

// resume rewrites a retry's recorded requestState and inputResponses keys
// to the live ones; params of other requests are returned unchanged.
func (c *chains) resume(params []byte) []byte {
	if len(c.state) == 0 {
		return params
	}
	o, err := jsonrpc.ParseObject(params)
	if err != nil {
		return params
	}
	st, _ := o.GetString("requestState")
	live, ok := c.state[st]
	if !ok {
		return params
	}
	o.SetString("requestState", live)
	if ir, err := jsonrpc.ParseObject(o.Get("inputResponses")); err == nil {
		out := &jsonrpc.Object{}
		for _, k := range ir.Keys() {
			nk := k
			if lk, ok := c.keys[st][k]; ok {
				nk = lk
			}
			out.Set(nk, ir.Get(k))
		}
		o.Set("inputResponses", out.Marshal())
	}
	return o.Marshal()
}

// normalizeInputRequired replaces, in an InputRequiredResult, the tokens the
// gateway mints on every run (its requestState and input keys) with stable
// ones, so that a recorded and a replayed round compare equal; a backend's
// own tokens are left as they are.
func normalizeInputRequired(o *jsonrpc.Object) {
	if rt, _ := o.GetString("resultType"); rt != "input_required" {
		return
	}
	if st, ok := o.GetString("requestState"); ok && strings.HasPrefix(st, proxy.RequestStatePrefix) {
		o.SetString("requestState", proxy.RequestStatePrefix+"«minted by the gateway»")
	}
	var reqs map[string]inputRequest
	raw := o.Get("inputRequests")
	if json.Unmarshal(raw, &reqs) != nil || len(reqs) == 0 {
		return
	}
	src, err := jsonrpc.ParseObject(raw)
	if err != nil {
		return
	}
	out := &jsonrpc.Object{}
	for i, k := range orderedKeys(reqs) {
		nk := k
		if strings.HasPrefix(k, proxy.InputKeyPrefix) {
			nk = proxy.InputKeyPrefix + "«input " + strconv.Itoa(i+1) + "»"
		}
		out.Set(nk, src.Get(k))
	}
	o.Set("inputRequests", out.Marshal())
}
