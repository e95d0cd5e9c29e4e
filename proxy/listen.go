package proxy

// subscriptions/listen (2026-07-28): one long-lived response stream per
// request, carrying only the notification types the client opted in to,
// each tagged with the subscription's id (the JSON-RPC id of the listen
// request). It replaces the session's GET stream and resources/subscribe.
//
// The gateway is the server the client listens to: list changes are those
// of its merged catalog (it already tells sessions about them), and resource
// subscriptions fan out to the backends that serve the URIs as
// resources/subscribe on their session-era connections. The client gets one
// acknowledgement naming what was agreed.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// listenerBuffer bounds the notifications waiting for one listener; past
// it they are dropped and counted, as on session streams.
const listenerBuffer = 64

// listener is one open subscriptions/listen stream.
type listener struct {
	id                        json.RawMessage
	owner                     string // the principal; counted against the session caps
	tools, prompts, resources bool
	uris                      map[string]bool // as the client names them; written under listeners.mu
	ch                        chan []byte
	dropped                   atomic.Int64
}

// listenFilter is the notifications member of subscriptions/listen params
// and of the acknowledgement.
type listenFilter struct {
	ToolsListChanged      bool     `json:"toolsListChanged,omitempty"`
	PromptsListChanged    bool     `json:"promptsListChanged,omitempty"`
	ResourcesListChanged  bool     `json:"resourcesListChanged,omitempty"`
	ResourceSubscriptions []string `json:"resourceSubscriptions,omitempty"`
}

// listeners is the gateway's set of open listen streams.
type listeners struct {
	mu       sync.Mutex
	set      map[*listener]bool
	perOwner map[string]int
}

// add admits l unless a cap is reached. A listen stream is what a GET
// stream was to a session, so the session caps bound them the same way:
// limits.max_sessions_per_principal per principal, limits.max_sessions in
// all (each counted apart from sessions).
func (ls *listeners) add(l *listener, lim config.Limits) error {
	maxAll := cmp.Or(lim.MaxSessions, config.DefaultMaxSessions)
	maxOwner := cmp.Or(lim.MaxSessionsPerPrincipal, config.DefaultMaxSessionsPerPrincipal)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.set == nil {
		ls.set, ls.perOwner = map[*listener]bool{}, map[string]int{}
	}
	if n := ls.perOwner[l.owner]; n >= maxOwner {
		return fmt.Errorf("mcptrail: %d subscriptions/listen streams already open for this principal (limits.max_sessions_per_principal); close one first", n)
	}
	if len(ls.set) >= maxAll {
		return fmt.Errorf("mcptrail: the gateway has %d subscriptions/listen streams open (limits.max_sessions); try again later", len(ls.set))
	}
	ls.set[l] = true
	ls.perOwner[l.owner]++
	return nil
}

func (ls *listeners) remove(l *listener) {
	ls.mu.Lock()
	if ls.set[l] {
		delete(ls.set, l)
		if ls.perOwner[l.owner]--; ls.perOwner[l.owner] <= 0 {
			delete(ls.perOwner, l.owner)
		}
	}
	ls.mu.Unlock()
}

// each calls fn for every open listener.
func (ls *listeners) each(fn func(*listener)) {
	ls.mu.Lock()
	all := make([]*listener, 0, len(ls.set))
	for l := range ls.set {
		all = append(all, l)
	}
	ls.mu.Unlock()
	for _, l := range all {
		fn(l)
	}
}

// addURI records that l subscribed uri. l is already in the set, where
// other streams read its URIs (wantsURI, subscribedTo): under the lock.
func (ls *listeners) addURI(l *listener, uri string) {
	ls.mu.Lock()
	l.uris[uri] = true
	ls.mu.Unlock()
}

// subscribedTo returns the open listeners subscribed to uri.
func (ls *listeners) subscribedTo(uri string) []*listener {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []*listener
	for l := range ls.set {
		if l.uris[uri] {
			out = append(out, l)
		}
	}
	return out
}

// wantsURI reports whether any listener other than except subscribed uri.
func (ls *listeners) wantsURI(uri string, except *listener) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for l := range ls.set {
		if l != except && l.uris[uri] {
			return true
		}
	}
	return false
}

// deliver queues a notification for l, tagged with its subscription id.
func (g *Gateway) deliver(l *listener, method string, params json.RawMessage) {
	o, err := jsonrpc.ParseObject(params)
	if err != nil || params == nil {
		o = &jsonrpc.Object{}
	}
	meta, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil {
		meta = &jsonrpc.Object{}
	}
	meta.Set(metaSubscriptionID, l.id)
	o.Set("_meta", meta.Marshal())
	b := jsonrpc.NewNotification(method, o.Marshal()).Marshal()
	select {
	case l.ch <- b:
	default:
		l.dropped.Add(1)
		g.stats.dropped.Add(1)
		g.logger.Warn("listen stream full, notification dropped", "subscription_id", string(l.id), "method", method)
	}
}

// listChangedToListeners hands a catalog change to the listeners that
// opted in to its kind.
func (g *Gateway) listChangedToListeners(m jsonrpc.Message) {
	g.listens.each(func(l *listener) {
		if m.Method == "notifications/tools/list_changed" && l.tools ||
			m.Method == "notifications/prompts/list_changed" && l.prompts ||
			m.Method == "notifications/resources/list_changed" && l.resources {
			g.deliver(l, m.Method, m.Params)
		}
	})
}

// resourceUpdatedToListeners hands a backend's resources/updated (with the
// URI as clients see it) to the listeners subscribed to it.
func (g *Gateway) resourceUpdatedToListeners(uri string, params json.RawMessage) {
	for _, l := range g.listens.subscribedTo(uri) {
		g.deliver(l, "notifications/resources/updated", params)
	}
}

// listen serves subscriptions/listen until the client closes the stream
// (no answer: the transport is gone) or the gateway shuts down (a complete
// result ends the subscription gracefully).
func (c *call) listen(ctx context.Context) jsonrpc.Message {
	g := c.g
	var p struct {
		Notifications listenFilter `json:"notifications"`
	}
	if err := json.Unmarshal(c.msg.Params, &p); err != nil {
		return c.fail(jsonrpc.CodeInvalidParams, "subscriptions/listen: invalid params: "+err.Error())
	}
	want := p.Notifications
	maxSubs := cmp.Or(g.conf().Limits.MaxSubscriptions, config.DefaultMaxSubscriptions)
	if n := len(uniqueStrings(want.ResourceSubscriptions)); n > maxSubs {
		return c.fail(jsonrpc.CodeInvalidRequest, fmt.Sprintf("subscriptions/listen: %d resourceSubscriptions, more than limits.max_subscriptions (%d)", n, maxSubs))
	}
	l := &listener{id: c.msg.ID, owner: c.princ.OwnerKey(), tools: want.ToolsListChanged, prompts: want.PromptsListChanged,
		resources: want.ResourcesListChanged, uris: map[string]bool{}, ch: make(chan []byte, listenerBuffer)}
	// Admitted before any upstream work is done for it.
	if err := g.listens.add(l, g.conf().Limits); err != nil {
		return c.fail(jsonrpc.CodeInvalidRequest, err.Error())
	}
	defer g.listens.remove(l) // idempotent: the unsubscribing defer below removes it first
	ack := listenFilter{ToolsListChanged: l.tools, PromptsListChanged: l.prompts, ResourcesListChanged: l.resources}
	// held are the 2026 backends' resource streams this listen holds.
	var held map[string]*upstreamHold
	defer func() {
		g.listens.remove(l)
		// Backends keep one subscription per connection for every client:
		// drop it only when no one else still wants the URI.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		i := len(want.ResourceSubscriptions)
		for uri := range l.uris {
			if h := held[uri]; h != nil {
				h.release()
				continue
			}
			if !g.listens.wantsURI(uri, nil) && !g.sessionSubscribed(uri) {
				c.subscribeUpstream(uctx, uri, "resources/unsubscribe", i)
				i++
			}
		}
	}()
	for i, uri := range want.ResourceSubscriptions {
		if l.uris[uri] {
			continue
		}
		ok, h, err := c.subscribeUpstream(ctx, uri, "resources/subscribe", i)
		if le := (*upstreamLimitError)(nil); errors.As(err, &le) {
			return c.refuseAtLimit(ctx, le.limit, le.rule, le.msg, 0)
		}
		if ok {
			if h != nil {
				if held == nil {
					held = map[string]*upstreamHold{}
				}
				held[uri] = h
			}
			g.listens.addURI(l, uri)
			ack.ResourceSubscriptions = append(ack.ResourceSubscriptions, uri)
		}
	}
	ackParams, _ := json.Marshal(map[string]any{"notifications": ack})
	ackMsg := &listener{id: l.id, ch: make(chan []byte, 1)}
	g.deliver(ackMsg, "notifications/subscriptions/acknowledged", ackParams)
	if c.out == nil || c.out.notify(<-ackMsg.ch) != nil {
		return c.fail(jsonrpc.CodeInternalError, "mcptrail: the listen stream could not be written")
	}
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			// The client closed the stream: the normal end of a
			// subscription over HTTP. The answer reaches no one.
			return c.endListen(l)
		case <-g.streams.Done():
			return c.endListen(l)
		case b := <-l.ch:
			if c.out.notify(b) != nil {
				return c.fail(jsonrpc.CodeInternalError, "mcptrail: the listen stream could not be written")
			}
		case <-keepalive.C:
			if c.out.notify(nil) != nil {
				return c.fail(jsonrpc.CodeInternalError, "mcptrail: the listen stream could not be written")
			}
		}
	}
}

// subscribeUpstream sends resources/subscribe (or unsubscribe) for a URI to
// the backend that serves it, as a recorded leg of the listen request. It
// reports whether the backend accepted. A 2026 backend has no
// resources/subscribe: the listen holds the gateway's listen stream for the
// URI instead (h), until it releases it; an *upstreamLimitError refuses
// that at a cap.
func (c *call) subscribeUpstream(ctx context.Context, uri, method string, i int) (ok bool, h *upstreamHold, err error) {
	g := c.g
	bs := g.bs()
	rt, ok := g.catalog.Load().routeURI(uri)
	b := bs.byName[rt.server]
	if !ok || b == nil {
		return false, nil, nil
	}
	snap := b.snap.Load()
	if snap == nil || !capabilityHas(snap.capabilities["resources"], "subscribe") {
		return false, nil, nil
	}
	modern := modernUpstream(snap.protocolVersion)
	if modern && method != "resources/subscribe" {
		return false, nil, nil // released by the listen that held it
	}
	params, _ := json.Marshal(map[string]string{"uri": rt.uri})
	sub := &call{g: g, ps: c.ps, sess: c.sess, msg: jsonrpc.NewRequest(c.msg.ID, method, params), reqID: c.reqID, start: time.Now(),
		out: c.out, cancel: c.cancel, princ: c.princ, traceID: c.traceID, spanID: c.spanID, target: uri,
		routeRule: "listen:" + rt.server}
	sub.params, _ = jsonrpc.ParseObject(params)
	sub.seq.Store(c.seq.Load() + uint32(i+1)*16)
	if method == "resources/subscribe" {
		// The same decision as a resources/subscribe of that URI.
		if _, allowed := sub.authorize(ctx, auth.Resources, uriTarget(rt), rt.server); !allowed {
			return false, nil, nil
		}
	}
	if modern {
		h, err := sub.subscribeRecorded(ctx, b, rt.uri)
		return h != nil, h, err
	}
	resp := sub.forward(ctx, b)
	return resp.Error == nil, nil, nil
}

// capabilityHas reports whether a capability object sets flag to true.
func capabilityHas(capability json.RawMessage, flag string) bool {
	v, ok := jsonrpc.Lookup(capability, flag)
	return ok && string(v) == "true"
}

// sessionSubscribed reports whether a session-era client subscribed uri.
func (g *Gateway) sessionSubscribed(uri string) bool {
	found := false
	g.sessions.Range(func(s *Session) bool {
		found = s.subscribed(uri)
		return !found
	})
	return found
}

// endListen is the graceful end of a subscription: a complete result tagged
// with its id.
func (c *call) endListen(l *listener) jsonrpc.Message {
	meta, _ := json.Marshal(map[string]json.RawMessage{metaSubscriptionID: l.id})
	res, _ := json.Marshal(map[string]json.RawMessage{"_meta": meta})
	return jsonrpc.NewResult(c.msg.ID, res)
}

// uniqueStrings returns ss without repeats, in order.
func uniqueStrings(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
