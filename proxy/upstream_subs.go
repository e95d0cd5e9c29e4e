package proxy

// Resource subscriptions to 2026-07-28 backends.
//
// Such a backend has no resources/subscribe: it tells of a resource's
// changes only on a subscriptions/listen stream whose resourceSubscriptions
// name the URI. The gateway keeps one such stream per URI (as the backend
// names it) for as long as any client holds a subscription to it: a 2026
// client's own subscriptions/listen, or a session's resources/subscribe.
// One stream per URI keeps each subscription's life independent of the
// others (no stream is torn down and reopened, losing updates, when another
// client subscribes); the spec allows a client any number of concurrent
// subscriptions. The notifications carry the stream's id, the gateway's
// own: an update is routed only while that stream is live, with the id
// removed, to the clients subscribed to the URI as they name it. Each
// stream costs a goroutine and, over HTTP, a connection: the distinct URIs
// one principal holds and the streams to one backend are capped
// (limits.max_upstream_subscriptions_per_principal, _per_server).
// A stream names its backend by its configured name, not by the Backend
// that opened it: it is reopened on the backend's next connection and on
// the Backend that replaces it at a reload, so a client's subscription
// outlives both.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Rules and limit names of the caps on upstream resource streams, as
// recorded and counted.
const (
	RuleUpstreamSubsPerPrincipal  = "upstream-subs:principal"
	RuleUpstreamSubsPerServer     = "upstream-subs:server"
	limitUpstreamSubsPerPrincipal = "max_upstream_subscriptions_per_principal"
	limitUpstreamSubsPerServer    = "max_upstream_subscriptions_per_server"
)

// subKey names an upstream resource stream: the backend, by its configured
// name, and the URI as the backend names it.
type subKey struct{ server, uri string }

// upstreamSub is one URI's stream to a backend.
type upstreamSub struct {
	key     subKey
	params  json.RawMessage
	holders int // under upstreamSubs.mu

	// ready is closed when the backend first acknowledged the stream
	// (agreed tells whether it named the URI) or when the first attempt
	// ended without an acknowledgement.
	ready     chan struct{}
	readyOnce sync.Once
	agreed    bool // written before ready closes

	cancel context.CancelFunc
	// dead is set when the stream ended for good while held: its backend
	// was removed or stopped speaking 2026-07-28, or declined the URI on
	// a reopen. Its holders hear nothing more; a session's next
	// resources/subscribe of the URI opens a new one.
	dead atomic.Bool
}

func (s *upstreamSub) settle(agreed bool) {
	s.readyOnce.Do(func() {
		s.agreed = agreed
		close(s.ready)
	})
}

// upstreamSubs are the gateway's resource streams to 2026 backends and who
// holds them. Each stream is a goroutine and, over HTTP, a connection to
// the backend, so they are capped per principal (the distinct streams it
// holds) and per backend (limits.max_upstream_subscriptions_*).
type upstreamSubs struct {
	mu        sync.Mutex
	byKey     map[subKey]*upstreamSub
	perServer map[string]int            // streams in byKey, by server
	perOwner  map[string]map[subKey]int // holds, by principal (OwnerKey) and stream
}

// upstreamLimitError refuses a subscription at one of the caps.
type upstreamLimitError struct{ limit, rule, msg string }

func (e *upstreamLimitError) Error() string { return e.msg }

// hold takes one share of key's stream for owner, creating the stream (and
// starting it with open, under the lock) when there is none, unless that
// would pass a cap.
func (r *upstreamSubs) hold(owner string, key subKey, lim config.Limits, open func(*upstreamSub)) (s *upstreamSub, opened bool, err error) {
	maxOwner := cmp.Or(lim.MaxUpstreamSubscriptionsPerPrincipal, config.DefaultMaxUpstreamSubscriptionsPerPrincipal)
	maxServer := cmp.Or(lim.MaxUpstreamSubscriptionsPerServer, config.DefaultMaxUpstreamSubscriptionsPerServer)
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := r.perOwner[owner]
	if mine[key] == 0 && len(mine) >= maxOwner {
		return nil, false, &upstreamLimitError{limitUpstreamSubsPerPrincipal, RuleUpstreamSubsPerPrincipal, fmt.Sprintf(
			"mcptrail: this principal holds %d resource subscriptions to 2026-07-28 backends (limits.%s); unsubscribe one first",
			len(mine), limitUpstreamSubsPerPrincipal)}
	}
	s = r.byKey[key]
	if s == nil {
		if n := r.perServer[key.server]; n >= maxServer {
			return nil, false, &upstreamLimitError{limitUpstreamSubsPerServer, RuleUpstreamSubsPerServer, fmt.Sprintf(
				"mcptrail: the gateway holds %d resource subscriptions to %s (limits.%s); try again later",
				n, key.server, limitUpstreamSubsPerServer)}
		}
		if r.byKey == nil {
			r.byKey, r.perServer, r.perOwner = map[subKey]*upstreamSub{}, map[string]int{}, map[string]map[subKey]int{}
		}
		params, _ := json.Marshal(map[string]any{"notifications": listenFilter{ResourceSubscriptions: []string{key.uri}}})
		s = &upstreamSub{key: key, params: params, ready: make(chan struct{})}
		r.byKey[key] = s
		r.perServer[key.server]++
		open(s)
		opened = true
	}
	if mine == nil {
		mine = map[subKey]int{}
		r.perOwner[owner] = mine
	}
	mine[key]++
	s.holders++
	return s, opened, nil
}

// drop lets go of one of owner's shares of s, closing the stream with the
// last one.
func (r *upstreamSubs) drop(owner string, s *upstreamSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if mine := r.perOwner[owner]; mine != nil {
		if mine[s.key]--; mine[s.key] <= 0 {
			delete(mine, s.key)
			if len(mine) == 0 {
				delete(r.perOwner, owner)
			}
		}
	}
	if s.holders--; s.holders == 0 {
		s.cancel()
		r.unlist(s)
	}
}

// unlist removes s from byKey, under r.mu.
func (r *upstreamSubs) unlist(s *upstreamSub) {
	if r.byKey[s.key] != s {
		return
	}
	delete(r.byKey, s.key)
	if r.perServer[s.key.server]--; r.perServer[s.key.server] <= 0 {
		delete(r.perServer, s.key.server)
	}
}

// ended unlists s for good: its holders keep their (dead) share until they
// let go, a new subscription to the URI opens a new stream.
func (r *upstreamSubs) ended(s *upstreamSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.dead.Store(true)
	r.unlist(s)
}

// upstreamHold is one client's share of an upstream resource stream.
type upstreamHold struct {
	once  sync.Once
	r     *upstreamSubs
	owner string
	s     *upstreamSub
	// opened tells whether this share opened the stream (else it joined
	// one open already).
	opened bool
}

// release drops the share, closing the stream with the last one; it is
// idempotent.
func (h *upstreamHold) release() { h.once.Do(func() { h.r.drop(h.owner, h.s) }) }

// alive reports whether the stream still carries the backend's updates
// (possibly while it reconnects).
func (h *upstreamHold) alive() bool { return !h.s.dead.Load() }

// listenIDs are the JSON-RPC ids of a backend's live resource streams.
type listenIDs struct {
	mu sync.Mutex
	m  map[string]*upstreamSub
}

func (l *listenIDs) get(key string) *upstreamSub {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[key]
}

func (l *listenIDs) set(key string, s *upstreamSub) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == nil {
		delete(l.m, key)
		return
	}
	if l.m == nil {
		l.m = map[string]*upstreamSub{}
	}
	l.m[key] = s
}

// subscribeResource holds a subscription to uri (as the backend names it)
// for one client of owner. It waits for the backend's acknowledgement (at
// most the backend's timeout) and returns the client's share when the
// backend agreed, nil when not. An error (*upstreamLimitError) refuses the
// subscription at a cap. The stream refers to the backend by name: it
// follows the backend through reconnects and through a reload that
// replaces it.
func (g *Gateway) subscribeResource(ctx context.Context, b *Backend, owner, uri string) (*upstreamHold, error) {
	r := &g.upsubs
	s, opened, err := r.hold(owner, subKey{b.Name(), uri}, g.conf().Limits, func(s *upstreamSub) {
		var lctx context.Context
		lctx, s.cancel = context.WithCancel(g.ctx)
		go g.keepResourceListen(lctx, s)
	})
	if err != nil {
		return nil, err
	}
	h := &upstreamHold{r: r, owner: owner, s: s, opened: opened}
	wait := time.NewTimer(b.callTimeout())
	defer wait.Stop()
	select {
	case <-s.ready:
	case <-ctx.Done():
	case <-wait.C:
	}
	select {
	case <-s.ready:
		if s.agreed && !s.dead.Load() {
			return h, nil
		}
	default:
		b.logger.Warn("the backend did not acknowledge a resource subscription in time", "uri", uri)
	}
	h.release()
	return nil, nil
}

// AttrUpstreamStream is the attribute of the upstream hop of a
// subscription to a 2026-07-28 backend's resource: "opened" when it
// opened the gateway's subscriptions/listen stream for the URI, "joined"
// when it shares one open already, "declined" when the backend did not
// agree.
const AttrUpstreamStream = "mcptrail.upstream_stream"

// subscribeRecorded is subscribeResource as a recorded upstream hop of c
// (as the resources/subscribe a session-era backend gets is); a refusal at
// a cap is left to the caller, which records it as such.
func (c *call) subscribeRecorded(ctx context.Context, b *Backend, uri string) (*upstreamHold, error) {
	t0 := time.Now()
	h, err := c.g.subscribeResource(ctx, b, c.princ.OwnerKey(), uri)
	if err != nil {
		return nil, err
	}
	c.server = b.Name()
	state := "declined"
	if h != nil {
		state = "joined"
		if h.opened {
			state = "opened"
		}
	}
	c.record(recorder.HopUpstream, t0, time.Since(t0), func(e *recorder.Event) {
		e.UpstreamVersion = protocol2026
		e.Attrs = append(e.Attrs, recorder.Attr{Key: AttrUpstreamStream, Value: state})
		if h == nil {
			e.Outcome = recorder.OutcomeJSONRPCError
			e.ErrorMessage = b.Name() + " did not agree to a subscription to " + uri
		}
	})
	return h, nil
}

// callTimeout is how long the gateway waits for the backend's answer
// (servers[].timeout).
func (b *Backend) callTimeout() time.Duration {
	return cmp.Or(b.cfg.Timeout, config.DefaultServerTimeout)
}

// keepResourceListen holds s's stream open on the current connection of
// the backend named s.key.server, reopening it when the connection changes
// (a reconnect) or the backend is replaced (a reload that changed its
// entry), until ctx ends, the backend is gone or no longer 2026-07-28, or
// it declines the subscription.
func (g *Gateway) keepResourceListen(ctx context.Context, s *upstreamSub) {
	defer func() {
		s.settle(false)
		g.upsubs.ended(s)
	}()
	for ctx.Err() == nil {
		b := g.bs().byName[s.key.server]
		if b == nil || !modernUpstream(b.cfg.ProtocolVersion) {
			g.logger.Warn("resource subscription ended: the backend was removed or is no longer 2026-07-28", "server", s.key.server, "uri", s.key.uri)
			return
		}
		// gctx is set before the run loop publishes a snapshot.
		if snap := b.snap.Load(); snap != nil && !b.retired.Load() {
			id := b.nextID.Add(1)
			key := jsonrpc.IDKey(jsonrpc.IntID(id))
			b.listenIDs.set(key, s)
			// The attempt ends with the backend it was opened on.
			actx, cancel := context.WithCancel(ctx)
			stop := context.AfterFunc(b.gctx, cancel)
			_, err := snap.conn.call(actx, id, "subscriptions/listen", s.params, nil, nil)
			stop()
			cancel()
			b.listenIDs.set(key, nil)
			if ctx.Err() != nil {
				if b.cfg.Transport == "stdio" {
					// No stream to close on stdio: the spec's way to end a
					// subscription there is to cancel its request.
					cp, _ := json.Marshal(map[string]any{"requestId": id, "reason": "no client is subscribed any more"})
					_ = snap.conn.notify(context.WithoutCancel(ctx), "notifications/cancelled", cp)
				}
				return
			}
			// Ended without an acknowledgement naming the URI: declined
			// (or the backend is down, and its clients were told so).
			select {
			case <-s.ready:
				if !s.agreed {
					return
				}
			default:
				return
			}
			if b.gctx.Err() != nil {
				continue // replaced by a reload: follow it at once
			}
			b.logger.Debug("resource subscriptions/listen to the backend ended; reopening", "uri", s.key.uri, "err", err)
		}
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

// upstreamListenMessage handles what a 2026 backend sends about the
// gateway's own listen streams: the acknowledgement is the gateway's (never
// relayed), and a resources/updated is relayed only while the stream it
// names is live. It reports whether n should still be relayed.
func (b *Backend) upstreamListenMessage(n jsonrpc.Message) bool {
	switch n.Method {
	case "notifications/subscriptions/acknowledged":
		var a struct {
			Meta          map[string]json.RawMessage `json:"_meta"`
			Notifications listenFilter               `json:"notifications"`
		}
		if json.Unmarshal(n.Params, &a) != nil {
			return false
		}
		if s := b.listenIDs.get(jsonrpc.IDKey(a.Meta[metaSubscriptionID])); s != nil {
			agreed := slices.Contains(a.Notifications.ResourceSubscriptions, s.key.uri)
			select {
			case <-s.ready:
				if s.agreed && !agreed {
					// Declined on a reopen: the stream is of no use.
					b.logger.Warn("the backend declined a resource subscription it had agreed to", "uri", s.key.uri)
					s.dead.Store(true)
					s.cancel()
				}
			default:
				s.settle(agreed)
			}
		}
		return false
	case "notifications/resources/updated":
		meta, ok := jsonrpc.Lookup(n.Params, "_meta")
		if !ok {
			return true // untagged: as a session-era backend sends it
		}
		sid, ok := jsonrpc.Lookup(meta, metaSubscriptionID)
		if !ok {
			return true
		}
		return b.listenIDs.get(jsonrpc.IDKey(sid)) != nil
	}
	return true
}

// subscribeModern serves a session's resources/subscribe or unsubscribe of
// a 2026 backend's resource, which the backend does not know: the session
// holds (or lets go of) the gateway's listen stream for the URI.
func (c *call) subscribeModern(ctx context.Context, b *Backend, rt resourceRoute) jsonrpc.Message {
	uri, m := c.target, c.msg.Method
	if c.sess == nil || c.sess.id == "" {
		// A sessionless request has nothing to hold a subscription.
		return c.fail(jsonrpc.CodeMethodNotFound, m+" is not part of protocol 2026-07-28: use subscriptions/listen", "uri", uri)
	}
	if m == "resources/unsubscribe" {
		if h := c.sess.dropUpstream(uri); h != nil {
			h.release()
		}
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	}
	if h := c.sess.heldUpstream(uri); h != nil {
		if h.alive() {
			return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
		}
		// Its stream ended for good: open a new one.
		if h := c.sess.dropUpstream(uri); h != nil {
			h.release()
		}
	}
	snap := b.snap.Load()
	if snap == nil {
		return c.fail(jsonrpc.CodeInternalError, "mcptrail: backend "+b.Name()+" is unavailable", "uri", uri)
	}
	if !capabilityHas(snap.capabilities["resources"], "subscribe") {
		return c.fail(jsonrpc.CodeMethodNotFound, "resources/subscribe: "+b.Name()+" does not support resource subscriptions", "uri", uri)
	}
	h, err := c.subscribeRecorded(ctx, b, rt.uri)
	if le := (*upstreamLimitError)(nil); errors.As(err, &le) {
		return c.refuseAtLimit(ctx, le.limit, le.rule, le.msg, 0)
	}
	if h == nil {
		return c.fail(jsonrpc.CodeInternalError, "resources/subscribe: "+b.Name()+" did not agree to a subscription to "+uri, "uri", uri)
	}
	if !c.sess.holdUpstream(uri, h) {
		h.release()
	}
	return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
}
