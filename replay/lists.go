package replay

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/diff"
	"github.com/mcptrail/mcptrail/replay/match"
)

// listMethods maps a list method to the member holding its items.
var listMethods = map[string]string{
	"tools/list":               "tools",
	"prompts/list":             "prompts",
	"resources/list":           "resources",
	"resources/templates/list": "resourceTemplates",
}

// collidingURIPrefix is how the gateway exposes a resource URI that several
// backends serve: mcptrail://{server}/{uri}.
const collidingURIPrefix = "mcptrail://"

// BackendLists reconstructs, per backend, the list answers it served
// (tools/list, prompts/list, resources/list, resources/templates/list), as a
// backend result object such as {"tools":[...]}.
//
// The gateway fetches lists from backends at connect time, outside any client
// request, so they are not recorded as upstream hops; what is recorded is the
// merged, namespaced list each client received. Tools and prompts are split
// back by their "<server><sep><name>" prefix (sep defaults to "."); resources
// by the colliding-URI form, by the URIs that upstream resources/read hops
// show a server served, by URI scheme, or to the only server there is.
// Recorded upstream list hops, when present, win.
func BackendLists(events []recorder.Event, sep string) map[string]map[string]json.RawMessage {
	if sep == "" {
		sep = "."
	}
	var servers []string
	uriServer := map[string]string{}
	schemeServers := map[string][]string{}
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopUpstream || e.Server == "" {
			continue
		}
		if !slices.Contains(servers, e.Server) {
			servers = append(servers, e.Server)
		}
		if e.Method == "resources/read" {
			var p struct {
				URI string `json:"uri"`
			}
			if json.Unmarshal(e.Params, &p) == nil && p.URI != "" {
				uriServer[p.URI] = e.Server
				if s, _, ok := strings.Cut(p.URI, "://"); ok && !slices.Contains(schemeServers[s], e.Server) {
					schemeServers[s] = append(schemeServers[s], e.Server)
				}
			}
		}
	}
	// Schemes each server is known to serve, from the colliding-URI form
	// of recorded resource items as well: they attribute other URIs of
	// the same scheme.
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopResponse || e.Method != "resources/list" || e.Outcome != recorder.OutcomeOK {
			continue
		}
		var body struct {
			Resources []struct {
				URI string `json:"uri"`
			} `json:"resources"`
		}
		if json.Unmarshal(e.Result, &body) != nil {
			continue
		}
		for _, r := range body.Resources {
			rest, ok := strings.CutPrefix(r.URI, collidingURIPrefix)
			if !ok {
				continue
			}
			server, orig, ok := strings.Cut(rest, "/")
			if !ok {
				continue
			}
			if !slices.Contains(servers, server) {
				servers = append(servers, server)
			}
			if sc, _, ok := strings.Cut(orig, "://"); ok && !slices.Contains(schemeServers[sc], server) {
				schemeServers[sc] = append(schemeServers[sc], server)
			}
		}
	}
	// Servers seen in tools and prompts lists count too: a backend whose
	// resources were never read is still a candidate for them.
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopResponse || (e.Method != "tools/list" && e.Method != "prompts/list") || e.Outcome != recorder.OutcomeOK {
			continue
		}
		var body map[string]json.RawMessage
		var items []struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(e.Result, &body) != nil || json.Unmarshal(body[listMethods[e.Method]], &items) != nil {
			continue
		}
		for _, it := range items {
			if server, _, ok := strings.Cut(it.Name, sep); ok && !slices.Contains(servers, server) {
				servers = append(servers, server)
			}
		}
	}
	noNamespace := slices.Sorted(maps.Keys(RecordedNoNamespace(events, sep)))
	// Items per server and method, deduplicated by name across pages and
	// sessions (first occurrence wins).
	type acc struct {
		items [][]byte
		seen  map[string]bool
	}
	out := map[string]map[string]*acc{}
	add := func(server, method, key string, item []byte) {
		if out[server] == nil {
			out[server] = map[string]*acc{}
		}
		a := out[server][method]
		if a == nil {
			a = &acc{seen: map[string]bool{}}
			out[server][method] = a
		}
		if !a.seen[key] {
			a.seen[key] = true
			a.items = append(a.items, item)
		}
	}
	upstreamLists := map[string]map[string]bool{}
	for i := range events {
		e := &events[i]
		field, ok := listMethods[e.Method]
		if !ok || e.Outcome != recorder.OutcomeOK || len(e.Result) == 0 {
			continue
		}
		var body map[string]json.RawMessage
		if json.Unmarshal(e.Result, &body) != nil {
			continue
		}
		var items []map[string]json.RawMessage
		if json.Unmarshal(body[field], &items) != nil {
			continue
		}
		switch e.Hop {
		case recorder.HopUpstream:
			if upstreamLists[e.Server] == nil {
				upstreamLists[e.Server] = map[string]bool{}
			}
			upstreamLists[e.Server][e.Method] = true
			for _, it := range items {
				b, _ := json.Marshal(it)
				add(e.Server, e.Method+"\x00up", itemKey(it), b)
			}
		case recorder.HopResponse:
			for _, it := range items {
				server, item := attribute(e.Method, it, sep, servers, uriServer, schemeServers, noNamespace)
				if server == "" {
					continue
				}
				b, _ := json.Marshal(item)
				add(server, e.Method, itemKey(item), b)
			}
		}
	}
	res := map[string]map[string]json.RawMessage{}
	for server, byMethod := range out {
		for method, field := range listMethods {
			a := byMethod[method]
			if upstreamLists[server][method] {
				a = byMethod[method+"\x00up"]
			}
			if a == nil {
				continue
			}
			b := []byte(`{"` + field + `":[`)
			for i, it := range a.items {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, it...)
			}
			b = append(b, "]}"...)
			if res[server] == nil {
				res[server] = map[string]json.RawMessage{}
			}
			res[server][method] = b
		}
	}
	return res
}

func itemKey(it map[string]json.RawMessage) string {
	for _, k := range []string{"name", "uri", "uriTemplate"} {
		if v, ok := it[k]; ok {
			return k + string(v)
		}
	}
	b, _ := json.Marshal(it)
	return string(b)
}

// attribute finds the backend of one merged list item and rewrites it back
// to the backend's spelling.
func attribute(method string, it map[string]json.RawMessage, sep string, servers []string,
	uriServer map[string]string, schemeServers map[string][]string, noNamespace []string) (string, map[string]json.RawMessage) {
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(it[k], &s)
		return s
	}
	clone := func(k, v string) map[string]json.RawMessage {
		c := make(map[string]json.RawMessage, len(it))
		for kk, vv := range it {
			c[kk] = vv
		}
		b, _ := json.Marshal(v)
		c[k] = b
		return c
	}
	switch method {
	case "tools/list", "prompts/list":
		server, rest, ok := strings.Cut(str("name"), sep)
		if ok && slices.Contains(servers, server) && !slices.Contains(noNamespace, server) {
			return server, clone("name", rest)
		}
		if len(noNamespace) == 1 { // the only server whose names carry no namespace
			return noNamespace[0], it
		}
		if !ok {
			return "", nil
		}
		return server, clone("name", rest)
	case "resources/list":
		u := str("uri")
		if rest, ok := strings.CutPrefix(u, collidingURIPrefix); ok {
			if server, orig, ok := strings.Cut(rest, "/"); ok {
				return server, clone("uri", orig)
			}
		}
		if s := uriServer[u]; s != "" {
			return s, it
		}
		return byScheme(u, servers, schemeServers), it
	default: // resources/templates/list
		return byScheme(str("uriTemplate"), servers, schemeServers), it
	}
}

// byScheme attributes a URI (or template) no recorded request ties to a
// server: the only server there is; the only server known to serve its
// scheme; or, for a scheme no server is known to serve, the only server
// not known to serve any scheme.
func byScheme(u string, servers []string, schemeServers map[string][]string) string {
	if len(servers) == 1 {
		return servers[0]
	}
	s, _, ok := strings.Cut(u, "://")
	if !ok {
		return ""
	}
	if len(schemeServers[s]) == 1 {
		return schemeServers[s][0]
	}
	if len(schemeServers[s]) > 1 {
		return ""
	}
	known := map[string]bool{}
	for _, ss := range schemeServers {
		for _, srv := range ss {
			known[srv] = true
		}
	}
	cand := ""
	for _, srv := range servers {
		if !known[srv] {
			if cand != "" {
				return ""
			}
			cand = srv
		}
	}
	return cand
}

// ReadOnlyTools returns, per backend, each tool's annotations.readOnlyHint
// as recorded in the tools lists (see BackendLists). A tool missing from the
// map was never listed, so nothing is known about it.
func ReadOnlyTools(lists map[string]map[string]json.RawMessage) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for server, byMethod := range lists {
		var body struct {
			Tools []struct {
				Name        string `json:"name"`
				Annotations struct {
					ReadOnlyHint *bool `json:"readOnlyHint"`
				} `json:"annotations"`
			} `json:"tools"`
		}
		if json.Unmarshal(byMethod["tools/list"], &body) != nil {
			continue
		}
		out[server] = map[string]bool{}
		for _, t := range body.Tools {
			out[server][t.Name] = t.Annotations.ReadOnlyHint != nil && *t.Annotations.ReadOnlyHint
		}
	}
	return out
}

// NewMockStore is NewStore plus the backends' list answers (BackendLists,
// then extra tools/list results such as a bundle header's Tools for servers
// without any), the lists per client capability profile (ProfileLists) and
// initialize answers (BackendHandshakes), so that a gateway connecting to the mock sees the same
// catalog as when the traffic was recorded.
func NewMockStore(events []recorder.Event, cfg match.Config, sep string, extraTools map[string]json.RawMessage) (*match.Store, error) {
	s, err := NewStore(events, cfg)
	if err != nil {
		return nil, err
	}
	lists := BackendLists(events, sep)
	for server, res := range extraTools {
		if lists[server] == nil {
			lists[server] = map[string]json.RawMessage{}
		}
		if lists[server]["tools/list"] == nil {
			lists[server]["tools/list"] = res
		}
	}
	for server, byMethod := range lists {
		for method, res := range byMethod {
			if _, ok := s.Session(method, server); ok {
				continue // recorded upstream
			}
			if err := s.Add(diff.Exchange{Method: method, Server: server, Response: res}); err != nil {
				return nil, err
			}
		}
	}
	for profile, byServer := range ProfileLists(events, sep) {
		for server, byMethod := range byServer {
			for method, res := range byMethod {
				s.AddProfileList(server, profile, method, res)
			}
		}
	}
	for server, res := range BackendHandshakes(events, sep) {
		if _, ok := s.Session("initialize", server); ok {
			continue
		}
		if err := s.Add(diff.Exchange{Method: "initialize", Server: server, Response: res}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CatalogOrder returns servers ordered as the recorded merged catalog lists
// them: by first appearance in the first recorded tools/list answer a
// client got (then prompts/list, resources/list), the rest in their given
// order. The gateway merges backends in config order, so a mock gateway
// configured in this order serves the catalog in the recorded order.
func CatalogOrder(events []recorder.Event, sep string, servers []string) []string {
	if sep == "" {
		sep = "."
	}
	var out []string
	seen := map[string]bool{}
	addServer := func(s string) {
		if s != "" && !seen[s] && slices.Contains(servers, s) {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, method := range []string{"tools/list", "prompts/list", "resources/list"} {
		for i := range events {
			e := &events[i]
			if e.Hop != recorder.HopResponse || e.Method != method || e.Outcome != recorder.OutcomeOK || len(e.Result) == 0 {
				continue
			}
			var body map[string]json.RawMessage
			var items []map[string]json.RawMessage
			if json.Unmarshal(e.Result, &body) != nil || json.Unmarshal(body[listMethods[method]], &items) != nil {
				continue
			}
			for _, it := range items {
				if method == "resources/list" {
					var u string
					_ = json.Unmarshal(it["uri"], &u)
					if rest, ok := strings.CutPrefix(u, collidingURIPrefix); ok {
						s, _, _ := strings.Cut(rest, "/")
						addServer(s)
					}
					continue
				}
				var n string
				_ = json.Unmarshal(it["name"], &n)
				s, _, _ := strings.Cut(n, sep)
				addServer(s)
			}
			break
		}
	}
	for _, s := range servers {
		addServer(s)
	}
	return out
}

// RecordedNoNamespace returns the backends the recording shows were mounted
// without a namespace: a tools/call or prompts/get routed to the server
// whose target, as the client named it, does not carry the server's
// namespace (upstream hops name it as the backend does, so they do not
// count). The mock gateway mounts them so (without a config), and their
// list items are attributed to them as they are.
func RecordedNoNamespace(events []recorder.Event, sep string) map[string]bool {
	if sep == "" {
		sep = "."
	}
	out := map[string]bool{}
	for i := range events {
		e := &events[i]
		if e.Hop == recorder.HopUpstream || e.Server == "" || e.Target == "" || (e.Method != "tools/call" && e.Method != "prompts/get") {
			continue
		}
		if !strings.HasPrefix(e.Target, e.Server+sep) {
			out[e.Server] = true
		}
	}
	return out
}
