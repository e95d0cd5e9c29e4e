package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// collidingURIPrefix marks a resource URI that more than one backend serves;
// the gateway exposes such a URI as mcptrail://{server}/{original}.
const collidingURIPrefix = "mcptrail://"

// catalogItem is one entry of a merged list, already rewritten for clients.
type catalogItem struct {
	server string
	name   string // namespaced name, or exposed URI for resources
	// target names the item for policy as the call on it would:
	// "<server><sep><name>" for tools and prompts, "<server>:<uri>" for
	// resources and templates, with the backend's own name or URI.
	target string
	raw    json.RawMessage
	// readOnly is the tool's readOnlyHint annotation (tools only).
	readOnly bool
}

// resourceRoute says where an exposed resource URI goes.
type resourceRoute struct {
	server string
	uri    string // URI as the backend knows it
}

// templateRoute routes URIs by a template's literal prefix.
type templateRoute struct {
	prefix string
	server string
}

// catalog is an immutable merged view of every ready backend's lists.
type catalog struct {
	items     [numLists][]catalogItem
	resources map[string]resourceRoute // exposed URI → backend
	backURIs  map[resourceRoute]string // backend URI → exposed URI
	templates []templateRoute          // longest prefix first
	schemes   map[string][]string      // URI scheme → servers serving it
	toolRO    map[string]bool          // namespaced tool → readOnlyHint
	// resourceServers are the servers that declared the resources
	// capability, in config order.
	resourceServers []string
	// names maps an exposed tool or prompt name to its backend and the
	// name the backend knows it by.
	names [2]map[string]nameRoute
	// collisions lists names of a backend mounted without a namespace that
	// another backend already exposes; such names are left out.
	collisions []string
	// schemas are the tools' compiled inputSchemas by server and the
	// tool's own name; schemaErrs are those that did not compile.
	schemas    map[toolKey]*jsonschema.Schema
	schemaErrs []error
	// badHeaders are the tools whose x-mcp-header annotations break the
	// 2026-07-28 rules (exposed name → why): 2026 clients neither see nor
	// call them.
	badHeaders map[string]string
}

// nameRoute says where an exposed tool or prompt name goes.
type nameRoute struct {
	server string
	name   string // as the backend knows it
}

// buildCatalog merges snapshots (keyed by server name, in config order).
// namespaces gives each server's name prefix; "" mounts it without one.
func buildCatalog(order []string, snaps map[string]*backendSnapshot, sep string, namespaces map[string]string) *catalog {
	c := &catalog{
		resources: map[string]resourceRoute{},
		backURIs:  map[resourceRoute]string{},
		schemes:   map[string][]string{},
		toolRO:    map[string]bool{},
		schemas:   map[toolKey]*jsonschema.Schema{},
		names:     [2]map[string]nameRoute{{}, {}},
	}
	uriCount := map[string]int{}
	for _, name := range order {
		if s := snaps[name]; s != nil {
			for _, r := range s.lists[listResources] {
				if o, err := jsonrpc.ParseObject(r); err == nil {
					if u, ok := o.GetString("uri"); ok {
						uriCount[u]++
					}
				}
			}
		}
	}
	for _, name := range order {
		s := snaps[name]
		if s == nil {
			continue
		}
		if s.has("resources") {
			c.resourceServers = append(c.resourceServers, name)
		}
		for _, kind := range []listKind{listTools, listPrompts} {
			for _, raw := range s.lists[kind] {
				o, err := jsonrpc.ParseObject(raw)
				if err != nil {
					continue
				}
				n, ok := o.GetString("name")
				if !ok {
					continue
				}
				full := n
				if ns := namespaces[name]; ns != "" {
					full = ns + sep + n
					o.SetString("name", full)
					raw = o.Marshal()
				}
				if prev, dup := c.names[kind][full]; dup {
					c.collisions = append(c.collisions, fmt.Sprintf("%s %q of server %s is also one of server %s", listFields[kind][:len(listFields[kind])-1], full, name, prev.server))
					continue
				}
				c.names[kind][full] = nameRoute{server: name, name: n}
				it := catalogItem{server: name, name: full, target: name + sep + n, raw: raw}
				if kind == listTools {
					it.readOnly = readOnlyHint(o.Get("annotations"))
					c.toolRO[full] = it.readOnly
					c.addSchema(toolKey{name, n}, it.target, o.Get("inputSchema"))
					if err := headerAnnotationError(o.Get("inputSchema")); err != nil {
						if c.badHeaders == nil {
							c.badHeaders = map[string]string{}
						}
						c.badHeaders[full] = err.Error()
					}
				}
				c.items[kind] = append(c.items[kind], it)
			}
		}
		for _, raw := range s.lists[listResources] {
			o, err := jsonrpc.ParseObject(raw)
			if err != nil {
				continue
			}
			u, ok := o.GetString("uri")
			if !ok {
				continue
			}
			exposed := u
			if uriCount[u] > 1 {
				exposed = collidingURIPrefix + name + "/" + u
				o.SetString("uri", exposed)
				raw = o.Marshal()
			}
			rt := resourceRoute{server: name, uri: u}
			c.resources[exposed] = rt
			c.backURIs[rt] = exposed
			c.items[listResources] = append(c.items[listResources], catalogItem{server: name, name: exposed, target: uriTarget(rt), raw: raw})
			c.addScheme(u, name)
		}
		for _, raw := range s.lists[listTemplates] {
			o, err := jsonrpc.ParseObject(raw)
			if err != nil {
				continue
			}
			t, _ := o.GetString("uriTemplate")
			if p, _, _ := strings.Cut(t, "{"); p != "" {
				c.templates = append(c.templates, templateRoute{prefix: p, server: name})
			}
			c.addScheme(t, name)
			c.items[listTemplates] = append(c.items[listTemplates], catalogItem{server: name, name: t, target: uriTarget(resourceRoute{server: name, uri: t}), raw: raw})
		}
	}
	sort.SliceStable(c.templates, func(i, j int) bool { return len(c.templates[i].prefix) > len(c.templates[j].prefix) })
	return c
}

func (c *catalog) addSchema(k toolKey, target string, raw json.RawMessage) {
	s, err := compileInputSchema(target, raw)
	if err != nil {
		c.schemaErrs = append(c.schemaErrs, err)
	}
	if s != nil {
		c.schemas[k] = s
	}
}

func (c *catalog) addScheme(uri, server string) {
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok {
		return
	}
	for _, s := range c.schemes[scheme] {
		if s == server {
			return
		}
	}
	c.schemes[scheme] = append(c.schemes[scheme], server)
}

// routeURI finds the backend for a resource URI a client sent: an exposed
// URI from the lists, a colliding-URI rewrite, a template prefix, the one
// backend serving that scheme, or the one backend serving resources at all.
// A URI with no candidate is not found; with several, ambiguous ones are not
// guessed at.
func (c *catalog) routeURI(uri string) (resourceRoute, bool) {
	if rt, ok := c.routeAdvertised(uri); ok {
		return rt, true
	}
	if len(c.resourceServers) == 1 {
		return resourceRoute{server: c.resourceServers[0], uri: uri}, true
	}
	return resourceRoute{}, false
}

func (c *catalog) routeAdvertised(uri string) (resourceRoute, bool) {
	if rt, ok := c.resources[uri]; ok {
		return rt, true
	}
	if rest, ok := strings.CutPrefix(uri, collidingURIPrefix); ok {
		if server, orig, ok := strings.Cut(rest, "/"); ok {
			return resourceRoute{server: server, uri: orig}, true
		}
	}
	for _, t := range c.templates {
		if strings.HasPrefix(uri, t.prefix) {
			return resourceRoute{server: t.server, uri: uri}, true
		}
	}
	if scheme, _, ok := strings.Cut(uri, "://"); ok {
		if servers := c.schemes[scheme]; len(servers) == 1 {
			return resourceRoute{server: servers[0], uri: uri}, true
		}
	}
	return resourceRoute{}, false
}

// exposeURI maps a backend's URI back to what clients see.
func (c *catalog) exposeURI(server, uri string) string {
	if e, ok := c.backURIs[resourceRoute{server: server, uri: uri}]; ok {
		return e
	}
	return uri
}

func readOnlyHint(annotations json.RawMessage) bool {
	if len(annotations) == 0 {
		return false
	}
	var a struct {
		ReadOnly bool `json:"readOnlyHint"`
	}
	_ = json.Unmarshal(annotations, &a)
	return a.ReadOnly
}

// routeName finds the backend of a tool (kind listTools) or prompt
// (listPrompts) name a client sent: a listed name, else a name in a
// backend's namespace, else the one backend mounted without a namespace
// (which answers for names it does not list itself, as it would directly).
func (g *Gateway) routeName(kind listKind, name string) (nameRoute, bool) {
	bs := g.bs()
	if rt, ok := g.catalog.Load().names[kind][name]; ok {
		return rt, true
	}
	if server, rest, ok := splitName(name, g.sep()); ok {
		if b := bs.byName[server]; b != nil && b.namespace() == server {
			return nameRoute{server: server, name: rest}, true
		}
	}
	var bare []string
	for _, s := range bs.order {
		if bs.byName[s].namespace() == "" {
			bare = append(bare, s)
		}
	}
	if len(bare) == 1 {
		return nameRoute{server: bare[0], name: name}, true
	}
	return nameRoute{}, false
}

// listCall is, per list, the call that each listed item would take: the
// list shows an item only when the policy allows that call.
var listCall = [numLists]struct {
	method string
	kind   auth.Kind
}{
	listTools:     {"tools/call", auth.Tools},
	listPrompts:   {"prompts/get", auth.Prompts},
	listResources: {"resources/read", auth.Resources},
	listTemplates: {"resources/read", auth.Resources},
}

// splitName splits a namespaced name at the first separator.
func splitName(name, sep string) (server, rest string, ok bool) {
	return strings.Cut(name, sep)
}

// renderList encodes one page of items as a list result.
func renderList(field string, items []catalogItem, nextCursor string) json.RawMessage {
	n := 32
	for _, it := range items {
		n += len(it.raw) + 1
	}
	var buf bytes.Buffer
	buf.Grow(n)
	buf.WriteString(`{"`)
	buf.WriteString(field)
	buf.WriteString(`":[`)
	for i, it := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(it.raw)
	}
	buf.WriteByte(']')
	if nextCursor != "" {
		buf.WriteString(`,"nextCursor":`)
		c, _ := json.Marshal(nextCursor)
		buf.Write(c)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}
