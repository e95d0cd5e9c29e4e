// Package runner replays recorded MCP traffic hop by hop and compares what
// comes back with what was recorded.
//
// Three modes isolate three hops:
//
//   - mock: the recorded client requests go to a gateway whose backends are
//     replaced by the replay mock (recorded upstream answers), so only the
//     gateway (routing, policy, rewriting) is under test;
//   - upstream: the recorded upstream requests go straight to live backends,
//     so only the backends are under test;
//   - e2e: the recorded client requests go to a full gateway with live
//     backends.
//
// Volatile parts are rewritten before sending (JSON-RPC ids, session ids,
// progress tokens, trace context and the gateway's _meta stamps) and removed
// before comparing. Redaction placeholders are filled from secrets; a request
// that keeps an unresolved placeholder is not sent and is reported skipped.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/secrets"
)

// Mode selects which hop is replayed.
type Mode string

// Modes.
const (
	ModeMock     Mode = "mock"
	ModeUpstream Mode = "upstream"
	ModeE2E      Mode = "e2e"
)

// Options configure one replay pass.
type Options struct {
	// Mode is mock, upstream or e2e.
	Mode Mode
	// GatewayURL is the gateway's MCP endpoint (…/mcp); mock and e2e modes.
	GatewayURL string
	// Tokens maps a recorded principal to the bearer token sent for its
	// requests; the "" entry is used for every other principal. Empty: no
	// Authorization header.
	Tokens map[string]string
	// Targets maps a backend namespace to the live server that upstream mode
	// sends its recorded requests to. Servers without a target are skipped.
	Targets map[string]config.Server
	// Secrets fill redaction placeholders before sending. Nil resolves
	// nothing.
	Secrets *secrets.Secrets
	// KeepPlaceholders sends placeholders unfilled. Mock mode sets it: the
	// mock matches requests against the recording, which holds the
	// placeholders, and no live backend ever sees the request.
	KeepPlaceholders bool
	// Ignore hides answer paths that are known to vary.
	Ignore diff.IgnoreRules
	// Concurrency is how many recorded sessions replay in parallel (each
	// session's requests stay in recorded order). Default 4.
	Concurrency int
	// Speed scales recorded pacing within a session: 0 (default) sends as
	// fast as possible, 1.0 keeps the recorded gaps, 2.0 halves them.
	Speed float64
	// AllowWrites lets upstream and e2e modes, which reach live backends,
	// call tools that are not annotated readOnlyHint: true; by default
	// they are reported skipped.
	AllowWrites bool
	// ReadOnly is, per backend and tool, the recorded readOnlyHint (see
	// replay.ReadOnlyTools). A tool absent from it counts as not read-only.
	// Nil: derived from the tools lists recorded among the replayed requests.
	ReadOnly map[string]map[string]bool
	// Catalog is, per backend and list method, the recorded list answer
	// (replay.BackendLists form). Upstream mode fetches the same lists from
	// each target and reports differences as cases of their own. Nil:
	// derived from the lists recorded among the replayed requests.
	Catalog map[string]map[string]json.RawMessage
	// Separator is the namespace separator the traffic was recorded with,
	// used to split recorded tools lists by backend. Default ".".
	Separator string
	// Timeout bounds one replayed request. Default 60s.
	Timeout time.Duration
	// Progress, when set, is called after each request with the counts.
	Progress func(done, total int)
	// Logger receives per-request debug lines. Default discards.
	Logger *slog.Logger
	// Stderr receives live stdio targets' stderr. Default discards.
	Stderr io.Writer

	serverReqs *sync.RWMutex // see exclusive
	against    *against      // what the run reached, for the report
	// sent records when each request was sent (by recorded request id);
	// notBefore, from an earlier pass, delays a request until then plus
	// minGap (see RunOptions.BaselineTwice).
	sent      *sync.Map
	notBefore *sync.Map
}

// against collects the targets a run reached, by name.
type against struct {
	mu sync.Mutex
	m  map[string]report.Target
}

func (a *against) note(t report.Target) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]report.Target{}
	}
	if _, ok := a.m[t.Name]; !ok {
		a.m[t.Name] = t
	}
}

func (a *against) list() []report.Target {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]report.Target, 0, len(a.m))
	for _, t := range a.m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y report.Target) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// noteInitialize records a target from its initialize result.
func (a *against) noteInitialize(name, address string, env []string, result json.RawMessage) {
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
		ServerInfo      struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"serverInfo"`
	}
	_ = json.Unmarshal(result, &res)
	var names []string
	for _, kv := range env {
		n, _, _ := strings.Cut(kv, "=")
		names = append(names, n)
	}
	slices.Sort(names)
	a.note(report.Target{Name: name, Address: address, ServerName: res.ServerInfo.Name, ServerVersion: res.ServerInfo.Version,
		ProtocolVersion: res.ProtocolVersion, Env: names})
}

// passGap is how much later than in the first pass the second pass of
// --baseline-twice sends each request: enough for a clock with second
// resolution in an answer to read differently, so it is seen as noise.
const passGap = 1100 * time.Millisecond

// markSent notes that the request recorded as id is sent now, after
// waiting, in a second pass, until passGap after the first pass sent it.
func (o Options) markSent(ctx context.Context, id string) error {
	if o.notBefore != nil {
		if v, ok := o.notBefore.Load(id); ok {
			if d := time.Until(v.(time.Time).Add(passGap)); d > 0 {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-t.C:
				}
			}
		}
	}
	if o.sent != nil {
		o.sent.Store(id, time.Now())
	}
	return nil
}

func (o Options) stderr() io.Writer {
	if o.Stderr == nil {
		return io.Discard
	}
	return o.Stderr
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Replay replays reqs once in o.Mode and returns one case per replayable
// request, in the order of reqs. Requests that never reached a backend are
// left out in upstream mode; initialize exchanges only set sessions up.
func Replay(ctx context.Context, reqs []replay.Request, o Options) ([]report.Case, error) {
	o.defaults()
	switch o.Mode {
	case ModeMock, ModeE2E:
		if o.GatewayURL == "" {
			return nil, fmt.Errorf("replay %s: no gateway URL", o.Mode)
		}
	case ModeUpstream:
	default:
		return nil, fmt.Errorf("replay: unknown mode %q (want mock, upstream or e2e)", o.Mode)
	}
	o.Logger = o.Logger.With("component", "replay.runner", "mode", string(o.Mode))
	o.serverReqs = &sync.RWMutex{}
	sessions := groupSessions(reqs)
	total := 0
	for _, s := range sessions {
		for _, i := range s {
			if o.Mode == ModeUpstream && reqs[i].FinalUpstream() != nil || o.Mode != ModeUpstream && reqs[i].Method != "initialize" {
				total++
			}
		}
	}
	cases := make([]*report.Case, len(reqs))
	var done atomic.Int64
	tick := func() {
		if o.Progress != nil {
			o.Progress(int(done.Add(1)), total)
		}
	}
	if (o.Mode == ModeUpstream || o.Mode == ModeE2E) && o.ReadOnly == nil {
		o.ReadOnly = replay.ReadOnlyTools(replay.BackendLists(Events(reqs), o.Separator))
	}
	var up *upstreams
	if o.Mode == ModeUpstream {
		up = newUpstreams(ctx, o)
		defer up.close()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for _, idx := range sessions {
		g.Go(func() error {
			if o.Mode == ModeUpstream {
				return up.session(gctx, reqs, idx, cases, tick)
			}
			return clientSession(gctx, o, reqs, idx, cases, tick)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]report.Case, 0, total)
	for _, c := range cases {
		if c != nil {
			out = append(out, *c)
		}
	}
	if o.Mode == ModeUpstream {
		// After the calls: a backend may register tools once a client is
		// known, and the catalog is the one the calls ran against.
		lists := o.Catalog
		if lists == nil {
			lists = replay.BackendLists(Events(reqs), o.Separator)
		}
		// The recorded lists merge every session's: fetch them declaring
		// the union of the recorded client capabilities.
		out = append(out, up.catalog(ctx, lists, clientCaps(reqs, nil))...)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Events flattens requests back into their events.
func Events(reqs []replay.Request) []recorder.Event {
	var out []recorder.Event
	for i := range reqs {
		r := &reqs[i]
		if r.Inbound != nil {
			out = append(out, *r.Inbound)
		}
		out = append(out, r.Upstream...)
		out = append(out, r.Other...)
		if r.Response != nil {
			out = append(out, *r.Response)
		}
	}
	return out
}

// groupSessions returns request indexes per recorded session, sessions in
// order of their first request.
func groupSessions(reqs []replay.Request) [][]int {
	var order []string
	by := map[string][]int{}
	for i, r := range reqs {
		if _, ok := by[r.SessionID]; !ok {
			order = append(order, r.SessionID)
		}
		by[r.SessionID] = append(by[r.SessionID], i)
	}
	out := make([][]int, 0, len(order))
	for _, s := range order {
		out = append(out, by[s])
	}
	return out
}

// pacer waits between requests of one session to keep recorded gaps.
type pacer struct {
	speed float64
	base  int64 // recorded time of the session's first request, ns
	start time.Time
}

func (p *pacer) wait(ctx context.Context, recordedNs int64) error {
	if p.speed <= 0 || recordedNs == 0 {
		return nil
	}
	if p.base == 0 {
		p.base, p.start = recordedNs, time.Now()
		return nil
	}
	due := p.start.Add(time.Duration(float64(recordedNs-p.base) / p.speed))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Volatile _meta keys: trace context and the gateway's stamps differ on
// every run and are dropped from requests before they are sent again.
var volatileMeta = []string{"traceparent", "tracestate", "baggage", "mcptrail.dev/request-id"}

// withRequestID sets params._meta["mcptrail.dev/request-id"] to id (no-op for
// an empty id or params that are not an object).
func withRequestID(params []byte, id string) []byte {
	if id == "" {
		return params
	}
	o, err := jsonrpc.ParseObject(params)
	if err != nil {
		return params
	}
	meta := &jsonrpc.Object{}
	if raw := o.Get("_meta"); raw != nil {
		if m, err := jsonrpc.ParseObject(raw); err == nil {
			meta = m
		}
	}
	meta.SetString("mcptrail.dev/request-id", id)
	o.Set("_meta", meta.Marshal())
	return o.Marshal()
}

// rewriteParams prepares recorded params for sending: volatile _meta keys are
// dropped and a progress token is replaced by token (when token is not "").
func rewriteParams(params []byte, token string) []byte {
	if len(params) == 0 {
		return params
	}
	o, err := jsonrpc.ParseObject(params)
	if err != nil {
		return params
	}
	raw := o.Get("_meta")
	if raw == nil {
		return params
	}
	meta, err := jsonrpc.ParseObject(raw)
	if err != nil {
		return params
	}
	for _, k := range volatileMeta {
		meta.Delete(k)
	}
	if token != "" && meta.Get("progressToken") != nil {
		b, _ := json.Marshal(token)
		meta.Set("progressToken", b)
	}
	if meta.Len() == 0 {
		o.Delete("_meta")
	} else {
		o.Set("_meta", meta.Marshal())
	}
	return o.Marshal()
}

// normalizeAnswer removes what the gateway stamps on every answer: the
// request id in result._meta and in a gateway error's data.
func normalizeAnswer(b []byte) []byte {
	o, err := jsonrpc.ParseObject(b)
	if err != nil {
		return b
	}
	strip := func(member, key string) {
		raw := o.Get(member)
		if raw == nil {
			return
		}
		m, err := jsonrpc.ParseObject(raw)
		if err != nil || !m.Delete(key) {
			return
		}
		if m.Len() == 0 {
			o.Delete(member)
		} else {
			o.Set(member, m.Marshal())
		}
	}
	strip("_meta", "mcptrail.dev/request-id")
	normalizeInputRequired(o)
	if o.Get("code") != nil && o.Get("message") != nil {
		strip("data", "requestId")
	}
	return o.Marshal()
}

// fillRecorded fills secrets into a recorded answer, so that a live backend
// echoing a secret compares equal to the redacted recording.
func fillRecorded(s *secrets.Secrets, b []byte) []byte {
	if s == nil || len(b) == 0 {
		return b
	}
	out, _ := s.Fill(b)
	return out
}

// hideSecrets masks the secret values that were filled in for the replay
// in what a case reports (differences, reason): the report is printed and
// stored, and must not carry what the recording redacted.
func hideSecrets(s *secrets.Secrets, c *report.Case) {
	if s == nil {
		return
	}
	maskJSON := func(b json.RawMessage) json.RawMessage {
		m := s.Mask(b)
		if len(m) > 0 && !json.Valid(m) {
			// A secret matched across JSON syntax: withhold the value.
			return json.RawMessage(`"«value withheld: it holds a secret»"`)
		}
		return m
	}
	for i := range c.Diff.Changes {
		ch := &c.Diff.Changes[i]
		ch.Old, ch.New = maskJSON(ch.Old), maskJSON(ch.New)
	}
	c.Reason = string(s.Mask([]byte(c.Reason)))
}

// responseJSON is what a replayed answer is compared as: the result, or the
// error object.
func responseJSON(result json.RawMessage, code int, message string, data any) json.RawMessage {
	if result != nil {
		return result
	}
	e := map[string]any{"code": code, "message": message}
	if data != nil {
		e["data"] = data
	}
	b, _ := json.Marshal(e)
	return b
}
