package proxy

// Session-era resource subscriptions across upstream connections.
//
// A session's resources/subscribe to a session-era backend's resource is
// forwarded on the backend connection that serves the session's capability
// profile, and the backend keeps it with that connection's session. A new
// connection (a reconnect after the backend was lost, or the Backend a
// reload builds for a changed entry) starts without it while the gateway's
// session still counts itself subscribed. As the 2026 streams do
// (upstream_subs.go), the subscription follows its backend by name: every
// new connection is subscribed again to the URIs its sessions hold.

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
)

// backendConnected subscribes a new connection of a session-era backend to
// the resources the sessions of its profile hold subscriptions to. A new
// primary connection also reconnects the profile connections whose
// sessions hold some (closed with the previous primary, they would
// otherwise wait for a call of their profile): each is subscribed when it
// is published. It returns at once; the work is on its own goroutine.
func (g *Gateway) backendConnected(b *Backend, profile string, snap *backendSnapshot) {
	if g.ctx == nil || modernUpstream(snap.protocolVersion) || !capabilityHas(snap.capabilities["resources"], "subscribe") {
		return
	}
	uris, others := g.forwardedSubsOf(b, profile)
	if len(uris) == 0 && len(others) == 0 {
		return
	}
	ctx := b.gctx
	if ctx == nil {
		ctx = g.ctx
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for _, uri := range uris {
			params, _ := json.Marshal(map[string]string{"uri": uri})
			cctx, cancel := context.WithTimeout(ctx, b.callTimeout())
			res, err := b.rawCall(cctx, snap, "resources/subscribe", params, nil)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				b.logger.Warn("subscribing a new backend connection to a session's resource failed", "profile", profile, "uri", uri, "err", err)
			case res.Error != nil:
				b.logger.Warn("the backend refused a session's resource subscription on its new connection", "profile", profile, "uri", uri, "code", res.Error.Code, "message", res.Error.Message)
			}
		}
		for _, key := range slices.Sorted(maps.Keys(others)) {
			if _, err := b.snapFor(ctx, key, others[key]); err != nil && ctx.Err() == nil {
				b.logger.Warn("reconnecting a client capability profile that holds resource subscriptions failed", "profile", key, "err", err)
			}
		}
	}()
}

// forwardedSubsOf returns the URIs (as b names them) of b's resources that
// the sessions of profile hold resources/subscribe subscriptions to and,
// for the primary connection (profile ""), the other profiles whose
// sessions hold some, with their capabilities.
func (g *Gateway) forwardedSubsOf(b *Backend, profile string) (uris []string, others map[string]json.RawMessage) {
	seen := map[string]bool{}
	g.sessions.Range(func(s *Session) bool {
		key, caps, _ := s.capabilityProfile()
		if profile != "" && key != profile {
			return true
		}
		cat := g.catalogFor(key)
		var mine []string
		for _, uri := range s.forwardedSubs() {
			if rt, ok := cat.routeURI(uri); ok && rt.server == b.Name() {
				mine = append(mine, rt.uri)
			}
		}
		switch {
		case len(mine) == 0:
		case key != profile:
			// Its profile's connection (snapFor connects it).
			if others == nil {
				others = map[string]json.RawMessage{}
			}
			others[key] = caps
		default:
			for _, uri := range mine {
				if !seen[uri] {
					seen[uri] = true
					uris = append(uris, uri)
				}
			}
		}
		return true
	})
	return uris, others
}

// sharedSubscription reports whether a session other than s, on the same
// backend connection (its capability profile), holds a forwarded
// subscription to uri: s's resources/unsubscribe must then not reach the
// backend, which keeps one subscription per connection for all of them.
func (g *Gateway) sharedSubscription(s *Session, uri string) bool {
	key, _, _ := s.capabilityProfile()
	shared := false
	g.sessions.Range(func(o *Session) bool {
		if o == s {
			return true
		}
		if k, _, _ := o.capabilityProfile(); k == key && slices.Contains(o.forwardedSubs(), uri) {
			shared = true
			return false
		}
		return true
	})
	return shared
}
