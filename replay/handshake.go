package replay

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/match"
)

// capabilityFamilies maps a server capability to the methods that show a
// backend has it.
var capabilityFamilies = map[string]func(method string) bool{
	"tools":       func(m string) bool { return strings.HasPrefix(m, "tools/") },
	"prompts":     func(m string) bool { return strings.HasPrefix(m, "prompts/") },
	"resources":   func(m string) bool { return strings.HasPrefix(m, "resources/") },
	"completions": func(m string) bool { return m == "completion/complete" },
	"logging":     func(m string) bool { return m == "logging/setLevel" },
}

// instructionsHeading is the heading the gateway puts over each backend's
// instructions when it merges them (proxy: Gateway.instructions).
var instructionsHeading = regexp.MustCompile(`(?m)^## Server ([^\s:]+)(?:: its tools and prompts are named .*)?\n\n`)

// BackendHandshakes reconstructs, per backend, the initialize result it
// gave the gateway: the gateway's handshakes with its backends happen
// outside any client request and are not recorded, but what it told clients
// is: the union of the backends' capabilities and their merged instructions
// (the last recorded initialize or server/discover answer). Each backend
// gets the capabilities of the families its recorded requests and list
// answers show (tools, prompts, resources, completions, logging) with their
// recorded flags (listChanged, subscribe), every capability outside those
// families (extensions, tasks, experimental), its own section of the
// instructions, and the protocol version recorded on its upstream hops. A
// mock gateway thus offers clients what the recorded one did.
func BackendHandshakes(events []recorder.Event, sep string) map[string]json.RawMessage {
	methods := map[string]map[string]bool{}
	version := map[string]string{}
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopUpstream || e.Server == "" {
			continue
		}
		if methods[e.Server] == nil {
			methods[e.Server] = map[string]bool{}
		}
		methods[e.Server][e.Method] = true
		if version[e.Server] == "" {
			version[e.Server] = e.UpstreamVersion
		}
	}
	for server, byMethod := range BackendLists(events, sep) {
		if methods[server] == nil {
			methods[server] = map[string]bool{}
		}
		for m := range byMethod {
			methods[server][m] = true
		}
	}
	var seen struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
		Instructions string                     `json:"instructions"`
	}
	for i := len(events) - 1; i >= 0; i-- {
		e := &events[i]
		if e.Hop == recorder.HopResponse && (e.Method == "initialize" || e.Method == "server/discover") &&
			e.Outcome == recorder.OutcomeOK && json.Unmarshal(e.Result, &seen) == nil && seen.Capabilities != nil {
			break
		}
	}
	servers := slices.Sorted(maps.Keys(methods))
	instructions := splitInstructions(seen.Instructions, servers, RecordedNoNamespace(events, sep))
	out := map[string]json.RawMessage{}
	for _, server := range servers {
		caps := map[string]json.RawMessage{}
		for k, v := range seen.Capabilities {
			family, ok := capabilityFamilies[k]
			if !ok {
				caps[k] = v
				continue
			}
			for m := range methods[server] {
				if family(m) {
					caps[k] = v
					break
				}
			}
		}
		for k, family := range capabilityFamilies {
			if _, ok := caps[k]; ok {
				continue
			}
			for m := range methods[server] {
				if family(m) {
					caps[k] = json.RawMessage(`{}`)
					break
				}
			}
		}
		res := map[string]any{
			"capabilities": caps,
			"serverInfo":   map[string]string{"name": server, "version": "mcptrail-replay"},
		}
		if version[server] != "" {
			res["protocolVersion"] = version[server]
		}
		if s := instructions[server]; s != "" {
			res["instructions"] = s
		}
		b, err := json.Marshal(res)
		if err == nil {
			out[server] = b
		}
	}
	return out
}

// splitInstructions undoes the gateway's merge of backend instructions: a
// section per "## Server <name>" heading; text without headings belongs to
// the only backend there is, or to the only one mounted without a
// namespace.
func splitInstructions(text string, servers []string, noNamespace map[string]bool) map[string]string {
	out := map[string]string{}
	if strings.TrimSpace(text) == "" {
		return out
	}
	locs := instructionsHeading.FindAllStringSubmatchIndex(text, -1)
	if len(locs) == 0 || locs[0][0] != 0 {
		switch {
		case len(servers) == 1:
			out[servers[0]] = text
		case len(noNamespace) == 1:
			for s := range noNamespace {
				out[s] = text
			}
		}
		return out
	}
	for i, l := range locs {
		end := len(text)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		name := text[l[2]:l[3]]
		if slices.Contains(servers, name) {
			out[name] = strings.TrimSuffix(text[l[1]:end], "\n\n")
		}
	}
	return out
}

// ProfileLists is BackendLists per client capability profile
// (match.ProfileKey of what a client declared: in its session's initialize,
// or in a sessionless request's _meta): the lists each profile's clients
// were served. The gateway keeps one backend connection per profile, and a
// backend may list some items only to clients that declared a capability,
// so the mock serves each connection its profile's lists. List answers of
// sessions whose capabilities are not in the recording count for no
// profile.
func ProfileLists(events []recorder.Event, sep string) map[string]map[string]map[string]json.RawMessage {
	bySession := map[string]string{}
	byRequest := map[string]string{}
	for _, r := range Requests(events) {
		if r.Inbound == nil {
			continue
		}
		switch {
		case r.Method == "initialize" && r.SessionID != "":
			var p struct {
				Capabilities json.RawMessage `json:"capabilities"`
			}
			_ = json.Unmarshal(r.Inbound.Params, &p)
			bySession[r.SessionID] = match.ProfileKey(p.Capabilities)
		case r.SessionID == "":
			var p struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			}
			if json.Unmarshal(r.Inbound.Params, &p) == nil && p.Meta != nil {
				if caps, ok := p.Meta["io.modelcontextprotocol/clientCapabilities"]; ok {
					byRequest[r.RequestID] = match.ProfileKey(caps)
				}
			}
		}
	}
	profileOf := func(e *recorder.Event) (string, bool) {
		if e.SessionID != "" {
			p, ok := bySession[e.SessionID]
			return p, ok
		}
		p, ok := byRequest[e.RequestID]
		return p, ok
	}
	profiles := map[string]bool{}
	for i := range events {
		if e := &events[i]; e.Hop == recorder.HopResponse && listMethods[e.Method] != "" {
			if p, ok := profileOf(e); ok {
				profiles[p] = true
			}
		}
	}
	out := map[string]map[string]map[string]json.RawMessage{}
	for profile := range profiles {
		sub := make([]recorder.Event, 0, len(events))
		for i := range events {
			e := &events[i]
			if e.Hop == recorder.HopResponse && listMethods[e.Method] != "" {
				if p, ok := profileOf(e); !ok || p != profile {
					continue
				}
			}
			sub = append(sub, *e)
		}
		out[profile] = BackendLists(sub, sep)
	}
	return out
}
