package proxy

// Tasks for 2026-07-28 clients: the io.modelcontextprotocol/tasks extension
// in front of session-era backends that declare the core tasks capability
// (2025-11-25).
//
// A 2026 client that declares the extension and calls a tool whose
// execution.taskSupport is "required" gets a task: the gateway makes the
// call task-augmented upstream (params.task) and answers the backend's
// CreateTaskResult as the extension's ({resultType: "task", taskId, status,
// ttlMs, pollIntervalMs, …}). tasks/get polls the backend's tasks/get and,
// once the task is terminal, embeds what tasks/result gives (result or
// error); tasks/cancel is relayed. Task ids are the backend's, prefixed with
// its name, and only the principal that created a task may see it.
//
// A 2025 backend whose task is input_required asks for that input with
// requests of its own (elicitation, sampling, roots) on tasks/result, which
// blocks until the task ends. The extension has neither: its tasks/get shows
// the requests as inputRequests and tasks/update brings the answers. So when
// tasks/get finds a task input_required, the gateway opens tasks/result
// itself and holds it (a heldCall, as for multi round-trip calls, counted in
// limits.max_held_per_principal); the backend's requests on it wait there,
// tasks/get shows them, and tasks/update answers them. A hold ends when
// tasks/result does, when the task is cancelled, or when the client leaves
// its requests unanswered for Options.ServerRequestTimeout (they are then
// refused, as a session client's would be).

import (
	"cmp"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

const extTasks = "io.modelcontextprotocol/tasks"

// taskRoute is where a task handed to a 2026 client lives.
type taskRoute struct {
	server, id, principal string // principal: the creator's OwnerKey
	origin                string // request ID of the call that made the task
	created               time.Time
}

// taskTable holds the routes of tasks handed to 2026 clients. Entries
// expire a day after creation at the latest; the backend's own ttl usually
// ends them sooner. A principal holds at most max routes: its oldest goes
// when it makes one more, so one principal cannot fill the table for the
// others. put and get cost O(1) amortized.
type taskTable struct {
	mu      sync.Mutex
	m       map[string]taskEntry
	fifo    []taskKey            // every put, oldest first; entries replaced or evicted since are skipped
	byOwner map[string][]taskKey // each principal's puts, oldest first, likewise
	live    map[string]int       // routes held per principal
	seq     uint64
}

type taskEntry struct {
	taskRoute
	seq uint64
}

// taskKey names one put of a route; it is stale once the route is gone or
// put again.
type taskKey struct {
	id  string
	seq uint64
}

const taskRouteTTL = 24 * time.Hour

// put adds route id; its principal then holds at most max routes (0: the
// default).
func (t *taskTable) put(id string, r taskRoute, max int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m, t.byOwner, t.live = map[string]taskEntry{}, map[string][]taskKey{}, map[string]int{}
	}
	for len(t.fifo) > 0 {
		k := t.fifo[0]
		if e, ok := t.m[k.id]; ok && e.seq == k.seq {
			if r.created.Sub(e.created) <= taskRouteTTL {
				break
			}
			t.removeOldest(e.principal)
		}
		t.fifo[0] = taskKey{}
		t.fifo = t.fifo[1:]
	}
	if old, ok := t.m[id]; ok {
		t.forget(id, old)
	}
	limit := cmp.Or(max, config.DefaultMaxTasksPerPrincipal)
	for t.live[r.principal] >= limit {
		t.removeOldest(r.principal)
	}
	t.seq++
	k := taskKey{id, t.seq}
	t.m[id] = taskEntry{r, t.seq}
	t.fifo = append(t.fifo, k)
	t.byOwner[r.principal] = append(t.byOwner[r.principal], k)
	t.live[r.principal]++
}

// removeOldest removes the oldest route principal holds.
func (t *taskTable) removeOldest(principal string) {
	q := t.byOwner[principal]
	for len(q) > 0 {
		k := q[0]
		q[0] = taskKey{}
		q = q[1:]
		if e, ok := t.m[k.id]; ok && e.seq == k.seq {
			t.byOwner[principal] = q
			t.forget(k.id, e)
			return
		}
	}
	t.byOwner[principal] = q
}

// forget drops route id, held by e.principal.
func (t *taskTable) forget(id string, e taskEntry) {
	delete(t.m, id)
	if t.live[e.principal]--; t.live[e.principal] <= 0 {
		delete(t.live, e.principal)
		delete(t.byOwner, e.principal)
	}
}

func (t *taskTable) get(id string) (taskRoute, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[id]
	return e.taskRoute, ok
}

// len is the number of routes held.
func (t *taskTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// clientHasExtension reports whether a 2026 client declared an extension.
func (s *Session) clientHasExtension(name string) bool {
	s.mu.Lock()
	ext := s.caps["extensions"]
	s.mu.Unlock()
	_, ok := jsonrpc.Lookup(ext, name)
	return ok
}

// taskAugment marks a 2026 client's tools/call as task-augmented upstream
// when the client takes tasks and the tool requires them. It reports
// whether it did.
func (c *call) taskAugment() bool {
	if c.msg.Method != "tools/call" || !c.sess.clientHasExtension(extTasks) || c.params.Get("task") != nil {
		return false
	}
	for _, it := range c.catalog().items[listTools] { // the catalog of the connection that serves the call
		if it.name != c.target {
			continue
		}
		exec, _ := jsonrpc.Lookup(it.raw, "execution")
		ts, _ := jsonrpc.Lookup(exec, "taskSupport")
		if string(ts) != `"required"` {
			return false
		}
		c.params.Set("task", json.RawMessage(`{}`))
		return true
	}
	return false
}

// legacyTask is a 2025-11-25 Task.
type legacyTask struct {
	TaskID        string `json:"taskId"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage,omitempty"`
	CreatedAt     string `json:"createdAt"`
	LastUpdatedAt string `json:"lastUpdatedAt"`
	TTL           *int64 `json:"ttl"`
	PollInterval  *int64 `json:"pollInterval,omitempty"`
}

// modernTask renders a 2025 task as the extension's Task under the
// gateway's id.
func modernTask(t legacyTask, id, resultType string) *jsonrpc.Object {
	o := &jsonrpc.Object{}
	o.SetString("resultType", resultType)
	o.SetString("taskId", id)
	o.SetString("status", t.Status)
	if t.StatusMessage != "" {
		o.SetString("statusMessage", t.StatusMessage)
	}
	o.SetString("createdAt", t.CreatedAt)
	last := t.LastUpdatedAt
	if last == "" {
		last = t.CreatedAt
	}
	o.SetString("lastUpdatedAt", last)
	ttl := json.RawMessage("null")
	if t.TTL != nil {
		ttl, _ = json.Marshal(*t.TTL)
	}
	o.Set("ttlMs", ttl)
	if t.PollInterval != nil {
		b, _ := json.Marshal(*t.PollInterval)
		o.Set("pollIntervalMs", b)
	}
	return o
}

// taskCreated turns a backend's CreateTaskResult into the extension's.
func (c *call) taskCreated(server string, resp jsonrpc.Message) jsonrpc.Message {
	if resp.Error != nil {
		return resp
	}
	var r struct {
		Task *legacyTask `json:"task"`
	}
	if json.Unmarshal(resp.Result, &r) != nil || r.Task == nil {
		return resp
	}
	id := server + "/" + r.Task.TaskID
	princ := c.princ.OwnerKey()
	c.g.tasks.put(id, taskRoute{server: server, id: r.Task.TaskID, principal: princ, origin: c.reqID, created: time.Now()}, c.ps.cfg.Limits.MaxTasksPerPrincipal)
	resp.Result = modernTask(*r.Task, id, "task").Marshal()
	return resp
}

// serveTask answers tasks/get, tasks/cancel and tasks/update for a 2026
// client.
func (c *call) serveTask(ctx context.Context) jsonrpc.Message {
	id, _ := c.params.GetString("taskId")
	rt, ok := c.g.tasks.get(id)
	princ := c.princ.OwnerKey()
	if !ok || rt.principal != princ {
		return c.fail(jsonrpc.CodeInvalidParams, "Task not found: "+id)
	}
	b := c.g.bs().byName[rt.server]
	if b == nil {
		return c.fail(jsonrpc.CodeInvalidParams, "Task not found: "+id)
	}
	c.routeRule = "task:" + rt.server
	switch c.msg.Method {
	case "tasks/get":
		task := c.taskLeg(ctx, b, "tasks/get", rt.id, 1)
		if task.Error != nil {
			return task
		}
		var t legacyTask
		if json.Unmarshal(task.Result, &t) != nil {
			return c.fail(jsonrpc.CodeInternalError, "mcptrail: undecodable task from backend "+rt.server)
		}
		o := modernTask(t, id, "complete")
		switch t.Status {
		case "completed", "failed":
			res := c.taskLeg(ctx, b, "tasks/result", rt.id, 2)
			if res.Error != nil {
				o.Set("error", res.Error.JSON())
				o.SetString("status", "failed")
			} else {
				o.Set("result", res.Result)
			}
			// What the task produced is the client's answer, not this
			// poll's outcome.
			c.outcome, c.errCode, c.errMsg = 0, 0, ""
		case "working", "input_required":
			if refused := c.taskInput(ctx, b, id, rt, t.Status, o); refused != nil {
				return *refused
			}
		}
		return jsonrpc.NewResult(c.msg.ID, o.Marshal())
	case "tasks/update":
		return c.updateTask(id, rt)
	case "tasks/cancel":
		if v, ok := c.g.taskInputs.Load(id); ok {
			v.(*heldCall).cancel() // its requests are moot
		}
		if res := c.taskLeg(ctx, b, "tasks/cancel", rt.id, 1); res.Error != nil {
			return res
		}
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	default:
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: "+c.msg.Method+" is not supported for tasks of a 2025-11-25 backend")
	}
}

// taskLeg sends one tasks/* request for the backend's task id as a recorded
// leg of this call and returns the answer under the client's JSON-RPC id.
func (c *call) taskLeg(ctx context.Context, b *Backend, method, backendID string, i int) jsonrpc.Message {
	sub := c.taskSub(method, backendID, i)
	resp := sub.forward(ctx, b)
	c.server = sub.server
	if resp.Error != nil {
		c.outcome, c.errCode, c.errMsg = sub.outcome, sub.errCode, sub.errMsg
	}
	resp.ID = c.msg.ID
	return resp
}

// taskSub is the i-th leg of this call: method for the backend's task id.
func (c *call) taskSub(method, backendID string, i int) *call {
	params, _ := json.Marshal(map[string]string{"taskId": backendID})
	sub := &call{g: c.g, ps: c.ps, sess: c.sess, msg: jsonrpc.NewRequest(c.msg.ID, method, params), reqID: c.reqID, start: time.Now(),
		out: c.out, cancel: c.cancel, princ: c.princ, traceID: c.traceID, spanID: c.spanID, target: c.target, routeRule: c.routeRule}
	sub.params, _ = jsonrpc.ParseObject(params)
	sub.seq.Store(c.seq.Load() + uint32(i)*16)
	return sub
}

// taskInputWait bounds how long tasks/get waits for the first request of a
// task that the backend reports input_required: the backend sends it once
// tasks/result is open, which the gateway has just done.
const taskInputWait = 2 * time.Second

// taskInput sets the status and inputRequests of task id, whose backend
// says status, in o: input_required with the backend requests held for it,
// else working. When the backend says input_required and no tasks/result
// is open, it opens one and waits a little for the requests. It returns a
// refusal when the principal holds limits.max_held_per_principal already.
func (c *call) taskInput(ctx context.Context, b *Backend, id string, rt taskRoute, status string, o *jsonrpc.Object) *jsonrpc.Message {
	o.SetString("status", "working")
	var h *heldCall
	wait := time.Duration(0)
	if v, ok := c.g.taskInputs.Load(id); ok {
		h = v.(*heldCall)
	} else if status == "input_required" {
		var refused *jsonrpc.Message
		if h, refused = c.openTaskInput(ctx, b, id, rt); refused != nil {
			return refused
		}
		wait = taskInputWait
	}
	if h == nil {
		return nil
	}
	h.gather(ctx, wait)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiting) == 0 {
		return nil // none yet, or all answered: the task goes on
	}
	o.SetString("status", "input_required")
	o.Set("inputRequests", h.inputRequests())
	h.last = c.reqID
	return nil
}

// openTaskInput opens and holds tasks/result for task id on behalf of its
// principal; the backend's requests during it wait for tasks/update.
func (c *call) openTaskInput(ctx context.Context, b *Backend, id string, rt taskRoute) (*heldCall, *jsonrpc.Message) {
	g := c.g
	inner := c.taskSub("tasks/result", rt.id, 3)
	h := &heldCall{g: g, inner: inner, method: "tasks/result", target: id, princ: rt.principal, origin: rt.origin, last: c.reqID,
		events: make(chan heldEvent, 8), waiting: map[string]*inputRequest{}}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.streams, cancel)
	h.cancel = func() { stop(); cancel() }
	h.ctx = hctx
	inner.out = &h.out // nobody hears its notifications between polls
	inner.cancel = h.cancel
	inner.held = h
	// Complete before it is published: tasks/update may find it at once.
	h.timer = time.AfterFunc(g.opts.ServerRequestTimeout, func() { h.expireTask(id) })
	if v, loaded := g.taskInputs.LoadOrStore(id, h); loaded {
		h.timer.Stop()
		h.cancel()
		return v.(*heldCall), nil // another tasks/get opened it meanwhile
	}
	if !h.hold() {
		g.taskInputs.CompareAndDelete(id, h)
		h.timer.Stop()
		h.cancel()
		max := cmp.Or(g.conf().Limits.MaxHeldPerPrincipal, config.DefaultMaxHeldPerPrincipal)
		refused := c.refuseAtLimit(ctx, limitHeldPerPrincipal, RuleHeldPerPrincipal,
			"mcptrail: "+strconv.Itoa(max)+" calls or tasks of this principal already wait for input (limits.max_held_per_principal); answer or abandon one first", 0)
		return nil, &refused
	}
	g.inflight.Add(1)
	go func() {
		defer g.inflight.Done()
		// What tasks/result answers, tasks/get asks for again once the
		// backend says the task is over.
		inner.forward(hctx, b)
		h.mu.Lock()
		h.timer.Stop()
		h.mu.Unlock()
		g.taskInputs.CompareAndDelete(id, h)
		h.unhold()
		h.cancel()
	}()
	return h, nil
}

// gather moves the backend requests that came since into waiting, waiting
// up to wait for one when none waits.
func (h *heldCall) gather(ctx context.Context, wait time.Duration) {
	take := func(ev heldEvent) {
		if ev.input != nil {
			h.add(ev.input)
		}
	}
	drain := func() {
		for {
			select {
			case ev := <-h.events:
				take(ev)
			default:
				return
			}
		}
	}
	drain()
	h.mu.Lock()
	n := len(h.waiting)
	h.mu.Unlock()
	if n > 0 || wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ev := <-h.events:
		take(ev)
		drain()
	case <-t.C:
	case <-ctx.Done():
	case <-h.ctx.Done():
	}
}

// updateTask answers the held requests of task id that the client's
// tasks/update has responses for; responses to other keys are ignored, as
// the extension says.
func (c *call) updateTask(id string, rt taskRoute) jsonrpc.Message {
	var responses map[string]json.RawMessage
	if err := json.Unmarshal(c.params.Get("inputResponses"), &responses); err != nil || responses == nil {
		return c.fail(jsonrpc.CodeInvalidParams, "mcptrail: tasks/update needs inputResponses, an object")
	}
	v, ok := c.g.taskInputs.Load(id)
	if !ok {
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	}
	h := v.(*heldCall)
	h.gather(context.Background(), 0)
	h.mu.Lock()
	h.answerRound(c, responses)
	h.timer.Reset(c.g.opts.ServerRequestTimeout)
	h.mu.Unlock()
	c.server = rt.server
	return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
}

// expireTask ends the hold of task id's tasks/result when its client left
// it for Options.ServerRequestTimeout: the requests that wait are refused
// and tasks/result is closed. A later tasks/get opens a new one if the
// task still needs input.
func (h *heldCall) expireTask(id string) {
	if !h.g.taskInputs.CompareAndDelete(id, h) {
		return
	}
	h.gather(context.Background(), 0)
	h.mu.Lock()
	for key, in := range h.waiting {
		in.answer <- jsonrpc.NewError(in.req.ID, jsonrpc.CodeRequestTimeout, "mcptrail: the client did not answer "+in.req.Method+" with tasks/update", errorData(h.origin))
		delete(h.waiting, key)
	}
	h.mu.Unlock()
	h.cancel()
}

// taskInputFor is the hold of the task a backend's request names in
// _meta["io.modelcontextprotocol/related-task"], if any: such a request is
// that task's, whichever stream it came on.
func (g *Gateway) taskInputFor(b *Backend, req jsonrpc.Message) *heldCall {
	params, err := jsonrpc.ParseObject(req.Params)
	if err != nil {
		return nil
	}
	meta, err := jsonrpc.ParseObject(params.Get("_meta"))
	if err != nil {
		return nil
	}
	rel, err := jsonrpc.ParseObject(meta.Get(metaRelatedTask))
	if err != nil {
		return nil
	}
	taskID, _ := rel.GetString("taskId")
	if taskID == "" {
		return nil
	}
	if v, ok := g.taskInputs.Load(b.Name() + "/" + taskID); ok {
		return v.(*heldCall)
	}
	return nil
}

const metaRelatedTask = "io.modelcontextprotocol/related-task"

// modernCapabilities moves the core tasks capability of session-era backends
// to the extension, as 2026-07-28 has it.
func modernCapabilities(result json.RawMessage) json.RawMessage {
	o, err := jsonrpc.ParseObject(result)
	if err != nil {
		return result
	}
	caps, err := jsonrpc.ParseObject(o.Get("capabilities"))
	if err != nil || caps.Get("tasks") == nil {
		return result
	}
	caps.Delete("tasks")
	ext, err := jsonrpc.ParseObject(caps.Get("extensions"))
	if err != nil {
		ext = &jsonrpc.Object{}
	}
	if ext.Get(extTasks) == nil {
		ext.Set(extTasks, json.RawMessage(`{}`))
	}
	caps.Set("extensions", ext.Marshal())
	o.Set("capabilities", caps.Marshal())
	return o.Marshal()
}

// isTaskMethod reports the extension's methods.
func isTaskMethod(m string) bool { return strings.HasPrefix(m, "tasks/") }
