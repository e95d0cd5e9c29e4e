package proxy

// Protocol revision 2026-07-28 ("modern") on the client side: requests are
// sessionless and carry their version, client identity and capabilities in
// params._meta; POSTs mirror the method and name in Mcp-Method / Mcp-Name;
// every result carries resultType, and list and read results carry caching
// hints. The gateway serves this era and the session era (2024-11-05 to
// 2025-11-25) on the same endpoint, choosing per request. Each backend keeps
// the version it negotiated; only what differs between the two is
// translated, here and in mrtr.go.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// Error codes the 2026-07-28 revision defines.
const (
	codeHeaderMismatch             = -32020
	codeMissingClientCapability    = -32021
	codeUnsupportedProtocolVersion = -32022
)

// Keys of params._meta (requests) and result._meta (results) in 2026-07-28.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaServerInfo         = "io.modelcontextprotocol/serverInfo"
	metaLogLevel           = "io.modelcontextprotocol/logLevel"
	metaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// modernVersions are the sessionless revisions the gateway serves.
var modernVersions = []string{protocol2026}

// supportedVersions lists every revision the gateway serves, newest first,
// as server/discover and UnsupportedProtocolVersion errors report them.
func supportedVersions() []string {
	return append(slices.Clone(modernVersions), clientVersions...)
}

// requestMeta returns a request's params._meta, nil when it has none.
func requestMeta(msg jsonrpc.Message) *jsonrpc.Object {
	o, err := jsonrpc.ParseObject(msg.Params)
	if err != nil {
		return nil
	}
	meta, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil {
		return nil
	}
	return meta
}

// modernSession validates a sessionless (2026-07-28) request's protocol
// version and standard headers and builds the per-request session that
// carries what the client declared in _meta. It answers failures itself.
func (g *Gateway) modernSession(w http.ResponseWriter, r *http.Request, msg jsonrpc.Message, reqID string) (*Session, bool) {
	meta := requestMeta(msg)
	version := r.Header.Get("Mcp-Protocol-Version")
	var bodyVersion string
	if meta != nil {
		bodyVersion, _ = meta.GetString(metaProtocolVersion)
	}
	switch {
	case version == "":
		version = bodyVersion
	case bodyVersion != "" && bodyVersion != version:
		writeRPCError(w, http.StatusBadRequest, msg.ID, codeHeaderMismatch,
			"Header mismatch: MCP-Protocol-Version header value '"+version+"' does not match body value '"+bodyVersion+"'", reqID)
		return nil, false
	}
	bare := false
	if version == "" && msg.Method == "server/discover" {
		// A probe that names no version at all: answer it (it is how a
		// client finds out), without the checks a 2026 request gets.
		version, bare = protocol2026, true
	}
	if !slices.Contains(modernVersions, version) {
		data, _ := json.Marshal(map[string]any{"supported": supportedVersions(), "requested": version, "requestId": reqID})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(HeaderRequestID, reqID)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(jsonrpc.NewError(msg.ID, codeUnsupportedProtocolVersion, "Unsupported protocol version: "+version, data).Marshal())
		return nil, false
	}
	if msg.Kind() == jsonrpc.KindRequest && !bare {
		if err := mcp.ValidateStandardHeaders(r.Header.Get, version, mcp.MCPMethod(msg.Method), msg.Params); err != nil {
			writeRPCError(w, http.StatusBadRequest, msg.ID, codeHeaderMismatch, "Header mismatch: "+err.Error(), reqID)
			return nil, false
		}
	}
	sess := g.newSession("", nil) // sessionless: never stored, owned by no one
	var info struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	var caps map[string]json.RawMessage
	if meta != nil {
		_ = json.Unmarshal(meta.Get(metaClientInfo), &info)
		_ = json.Unmarshal(meta.Get(metaClientCapabilities), &caps)
		if lvl, ok := meta.GetString(metaLogLevel); ok {
			if !validLogLevel(lvl) {
				// logging: "If the io.modelcontextprotocol/logLevel value …
				// is not a recognized log level, the server SHOULD reject
				// that request" with Invalid params.
				writeRPCError(w, http.StatusOK, msg.ID, jsonrpc.CodeInvalidParams, "Invalid log level in _meta: "+strconv.Quote(lvl), reqID)
				return nil, false
			}
			sess.setLogLevel(lvl)
		}
	}
	sess.setClient(version, info.Name, info.Version, caps)
	if msg.Kind() == jsonrpc.KindRequest && msg.Method == "tools/call" {
		// One catalog for the whole call: the one the client's capability
		// profile sees, which its Mcp-Param-* headers are checked against
		// and the call then hides, validates and routes by. (A list loads
		// its own, once the profile's connections are up: ensureProfile.)
		sess.cat = g.catalogFor(sess.profileKey())
		if err := checkParamHeaders(sess.cat, r, msg); err != nil {
			writeRPCError(w, http.StatusBadRequest, msg.ID, codeHeaderMismatch, "Header mismatch: "+err.Error(), reqID)
			return nil, false
		}
	}
	return sess, true
}

// modern reports a sessionless 2026-07-28 client request.
func (s *Session) modern() bool {
	if s == nil || s.id != "" {
		return false
	}
	v, _, _ := s.client()
	return slices.Contains(modernVersions, v)
}

// cacheable lists the methods whose complete results carry ttlMs and
// cacheScope in 2026-07-28.
var cacheable = map[string]bool{
	"server/discover": true, "tools/list": true, "prompts/list": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
}

// modernize translates an answer for a 2026-07-28 client: every result gets
// resultType (and the gateway's serverInfo in _meta), cacheable results get
// ttlMs and cacheScope when the backend gave none, and resource-not-found
// becomes -32602. What a 2026 backend already set is relayed as it is.
func (c *call) modernize(m jsonrpc.Message) jsonrpc.Message {
	if m.Error != nil {
		if m.Error.Code == jsonrpc.CodeResourceNotFound {
			e := *m.Error
			e.Code = jsonrpc.CodeInvalidParams
			m.Error = &e
			if c.errCode == jsonrpc.CodeResourceNotFound {
				c.errCode = jsonrpc.CodeInvalidParams
			}
		}
		return m
	}
	if m.Result == nil {
		return m
	}
	if c.msg.Method == "server/discover" {
		m.Result = modernCapabilities(m.Result)
	}
	rt, hasRT := jsonrpc.Lookup(m.Result, "resultType")
	if !hasRT {
		if out, err := jsonrpc.AppendMember(m.Result, "resultType", []byte(`"complete"`)); err == nil {
			m.Result = out
		}
	}
	if meta, ok := jsonrpc.Lookup(m.Result, "_meta"); !ok {
		if out, err := jsonrpc.AppendMember(m.Result, "_meta", c.g.appendServerInfoMeta(nil)); err == nil {
			m.Result = out
		}
	} else if o, err := jsonrpc.ParseObject(meta); err == nil && o.Get(metaServerInfo) == nil {
		if res, err := jsonrpc.ParseObject(m.Result); err == nil {
			o.Set(metaServerInfo, c.g.serverInfo)
			res.Set("_meta", o.Marshal())
			m.Result = res.Marshal()
		}
	}
	complete := !hasRT || string(rt) == `"complete"`
	if complete && cacheable[c.msg.Method] {
		hint := cacheHint{scope: "private"} // what no backend vouched for
		if kind, ok := listKindOf(c.msg.Method); ok {
			hint = c.g.mergedHint(kind)
		}
		if _, ok := jsonrpc.Lookup(m.Result, "ttlMs"); !ok {
			if out, err := jsonrpc.AppendMember(m.Result, "ttlMs", strconv.AppendInt(nil, hint.ttlMs, 10)); err == nil {
				m.Result = out
			}
		}
		if _, ok := jsonrpc.Lookup(m.Result, "cacheScope"); !ok {
			if out, err := jsonrpc.AppendMember(m.Result, "cacheScope", strconv.AppendQuote(nil, hint.scope)); err == nil {
				m.Result = out
			}
		}
	}
	return m
}

// cacheHint is a result's ttlMs and cacheScope.
type cacheHint struct {
	ttlMs int64
	scope string // "public" or "private"
}

// cacheHintOf reads the hints of a list result; nil when it has none (a
// session-era backend).
func cacheHintOf(body map[string]json.RawMessage) *cacheHint {
	var h cacheHint
	if json.Unmarshal(body["ttlMs"], &h.ttlMs) != nil || json.Unmarshal(body["cacheScope"], &h.scope) != nil {
		return nil
	}
	h.ttlMs = max(h.ttlMs, 0)
	if h.scope != "public" {
		h.scope = "private"
	}
	return &h
}

func listKindOf(method string) (listKind, bool) {
	for k, m := range listMethods {
		if m == method {
			return listKind(k), true
		}
	}
	return 0, false
}

// mergedHint is the most conservative hint of the backends that serve a
// list: the shortest ttlMs (0 when one gave none), public only when every
// one said public and the list is not filtered per principal.
func (g *Gateway) mergedHint(kind listKind) cacheHint {
	bs := g.bs()
	h := cacheHint{ttlMs: -1, scope: "public"}
	if g.ps().auth.Enabled() {
		h.scope = "private"
	}
	for _, name := range bs.order {
		b := bs.byName[name]
		s := b.snap.Load()
		if s == nil || !s.has(listCaps[kind]) {
			continue
		}
		bh := b.listHints[kind].Load()
		if bh == nil {
			return cacheHint{scope: "private"}
		}
		if h.ttlMs < 0 || bh.ttlMs < h.ttlMs {
			h.ttlMs = bh.ttlMs
		}
		if bh.scope != "public" {
			h.scope = "private"
		}
	}
	h.ttlMs = max(h.ttlMs, 0)
	return h
}

// appendServerInfoMeta appends {"io.modelcontextprotocol/serverInfo":{…}}.
func (g *Gateway) appendServerInfoMeta(dst []byte) []byte {
	dst = append(dst, `{"`+metaServerInfo+`":`...)
	dst = append(dst, g.serverInfo...)
	return append(dst, '}')
}

// toolDef returns the definition of a tool in a tools list (raw items), by
// the name it has there.
func toolDef(items []json.RawMessage, name string) (*mcp.Tool, bool) {
	for _, raw := range items {
		var head struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &head) != nil || head.Name != name {
			continue
		}
		var t mcp.Tool
		if json.Unmarshal(raw, &t) != nil {
			return nil, false
		}
		return &t, true
	}
	return nil, false
}

// checkParamHeaders validates a 2026-07-28 tools/call's Mcp-Param-*
// headers against the arguments, for the parameters the tool's inputSchema
// (as the gateway lists it) marks with x-mcp-header: a missing, malformed
// or different value is a HeaderMismatch (transports: "Any server that
// processes the message body MUST validate" them).
func checkParamHeaders(cat *catalog, r *http.Request, msg jsonrpc.Message) error {
	if msg.Method != "tools/call" {
		return nil
	}
	name, ok := jsonrpc.Lookup(msg.Params, "name")
	if !ok {
		return nil
	}
	var n string
	if json.Unmarshal(name, &n) != nil {
		return nil
	}
	if _, bad := cat.badHeaders[n]; bad {
		return nil // refused as an unknown tool
	}
	items := cat.items[listTools]
	raws := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		if it.name == n {
			raws = append(raws, it.raw)
		}
	}
	t, ok := toolDef(raws, n)
	if !ok {
		return nil
	}
	return mcp.ValidateParamHeaders(r.Header.Get, t, msg.Params)
}
