package proxy

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// Client capability profiles.
//
// A backend decides what to offer from the capabilities its client
// declared (server-everything lists trigger-sampling-request only to
// clients that can sample), so the gateway must not declare more than the
// client did. Each backend has a primary connection that declares no client
// capabilities (health pings, the lists of clients that declared none) and,
// per distinct profile of the clients that declared some, one more
// connection that declares exactly that profile: "variants". Sessions with
// the same profile share it. A backend has at most maxVariants of them;
// clients past that use the primary connection (they see what a client
// without capabilities sees, never more than they declared).

// maxVariants bounds the extra upstream connections per backend.
const maxVariants = 8

// profileKeyCtx carries, in a backend hook's context, the profile of the
// connection a message came from ("" for the primary).
type profileKeyCtx struct{}

// variant is a backend connection that declares one client profile.
type variant struct {
	key  string          // canonical JSON of caps
	caps json.RawMessage // what is declared to the backend
	snap atomic.Pointer[backendSnapshot]
	// connecting serializes connection attempts.
	connecting chan struct{}
	// lastUsed (unix nanos) lets the janitor close a variant no session
	// needs any more.
	lastUsed atomic.Int64
	// staleLists is a bit set of the lists a list_changed named and that
	// are not re-read yet: one can arrive during the handshake, before
	// snap is published (server-everything registers its conditional
	// tools when it hears notifications/initialized), and must not be lost.
	staleLists atomic.Uint32
}

// refreshStale re-reads the lists a list_changed marked stale, once the
// variant's connection is published; before that, snapFor does it.
func (b *Backend) refreshStale(ctx context.Context, v *variant) {
	if v.snap.Load() == nil {
		return
	}
	stale := v.staleLists.Swap(0)
	for k := listKind(0); k < numLists; k++ {
		if stale&(1<<k) != 0 {
			b.refresh(ctx, &v.snap, k)
		}
	}
}

// profileOf returns the profile key of declared client capabilities: their
// canonical JSON, "" when none were declared.
func profileOf(caps map[string]json.RawMessage) (key string, raw json.RawMessage) {
	if len(caps) == 0 {
		return "", nil
	}
	var v map[string]any
	b, _ := json.Marshal(caps)
	if json.Unmarshal(b, &v) != nil {
		return "", nil
	}
	b, _ = json.Marshal(v) // map keys sorted at every level
	return string(b), b
}

// profile is the calling client's capability profile: from its session's
// initialize, or from the request's _meta (2026-07-28, sessionless).
func (c *call) profile() (key string, caps json.RawMessage) {
	if c.sess != nil {
		if k, raw, ok := c.sess.capabilityProfile(); ok {
			return k, raw
		}
	}
	if c.meta != nil {
		if raw := c.meta.Get("io.modelcontextprotocol/clientCapabilities"); raw != nil {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) == nil {
				return profileOf(m)
			}
		}
	}
	return "", nil
}

// variantFor returns the backend's connection slot for a profile, creating
// it; nil for the primary ("" or past maxVariants).
func (b *Backend) variantFor(key string, caps json.RawMessage) *variant {
	if key == "" {
		return nil
	}
	b.variantMu.Lock()
	defer b.variantMu.Unlock()
	if v := b.variants[key]; v != nil {
		return v
	}
	if len(b.variants) >= maxVariants {
		b.logger.Warn("more distinct client capability profiles than upstream connections allowed; this client is served by the primary connection (no client capabilities declared)",
			"max", maxVariants, "profile", key)
		return nil
	}
	if b.variants == nil {
		b.variants = map[string]*variant{}
	}
	v := &variant{key: key, caps: caps, connecting: make(chan struct{}, 1)}
	b.variants[key] = v
	return v
}

// snapFor returns the connection to serve a client of profile key on,
// connecting the profile's own connection first when needed. It returns
// nil when the backend is down.
func (b *Backend) snapFor(ctx context.Context, key string, caps json.RawMessage) (*backendSnapshot, error) {
	primary := b.snap.Load()
	if primary == nil {
		return nil, nil
	}
	v := b.variantFor(key, caps)
	if v == nil {
		return primary, nil
	}
	v.lastUsed.Store(time.Now().UnixNano())
	if s := v.snap.Load(); s != nil {
		return s, nil
	}
	select {
	case v.connecting <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-v.connecting }()
	if s := v.snap.Load(); s != nil {
		return s, nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.connectTimeout())
	defer cancel()
	conn, err := b.newConn(cctx, v)
	if err != nil {
		return nil, err
	}
	s, err := b.handshake(cctx, conn, v.caps)
	if err != nil {
		_ = conn.close()
		return nil, err
	}
	// The primary may have gone meanwhile (closeVariants ran): then this
	// one goes too. variantMu orders this against closeVariants.
	b.variantMu.Lock()
	current := b.snap.Load() != nil && b.snap.Load().conn == primary.conn && b.variants[key] == v
	if current {
		v.snap.Store(s)
	}
	b.variantMu.Unlock()
	if !current {
		_ = conn.close()
		return nil, nil
	}
	// Lists the backend changed while the handshake ran are read again
	// before any client of this profile is served from them.
	b.refreshStale(ctx, v)
	if fresh := v.snap.Load(); fresh != nil {
		s = fresh
	}
	b.logger.Info("backend connection for a client capability profile ready", "profile", key)
	b.hooks.backendChanged(b)
	b.hooks.backendConnected(b, key, s)
	return s, nil
}

// dropVariantConn unpublishes the variant served by conn, if any, after a
// transport failure; the next call of that profile reconnects.
func (b *Backend) dropVariantConn(conn upstreamConn) bool {
	b.variantMu.Lock()
	var found *variant
	for _, v := range b.variants {
		if s := v.snap.Load(); s != nil && s.conn == conn && v.snap.CompareAndSwap(s, nil) {
			found = v
		}
	}
	b.variantMu.Unlock()
	if found == nil {
		return false
	}
	go func() { _ = conn.close() }()
	b.hooks.backendChanged(b)
	return true
}

// closeVariants closes every variant connection (the primary went away).
func (b *Backend) closeVariants() {
	b.variantMu.Lock()
	var conns []upstreamConn
	for _, v := range b.variants {
		if s := v.snap.Swap(nil); s != nil {
			conns = append(conns, s.conn)
		}
	}
	b.variantMu.Unlock()
	for _, c := range conns {
		_ = c.close()
	}
}

// variantSnaps returns the connected variants' snapshots by profile.
func (b *Backend) variantSnaps() map[string]*backendSnapshot {
	b.variantMu.Lock()
	defer b.variantMu.Unlock()
	out := make(map[string]*backendSnapshot, len(b.variants))
	for k, v := range b.variants {
		out[k] = v.snap.Load()
	}
	return out
}

// variantList returns the backend's profile connection slots.
func (b *Backend) variantList() []*variant {
	b.variantMu.Lock()
	defer b.variantMu.Unlock()
	out := make([]*variant, 0, len(b.variants))
	for _, v := range b.variants {
		out = append(out, v)
	}
	return out
}

// changedLists maps a list_changed notification to the lists to re-read.
func changedLists(method string) []listKind {
	switch method {
	case "notifications/tools/list_changed":
		return []listKind{listTools}
	case "notifications/prompts/list_changed":
		return []listKind{listPrompts}
	case "notifications/resources/list_changed":
		return []listKind{listResources, listTemplates}
	}
	return nil
}

// connectProfile opens, in the background, the connections a newly seen
// profile needs on every ready backend, so that its client's lists show what
// the backends offer it (the client gets list_changed when they do).
func (g *Gateway) connectProfile(key string, caps json.RawMessage) {
	bs := g.bs()
	if key == "" || g.ctx == nil {
		return
	}
	for _, name := range bs.order {
		if b := bs.byName[name]; b.snap.Load() != nil {
			b.variantFor(key, caps) // the slot first: then its catalog is kept
		}
	}
	g.catalogFor(key) // from now on kept up to date
	for _, name := range bs.order {
		b := bs.byName[name]
		if b.snap.Load() == nil {
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if _, err := b.snapFor(g.ctx, key, caps); err != nil && g.ctx.Err() == nil {
				b.logger.Warn("connecting for a client capability profile failed", "profile", key, "err", err)
			}
		}()
	}
}

// catalogFor is the merged catalog clients of profile key see. Only a
// profile with a connection slot on some backend has its own: the key comes
// from the client, and a catalog kept per key would let a client grow the
// gateway's memory (and the work of every rebuild) at will. Any other
// profile is served by the primary connections, whose catalog is g.catalog.
func (g *Gateway) catalogFor(key string) *catalog {
	if key == "" {
		return g.catalog.Load()
	}
	if c, ok := g.profileCats.Load(key); ok {
		return c.(*catalog)
	}
	if !g.hasProfileSlot(key) {
		return g.catalog.Load()
	}
	g.catMu.Lock()
	defer g.catMu.Unlock()
	if c, ok := g.profileCats.Load(key); ok {
		return c.(*catalog)
	}
	c := g.buildProfileCatalog(key)
	g.profileCats.Store(key, c)
	return c
}

// hasProfileSlot reports whether some backend keeps a connection slot for
// profile key.
func (g *Gateway) hasProfileSlot(key string) bool {
	bs := g.bs()
	for _, b := range bs.byName {
		b.variantMu.Lock()
		_, ok := b.variants[key]
		b.variantMu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// buildProfileCatalog merges, per backend, the profile's own connection's
// lists, or the primary's while that connection is not up. catMu held.
func (g *Gateway) buildProfileCatalog(key string) *catalog {
	bs := g.bs()
	snaps := make(map[string]*backendSnapshot, len(bs.byName))
	namespaces := make(map[string]string, len(bs.byName))
	for name, b := range bs.byName {
		namespaces[name] = b.namespace()
		snaps[name] = b.snap.Load()
		if snaps[name] == nil {
			continue
		}
		if vs := b.variantSnaps()[key]; vs != nil {
			snaps[name] = vs
		}
	}
	return buildCatalog(bs.order, snaps, g.sep(), namespaces)
}

// notifyListChanges sends list_changed to the sessions of profile key for
// every list that differs between prev and next, and returns those lists.
func (g *Gateway) notifyListChanges(key string, prev, next *catalog) (changed []listKind) {
	for _, kind := range []listKind{listTools, listPrompts, listResources} {
		if sameItems(prev.items[kind], next.items[kind]) {
			continue
		}
		changed = append(changed, kind)
		msg := jsonrpc.NewNotification(listChangedMethods[kind], nil).Marshal()
		g.sessions.Range(func(s *Session) bool {
			if s.profileKey() == key {
				s.push(msg)
			}
			return true
		})
	}
	return changed
}

var listChangedMethods = [numLists]string{
	"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed", "",
}

// ensureProfile connects, before a list is served, the connections of this
// client's capability profile that are not up yet, so that a sessionless
// (2026-07-28) client, which has no initialize to start them and no stream
// to hear list_changed on, gets its own lists at once. A backend that fails
// to connect so is listed as its primary connection sees it.
func (c *call) ensureProfile(ctx context.Context) {
	key, caps := c.profile()
	if key == "" {
		return
	}
	g := c.g
	bs := g.bs()
	for _, b := range bs.list {
		v := b.variantFor(key, caps)
		if v == nil || b.snap.Load() == nil {
			continue
		}
		if v.snap.Load() == nil {
			if _, err := b.snapFor(ctx, key, caps); err != nil {
				b.logger.Warn("connecting for a client capability profile failed", "profile", key, "err", err)
			}
			continue
		}
		// A connect that has published its snapshot may still re-read the
		// lists the backend changed during the handshake and rebuild the
		// profile's catalog, which until then holds the primary's lists:
		// wait for it to finish.
		select {
		case v.connecting <- struct{}{}:
			<-v.connecting
		case <-ctx.Done():
		}
	}
	g.catalogFor(key)
}

// releaseProfiles closes the profile connections no session needs: no
// session of that profile is open and none was used since idleSince. It
// returns how many it closed.
func (g *Gateway) releaseProfiles(idleSince time.Time) int {
	bs := g.bs()
	active := map[string]bool{}
	g.sessions.Range(func(s *Session) bool {
		active[s.profileKey()] = true
		return true
	})
	var conns []upstreamConn
	released := map[string]bool{}
	for _, name := range bs.order {
		b := bs.byName[name]
		b.variantMu.Lock()
		for k, v := range b.variants {
			if active[k] || v.lastUsed.Load() > idleSince.UnixNano() || len(v.connecting) > 0 {
				continue
			}
			delete(b.variants, k)
			released[k] = true
			if s := v.snap.Swap(nil); s != nil {
				conns = append(conns, s.conn)
			}
		}
		b.variantMu.Unlock()
	}
	if len(released) > 0 {
		g.catMu.Lock()
		for k := range released {
			if !active[k] {
				g.profileCats.Delete(k)
			}
		}
		g.catMu.Unlock()
	}
	for _, c := range conns {
		_ = c.close()
	}
	return len(conns)
}

// profileConnections is the number of open profile connections of b.
func (b *Backend) profileConnections() int {
	n := 0
	for _, s := range b.variantSnaps() {
		if s != nil {
			n++
		}
	}
	return n
}
