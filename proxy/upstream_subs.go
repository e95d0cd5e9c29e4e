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

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
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
func (r *upstreamSubs) hold(owner string, key subKey, lim config.Limits, open func(*upstreamSub)) (*upstreamSub, error) {
	maxOwner := cmp.Or(lim.MaxUpstreamSubscriptionsPerPrincipal, config.DefaultMaxUpstreamSubscriptionsPerPrincipal)
	maxServer := cmp.Or(lim.MaxUpstreamSubscriptionsPerServer, config.DefaultMaxUpstreamSubscriptionsPerServer)
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := r.perOwner[owner]
	if mine[key] == 0 && len(mine) >= maxOwner {
		return nil, &upstreamLimitError{limitUpstreamSubsPerPrincipal, RuleUpstreamSubsPerPrincipal, fmt.Sprintf(
			"mcptrail: this principal holds %d resource subscriptions to 2026-07-28 backends (limits.%s); unsubscribe one first",
			len(mine), limitUpstreamSubsPerPrincipal)}
	}
	s := r.byKey[key]
	if s == nil {
		if n := r.perServer[key.server]; n >= maxServer {
			return nil, &upstreamLimitError{limitUpstreamSubsPerServer, RuleUpstreamSubsPerServer, fmt.Sprintf(
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
	}
	if mine == nil {
		mine = map[subKey]int{}
		r.perOwner[owner] = mine
	}
	mine[key]++
	s.holders++
	return s, nil
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
// most the backend's timeout) and reports whether the backend agreed; when
// it did, release drops this holder's share, closing the stream with the
// last one. An error (*upstreamLimitError) refuses the subscription at a
// cap.
func (g *Gateway) subscribeResource(ctx context.Context, b *Backend, owner, uri string) (release func(), ok bool, err error) {
	r := &g.upsubs
	s, err := r.hold(owner, subKey{b.Name(), uri}, g.conf().Limits, func(s *upstreamSub) {
		var lctx context.Context
		lctx, s.cancel = context.WithCancel(b.gctx)
		go b.keepResourceListen(lctx, s)
	})
	if err != nil {
		return nil, false, err
	}
	var once sync.Once
	release = func() { once.Do(func() { r.drop(owner, s) }) }
	wait := time.NewTimer(b.callTimeout())
	defer wait.Stop()
	select {
	case <-s.ready:
	case <-ctx.Done():
	case <-wait.C:
	}
	select {
	case <-s.ready:
		if s.agreed {
			return release, true, nil
		}
	default:
		b.logger.Warn("the backend did not acknowledge a resource subscription in time", "uri", uri)
	}
	release()
	return nil, false, nil
}

// callTimeout is how long the gateway waits for the backend's answer
// (servers[].timeout).
func (b *Backend) callTimeout() time.Duration {
	return cmp.Or(b.cfg.Timeout, config.DefaultServerTimeout)
}

// keepResourceListen holds s's stream open on the backend's current
// connection, reopening it when the connection changes, until ctx ends or
// the backend declines the subscription.
func (b *Backend) keepResourceListen(ctx context.Context, s *upstreamSub) {
	for ctx.Err() == nil {
		if snap := b.snap.Load(); snap != nil {
			id := b.nextID.Add(1)
			key := jsonrpc.IDKey(jsonrpc.IntID(id))
			b.listenIDs.set(key, s)
			_, err := snap.conn.call(ctx, id, "subscriptions/listen", s.params, nil, nil)
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
				s.settle(false)
				return
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
			s.settle(slices.Contains(a.Notifications.ResourceSubscriptions, s.key.uri))
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
		if release := c.sess.dropUpstream(uri); release != nil {
			release()
		}
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	}
	if c.sess.subscribed(uri) {
		return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
	}
	snap := b.snap.Load()
	if snap == nil {
		return c.fail(jsonrpc.CodeInternalError, "mcptrail: backend "+b.Name()+" is unavailable", "uri", uri)
	}
	if !capabilityHas(snap.capabilities["resources"], "subscribe") {
		return c.fail(jsonrpc.CodeMethodNotFound, "resources/subscribe: "+b.Name()+" does not support resource subscriptions", "uri", uri)
	}
	release, ok, err := c.g.subscribeResource(ctx, b, c.princ.OwnerKey(), rt.uri)
	if le := (*upstreamLimitError)(nil); errors.As(err, &le) {
		return c.refuseAtLimit(ctx, le.limit, le.rule, le.msg, 0)
	}
	if !ok {
		return c.fail(jsonrpc.CodeInternalError, "resources/subscribe: "+b.Name()+" did not agree to a subscription to "+uri, "uri", uri)
	}
	if !c.sess.holdUpstream(uri, release) {
		release()
	}
	return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
}
