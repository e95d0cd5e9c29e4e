package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/report"
)

// ParseTarget parses a --target value: "server=http://host/mcp" (streamable
// HTTP), "server=sse:http://host/sse" (legacy SSE) or
// "server=stdio:command arg ..." (arguments split on spaces).
func ParseTarget(s string) (config.Server, error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok || name == "" || spec == "" {
		return config.Server{}, fmt.Errorf("target %q: want server=http://… or server=stdio:command args", s)
	}
	srv := config.Server{Name: name}
	switch {
	case strings.HasPrefix(spec, "stdio:"):
		f := strings.Fields(strings.TrimPrefix(spec, "stdio:"))
		if len(f) == 0 {
			return config.Server{}, fmt.Errorf("target %q: stdio: needs a command", s)
		}
		srv.Transport, srv.Command, srv.Args = config.TransportStdio, f[0], f[1:]
	case strings.HasPrefix(spec, "sse:"):
		srv.Transport, srv.URL = config.TransportSSE, strings.TrimPrefix(spec, "sse:")
	case strings.HasPrefix(spec, "http://"), strings.HasPrefix(spec, "https://"):
		srv.Transport, srv.URL = config.TransportHTTP, spec
	default:
		return config.Server{}, fmt.Errorf("target %q: %q is neither an http(s) URL nor stdio:command", s, spec)
	}
	return srv, nil
}

// upstreams holds one live connection per backend, opened on first use and
// shared by the sessions replaying in parallel.
type upstreams struct {
	ctx   context.Context // the connections' lifetime (stdio children die with it)
	o     Options
	mu    sync.Mutex
	conns map[string]*upConn
	seq   atomic.Int64
}

type upConn struct {
	fill     func([]byte) ([]byte, error) // restores secrets in recorded answers to the backend
	once     sync.Once
	tr       transport.Interface
	err      error
	inflight sync.Map // *replay.Request → start time
	used     sync.Map // *replay.Request → map[int]bool (guarded by mu)
	mu       sync.Mutex
	// progress collects progress notifications by the token of the
	// request in flight (guarded by mu).
	progress map[string][]json.RawMessage
}

// watch starts collecting the progress notifications sent with token.
func (c *upConn) watch(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.progress == nil {
		c.progress = map[string][]json.RawMessage{}
	}
	c.progress[token] = []json.RawMessage{}
}

// take stops collecting for token and returns what came.
func (c *upConn) take(token string) []json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress[token]
	delete(c.progress, token)
	return p
}

func (c *upConn) notification(n mcp.JSONRPCNotification) {
	if n.Method != "notifications/progress" {
		return
	}
	tok, _ := n.Params.AdditionalFields["progressToken"].(string)
	b, err := json.Marshal(n.Params)
	if err != nil || tok == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.progress[tok]; ok {
		c.progress[tok] = append(p, b)
	}
}

func newUpstreams(ctx context.Context, o Options) *upstreams {
	return &upstreams{ctx: context.WithoutCancel(ctx), o: o, conns: map[string]*upConn{}}
}

// writeGuard says why a call of a backend's tool must not be replayed
// against a live system: tools not annotated readOnlyHint are skipped unless
// AllowWrites. Empty means go ahead.
func (o Options) writeGuard(server, tool string) string {
	if o.AllowWrites || o.ReadOnly[server][tool] {
		return ""
	}
	why := "is not annotated readOnlyHint"
	if _, known := o.ReadOnly[server][tool]; !known {
		why = "was not in a recorded tools/list, so it may write"
	}
	return fmt.Sprintf("write tool: %s.%s %s (use --allow-writes)", server, tool, why)
}

func (u *upstreams) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		if c.tr != nil {
			_ = c.tr.Close()
		}
	}
}

// conn returns the initialized connection to server, protocolVersion being
// the version recorded with that backend.
// caps are the client capabilities declared to the backend: the gateway
// declares to a backend what the client declared (a backend such as
// server-everything offers tools by them), so one connection per distinct
// recorded profile.
func (u *upstreams) conn(server, protocolVersion string, caps json.RawMessage) (*upConn, error) {
	srv, ok := u.o.Targets[server]
	if !ok {
		return nil, errNoTarget
	}
	key := server + "\x00" + string(caps)
	u.mu.Lock()
	c := u.conns[key]
	if c == nil {
		c = &upConn{fill: u.o.Secrets.FillAll}
		u.conns[key] = c
	}
	u.mu.Unlock()
	c.once.Do(func() { c.tr, c.err = u.dial(c, srv, protocolVersion, caps) })
	return c, c.err
}

// clientCaps returns the client capabilities a recorded session declared
// in its initialize, canonical; the union of every recorded session's when
// the session's initialize was not recorded (idx nil: the union).
func clientCaps(reqs []replay.Request, idx []int) json.RawMessage {
	one := func(r *replay.Request) (map[string]any, bool) {
		if r.Method != "initialize" || r.Inbound == nil || len(r.Inbound.Params) == 0 {
			return nil, false
		}
		var p struct {
			Capabilities map[string]any `json:"capabilities"`
		}
		if json.Unmarshal(r.Inbound.Params, &p) != nil {
			return nil, false
		}
		if p.Capabilities == nil {
			p.Capabilities = map[string]any{}
		}
		return p.Capabilities, true
	}
	for _, i := range idx {
		if c, ok := one(&reqs[i]); ok {
			b, _ := json.Marshal(c)
			return b
		}
	}
	union := map[string]any{}
	found := false
	for i := range reqs {
		if c, ok := one(&reqs[i]); ok {
			found = true
			for k, v := range c {
				union[k] = v
			}
		}
	}
	if !found {
		// Nothing recorded: everything a client could answer.
		return json.RawMessage(`{"elicitation":{},"roots":{"listChanged":true},"sampling":{}}`)
	}
	b, _ := json.Marshal(union)
	return b
}

func (u *upstreams) dial(c *upConn, srv config.Server, version string, caps json.RawMessage) (transport.Interface, error) {
	var tr transport.Interface
	var err error
	var env []string
	switch srv.Transport {
	case config.TransportStdio, "":
		if srv.Command == "" {
			return nil, fmt.Errorf("server %s: no command and no URL", srv.Name)
		}
		// The environment the gateway gives this backend (base variables,
		// env_passthrough, env), so environment-dependent output does not
		// differ between recording and replay.
		env = proxy.StdioEnv(srv, os.Environ())
		dir := srv.Dir
		st := transport.NewStdioWithOptions(srv.Command, env, srv.Args,
			transport.WithCommandStderrWriter(u.o.stderr()),
			transport.WithCommandFunc(func(ctx context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
				cmd := exec.CommandContext(ctx, command, args...)
				cmd.Env, cmd.Dir = env, dir
				return cmd, nil
			}))
		tr = st
	case config.TransportSSE:
		tr, err = transport.NewSSE(srv.URL, transport.WithHeaders(srv.Headers))
	default:
		tr, err = transport.NewStreamableHTTP(srv.URL, transport.WithHTTPHeaders(srv.Headers))
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", srv.Name, err)
	}
	tr.SetNotificationHandler(c.notification)
	if bt, ok := tr.(transport.BidirectionalInterface); ok {
		bt.SetRequestHandler(func(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
			return c.serverAnswer(req), nil
		})
	}
	if err := tr.Start(u.ctx); err != nil {
		return nil, fmt.Errorf("starting %s transport to %s: %w", srv.Transport, srv.Name, err)
	}
	if version == "" {
		version = config.DefaultProtocolVersion
	}
	params, _ := json.Marshal(map[string]any{
		"protocolVersion": version,
		"capabilities":    caps,
		"clientInfo":      map[string]string{"name": "mcptrail-replay", "version": "1"},
	})
	timeout := srv.ConnectTimeout
	if timeout <= 0 {
		timeout = config.DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(u.ctx, timeout)
	defer cancel()
	resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(u.seq.Add(1)), Method: "initialize", Params: json.RawMessage(params)})
	if err == nil && resp.Error != nil {
		err = fmt.Errorf("%d %s", resp.Error.Code, resp.Error.Message)
	}
	if err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("initializing %s: %w", srv.Name, err)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	_ = json.Unmarshal(resp.Result, &res)
	addr := srv.URL
	if addr == "" {
		addr = strings.TrimSpace(srv.Command + " " + strings.Join(srv.Args, " "))
	}
	u.o.against.noteInitialize(srv.Name, addr, env, resp.Result)
	if hc, ok := tr.(transport.HTTPConnection); ok && res.ProtocolVersion != "" {
		hc.SetProtocolVersion(res.ProtocolVersion)
	}
	if err := tr.SendNotification(ctx, mcp.JSONRPCNotification{JSONRPC: "2.0", Notification: mcp.Notification{Method: "notifications/initialized"}}); err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("initializing %s: %w", srv.Name, err)
	}
	return tr, nil
}

// serverAnswer answers a backend's request to the client with the recorded
// client answer of the call that caused it: the call in flight whose
// recording holds an unused request of that method. Calls with recorded
// server requests run alone (see exclusive), so there is one; with none, a
// lone call in flight is the cause (and has no recorded answer). Several
// candidates: the request is refused rather than answered from another
// call's recording.
func (c *upConn) serverAnswer(req transport.JSONRPCRequest) *transport.JSONRPCResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	var inflight, candidates []*replay.Request
	c.inflight.Range(func(k, _ any) bool {
		r := k.(*replay.Request)
		inflight = append(inflight, r)
		u, _ := c.used.LoadOrStore(r, map[int]bool{})
		if hasUnusedServerRequest(r, u.(map[int]bool), req.Method) {
			candidates = append(candidates, r)
		}
		return true
	})
	var cur *replay.Request
	switch {
	case len(candidates) == 1:
		cur = candidates[0]
	case len(candidates) == 0 && len(inflight) == 1:
		cur = inflight[0]
	case len(inflight) == 0:
		return transport.NewJSONRPCErrorResponse(req.ID, -32601, "mcptrail replay: no request in flight", nil)
	default:
		return transport.NewJSONRPCErrorResponse(req.ID, -32603,
			fmt.Sprintf("mcptrail replay: cannot tell which of %d calls in flight sent %s", len(inflight), req.Method), nil)
	}
	u, _ := c.used.LoadOrStore(cur, map[int]bool{})
	return recordedServerAnswer(cur, u.(map[int]bool), req, c.fill)
}

// session replays the upstream hops of one recorded session in order.
func (u *upstreams) session(ctx context.Context, reqs []replay.Request, idx []int, cases []*report.Case, tick func()) error {
	p := pacer{speed: u.o.Speed}
	caps := clientCaps(reqs, idx)
	for _, i := range idx {
		r := &reqs[i]
		up := r.FinalUpstream()
		if up == nil {
			continue
		}
		c := u.request(ctx, &p, r, up, caps)
		if err := ctx.Err(); err != nil {
			return err
		}
		hideSecrets(u.o.Secrets, &c)
		cases[i] = &c
		tick()
	}
	return nil
}

func (u *upstreams) request(ctx context.Context, p *pacer, r *replay.Request, up *recorder.Event, caps json.RawMessage) report.Case {
	o := u.o
	recorded := replay.Exchange(up)
	recorded.RequestID, recorded.SessionID = r.RequestID, r.SessionID
	if recorded.Target == "" {
		recorded.Target = r.Target
	}
	if recorded.Response != nil {
		recorded.Outcome = recorder.OutcomeOK // derive from the answer, as for the live one
		recorded.Response = fillRecorded(o.Secrets, recorded.Response)
	}
	switch {
	case up.Params == nil:
		return report.Skipped(recorded, "the upstream request was not recorded")
	case up.Result == nil:
		return report.Skipped(recorded, "the upstream answer was not recorded")
	case up.PayloadTruncated:
		return report.Skipped(recorded, "the recorded payload was truncated at the payload cap")
	}
	if up.Method == "tools/call" {
		var pr struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(up.Params, &pr)
		if why := o.writeGuard(up.Server, pr.Name); why != "" {
			return report.Skipped(recorded, why)
		}
	}
	token := "replay-" + strconv.FormatInt(u.seq.Add(1), 10)
	params := rewriteParams(up.Params, token)
	params, err := o.Secrets.FillAll(params)
	if err != nil {
		return report.Skipped(recorded, err.Error())
	}
	if _, ok := o.Targets[up.Server]; !ok {
		return report.Skipped(recorded, fmt.Sprintf("no target for server %s (use --target %s=… or --config)", up.Server, up.Server))
	}
	conn, err := u.conn(up.Server, up.UpstreamVersion, caps)
	if err != nil {
		return report.Failed(recorded, err)
	}
	if err := p.wait(ctx, up.TimeNs); err != nil {
		return report.Failed(recorded, err)
	}
	if err := o.markSent(ctx, r.RequestID); err != nil {
		return report.Failed(recorded, err)
	}
	unlock := o.exclusive(r)
	defer unlock()
	conn.inflight.Store(r, time.Now())
	defer conn.inflight.Delete(r)
	conn.watch(token)
	defer conn.take(token)
	timeout := o.Targets[up.Server].Timeout
	if timeout <= 0 {
		timeout = o.Timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	resp, err := conn.tr.SendRequest(rctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(u.seq.Add(1)), Method: up.Method, Params: json.RawMessage(params)})
	dur := time.Since(t0)
	if err != nil {
		return report.Failed(recorded, fmt.Errorf("sending %s to %s: %w", up.Method, up.Server, err))
	}
	replayed := diff.Exchange{Method: up.Method, Server: up.Server, DurationUs: max(dur.Microseconds(), 1)}
	if resp.Error != nil {
		replayed.Response = responseJSON(nil, resp.Error.Code, resp.Error.Message, resp.Error.Data)
	} else {
		replayed.Response = resp.Result
	}
	o.Logger.Debug("replayed upstream", "request_id", r.RequestID, "server", up.Server, "method", up.Method, "duration", dur)
	return report.WithProgress(report.Compared(recorded, replayed, o.Ignore), r.Progress(), conn.take(token), o.Ignore)
}

// catalog fetches every list the recording holds for a backend (tools,
// prompts, resources, templates; all pages) from its live target and
// compares it with the recorded one, by identity (see diff.ListMember):
// one case per server and list, so that a tool that was never called, a
// dropped annotation or a tightened schema shows too.
func (u *upstreams) catalog(ctx context.Context, lists map[string]map[string]json.RawMessage, caps json.RawMessage) []report.Case {
	servers := make([]string, 0, len(lists))
	for s := range lists {
		if _, ok := u.o.Targets[s]; ok {
			servers = append(servers, s)
		}
	}
	slices.Sort(servers)
	var out []report.Case
	for _, server := range servers {
		for _, method := range []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"} {
			rec, ok := lists[server][method]
			if !ok {
				continue
			}
			recorded := diff.Exchange{RequestID: "catalog " + server + " " + method, Method: method, Server: server, Response: fillRecorded(u.o.Secrets, rec)}
			conn, err := u.conn(server, "", caps)
			if err != nil {
				out = append(out, report.Failed(recorded, err))
				continue
			}
			t0 := time.Now()
			got, err := u.list(ctx, conn, method)
			if err != nil {
				out = append(out, report.Failed(recorded, fmt.Errorf("fetching %s from %s: %w", method, server, err)))
				continue
			}
			c := report.Compared(recorded, diff.Exchange{Method: method, Server: server, Response: got, DurationUs: max(time.Since(t0).Microseconds(), 1)}, u.o.Ignore)
			hideSecrets(u.o.Secrets, &c)
			out = append(out, c)
		}
	}
	return out
}

// list fetches every page of a list method and returns one result object
// holding all items ({"tools":[…]}); an error answer is returned as the
// error object.
func (u *upstreams) list(ctx context.Context, conn *upConn, method string) (json.RawMessage, error) {
	field := diff.ListMember[method].Field
	var items []json.RawMessage
	cursor := ""
	for page := 0; page < 1000; page++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		rctx, cancel := context.WithTimeout(ctx, u.o.Timeout)
		resp, err := conn.tr.SendRequest(rctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(u.seq.Add(1)), Method: method, Params: params})
		cancel()
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return responseJSON(nil, resp.Error.Code, resp.Error.Message, resp.Error.Data), nil
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(resp.Result, &body); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", method, err)
		}
		var pageItems []json.RawMessage
		_ = json.Unmarshal(body[field], &pageItems)
		items = append(items, pageItems...)
		cursor = ""
		_ = json.Unmarshal(body["nextCursor"], &cursor)
		if cursor == "" {
			break
		}
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(map[string]any{field: items})
	return b, err
}
