package proxy

// Backends that speak 2026-07-28 (servers[].protocol_version: 2026-07-28).
// The gateway talks to them without a session: server/discover instead of
// initialize, per-request _meta (protocol version, client identity and
// capabilities), the Mcp-Method / Mcp-Name headers computed from the request
// as sent upstream (so a de-namespaced name is what the header carries), and
// no ping. What such a backend answers is relayed as is to 2026 clients; a
// session-era client cannot take an InputRequiredResult, so for it the
// gateway plays the old protocol: it relays each input request as a
// server→client request on the client's session and retries the backend
// call with the answers (see modernConn.call).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// maxInputRoundTrips bounds how often the gateway answers a 2026 backend's
// input requests on behalf of a session-era client before giving up.
const maxInputRoundTrips = 10

// modernUpstream reports whether a backend is configured to speak a
// sessionless revision.
func modernUpstream(version string) bool { return slices.Contains(modernVersions, version) }

// modernConn adapts a connection to a 2026-07-28 backend.
type modernConn struct {
	upstreamConn
	b       *Backend
	version string
}

// gatewayCaps are the client capabilities the gateway declares for its own
// requests (discover, lists), as in the session-era handshake.
var gatewayCaps = json.RawMessage(`{"sampling":{},"elicitation":{},"roots":{"listChanged":true}}`)

func (m *modernConn) call(ctx context.Context, id int64, method string, params []byte, header http.Header, t *hopTiming) (upstreamResult, error) {
	c, _ := ctx.Value(callKey{}).(*call)
	for round := 0; ; round++ {
		p, h := m.prepare(c, method, params, header)
		res, err := m.upstreamConn.call(ctx, id, method, p, h, t)
		if err != nil || res.Error != nil || c == nil || c.sess.modern() || round >= maxInputRoundTrips {
			return res, err
		}
		if rt, _ := jsonrpc.Lookup(res.Result, "resultType"); string(rt) != `"input_required"` {
			return res, nil
		}
		// A session-era client: ask it the old way, then retry.
		next, err := m.fulfil(ctx, c, params, res.Result)
		if err != nil {
			return res, err
		}
		params, id = next, m.b.nextID.Add(1)
	}
}

// prepare adds what a 2026 request carries: the version, client identity
// and capabilities in _meta (the client's own when it declared them) and
// the standard headers.
func (m *modernConn) prepare(c *call, method string, params []byte, header http.Header) ([]byte, http.Header) {
	o, err := jsonrpc.ParseObject(params)
	if err != nil || params == nil {
		o = &jsonrpc.Object{}
	}
	meta, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil {
		meta = &jsonrpc.Object{}
	}
	meta.SetString(metaProtocolVersion, m.version)
	if meta.Get(metaClientCapabilities) == nil {
		caps := gatewayCaps
		if c != nil && c.sess != nil {
			if cc := c.sess.capsJSON(); cc != nil {
				caps = cc
			}
		}
		meta.Set(metaClientCapabilities, caps)
	}
	if meta.Get(metaClientInfo) == nil {
		name, ver := "mcptrail", m.b.clientVersion()
		if c != nil && c.sess != nil {
			if _, n, v := c.sess.client(); n != "" {
				name, ver = n, v
			}
		}
		info, _ := json.Marshal(map[string]string{"name": name, "version": ver})
		meta.Set(metaClientInfo, info)
	}
	o.Set("_meta", meta.Marshal())
	out := o.Marshal()
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for k, v := range mcp.StandardHeaders(m.version, mcp.MCPMethod(method), out) {
		h.Set(k, v)
	}
	if method == "tools/call" {
		// Parameters the backend's tool marks with x-mcp-header are mirrored
		// into Mcp-Param-* headers, as a 2026 client must.
		if snap := m.b.snap.Load(); snap != nil {
			name, _ := o.GetString("name")
			if t, ok := toolDef(snap.lists[listTools], name); ok {
				for k, v := range mcp.GenerateParamHeaders(t, out) {
					h.Set(k, v)
				}
			}
		}
	}
	return out, h
}

// fulfil relays a 2026 backend's input requests to a session-era client as
// server→client requests and returns the retry's params.
func (m *modernConn) fulfil(ctx context.Context, c *call, params, result []byte) ([]byte, error) {
	var ir struct {
		InputRequests map[string]struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		} `json:"inputRequests"`
		RequestState *string `json:"requestState"`
	}
	if err := json.Unmarshal(result, &ir); err != nil {
		return nil, fmt.Errorf("decoding the backend's InputRequiredResult: %w", err)
	}
	responses := &jsonrpc.Object{}
	for key, r := range ir.InputRequests {
		req := jsonrpc.NewRequest(json.RawMessage(`"`+key+`"`), r.Method, r.Params)
		answer := c.serverRequest(ctx, m.b, req)
		if answer.Error != nil {
			return nil, fmt.Errorf("the client did not answer %s: %s", r.Method, answer.Error.Message)
		}
		responses.Set(key, answer.Result)
	}
	o, err := jsonrpc.ParseObject(params)
	if err != nil {
		o = &jsonrpc.Object{}
	}
	o.Set("inputResponses", responses.Marshal())
	if ir.RequestState != nil {
		o.SetString("requestState", *ir.RequestState)
	} else {
		o.Delete("requestState")
	}
	return o.Marshal(), nil
}

// discoverHandshake replaces initialize for a 2026 backend.
func (b *Backend) discoverHandshake(ctx context.Context, conn upstreamConn, version string) (*backendSnapshot, error) {
	mc := &modernConn{upstreamConn: conn, b: b, version: version}
	conn.setProtocolVersion(version)
	snap := &backendSnapshot{conn: mc}
	res, err := b.rawCall(ctx, snap, "server/discover", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("server/discover: %w", err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("server/discover: %w", res.Error)
	}
	var d struct {
		SupportedVersions []string                   `json:"supportedVersions"`
		Capabilities      map[string]json.RawMessage `json:"capabilities"`
		Instructions      string                     `json:"instructions"`
		Meta              map[string]json.RawMessage `json:"_meta"`
	}
	if err := json.Unmarshal(res.Result, &d); err != nil {
		return nil, fmt.Errorf("decoding server/discover result: %w", err)
	}
	if !slices.Contains(d.SupportedVersions, version) {
		return nil, fmt.Errorf("server/discover: the backend supports %v, not %s", d.SupportedVersions, version)
	}
	snap.protocolVersion = version
	snap.capabilities = d.Capabilities
	snap.serverInfo = d.Meta[metaServerInfo]
	snap.instructions = d.Instructions
	if err := b.fetchLists(ctx, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// healthMethod is how the gateway checks a backend is alive: ping, which
// 2026-07-28 removed, or server/discover.
func healthMethod(version string) string {
	if modernUpstream(version) {
		return "server/discover"
	}
	return "ping"
}

// capsJSON is what the client declared, as JSON; nil when it declared
// nothing.
func (s *Session) capsJSON() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caps == nil {
		return nil
	}
	b, _ := json.Marshal(s.caps)
	return b
}

// listenUpstream keeps a subscriptions/listen stream open to a 2026 backend
// for the list changes it declared (listChanged), which replaced the GET
// stream: its notifications reach backendNotification like a session-era
// backend's, so catalogs follow the backend. Over stdio the request stays
// pending on the shared channel while the notifications tagged with its id
// arrive on it. The stream is reopened when it ends, until the returned stop
// is called (with the connection, which ends it on the backend too).
func (b *Backend) listenUpstream(ctx context.Context, snap *backendSnapshot) (stop func()) {
	if !modernUpstream(snap.protocolVersion) {
		return func() {}
	}
	filter := map[string]bool{}
	for cap, key := range map[string]string{"tools": "toolsListChanged", "prompts": "promptsListChanged", "resources": "resourcesListChanged"} {
		var c struct {
			ListChanged bool `json:"listChanged"`
		}
		if raw, ok := snap.capabilities[cap]; ok && json.Unmarshal(raw, &c) == nil && c.ListChanged {
			filter[key] = true
		}
	}
	if len(filter) == 0 {
		return func() {}
	}
	params, _ := json.Marshal(map[string]any{"notifications": filter})
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lctx.Err() == nil {
			_, err := b.rawCall(lctx, snap, "subscriptions/listen", params, nil)
			if lctx.Err() != nil {
				return
			}
			b.logger.Debug("subscriptions/listen to the backend ended; reopening", "err", err)
			if !sleepCtx(lctx, time.Second) {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
