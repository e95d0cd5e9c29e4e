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
// removed, to the clients subscribed to the URI as they name it.

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// upstreamSub is one URI's stream to a backend.
type upstreamSub struct {
	uri     string
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

// upstreamSubs are a backend's resource streams.
type upstreamSubs struct {
	mu    sync.Mutex
	byURI map[string]*upstreamSub
	byID  map[string]*upstreamSub // the JSON-RPC id of each live stream
}

// subscribeResource holds a subscription to uri (as the backend names it)
// for one client. It waits for the backend's acknowledgement (at most the
// backend's timeout) and reports whether the backend agreed; when it did,
// release drops this holder's share, closing the stream with the last one.
func (b *Backend) subscribeResource(ctx context.Context, uri string) (release func(), ok bool) {
	r := &b.subs
	r.mu.Lock()
	s := r.byURI[uri]
	if s == nil {
		if r.byURI == nil {
			r.byURI, r.byID = map[string]*upstreamSub{}, map[string]*upstreamSub{}
		}
		params, _ := json.Marshal(map[string]any{"notifications": listenFilter{ResourceSubscriptions: []string{uri}}})
		s = &upstreamSub{uri: uri, params: params, ready: make(chan struct{})}
		var lctx context.Context
		lctx, s.cancel = context.WithCancel(b.gctx)
		r.byURI[uri] = s
		go b.keepResourceListen(lctx, s)
	}
	s.holders++
	r.mu.Unlock()

	var once sync.Once
	release = func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if s.holders--; s.holders == 0 {
				s.cancel()
				if r.byURI[uri] == s {
					delete(r.byURI, uri)
				}
			}
		})
	}
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
			return release, true
		}
	default:
		b.logger.Warn("the backend did not acknowledge a resource subscription in time", "uri", uri)
	}
	release()
	return nil, false
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
	r := &b.subs
	for ctx.Err() == nil {
		if snap := b.snap.Load(); snap != nil {
			id := b.nextID.Add(1)
			key := jsonrpc.IDKey(jsonrpc.IntID(id))
			r.mu.Lock()
			r.byID[key] = s
			r.mu.Unlock()
			_, err := snap.conn.call(ctx, id, "subscriptions/listen", s.params, nil, nil)
			r.mu.Lock()
			delete(r.byID, key)
			r.mu.Unlock()
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
			b.logger.Debug("resource subscriptions/listen to the backend ended; reopening", "uri", s.uri, "err", err)
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
		b.subs.mu.Lock()
		s := b.subs.byID[jsonrpc.IDKey(a.Meta[metaSubscriptionID])]
		b.subs.mu.Unlock()
		if s != nil {
			s.settle(slices.Contains(a.Notifications.ResourceSubscriptions, s.uri))
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
		b.subs.mu.Lock()
		_, live := b.subs.byID[jsonrpc.IDKey(sid)]
		b.subs.mu.Unlock()
		return live
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
	release, ok := b.subscribeResource(ctx, rt.uri)
	if !ok {
		return c.fail(jsonrpc.CodeInternalError, "resources/subscribe: "+b.Name()+" did not agree to a subscription to "+uri, "uri", uri)
	}
	if !c.sess.holdUpstream(uri, release) {
		release()
	}
	return jsonrpc.NewResult(c.msg.ID, json.RawMessage(`{}`))
}
