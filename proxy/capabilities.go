package proxy

import (
	"encoding/json"
	"strings"

	"github.com/mcptrail/mcptrail/proxy/auth"
)

// capabilities is what the gateway offers clients: the union of its
// backends' capabilities, as each declared them at its last handshake. A
// backend that never connected is assumed to serve tools, prompts and
// resources, so that clients still list them once it comes up (the gateway
// announces that with list_changed).
func (g *Gateway) capabilities() map[string]json.RawMessage {
	bs := g.bs()
	out := map[string]json.RawMessage{}
	for _, name := range bs.order {
		var caps map[string]json.RawMessage
		if p := bs.byName[name].profile.Load(); p != nil {
			caps = p.capabilities
		} else {
			caps = unknownBackendCapabilities
		}
		for k, v := range caps {
			out[k] = mergeCapability(out[k], v)
		}
	}
	return out
}

var unknownBackendCapabilities = map[string]json.RawMessage{
	"tools":     json.RawMessage(`{"listChanged":true}`),
	"prompts":   json.RawMessage(`{"listChanged":true}`),
	"resources": json.RawMessage(`{"listChanged":true}`),
}

// mergeCapability unions two capability values: objects member by member
// (recursively), true over false; otherwise the first one seen wins.
func mergeCapability(a, b json.RawMessage) json.RawMessage {
	if a == nil {
		return b
	}
	var ao, bo map[string]json.RawMessage
	if json.Unmarshal(a, &ao) != nil || json.Unmarshal(b, &bo) != nil || ao == nil || bo == nil {
		if string(b) == "true" {
			return b
		}
		return a
	}
	for k, v := range bo {
		ao[k] = mergeCapability(ao[k], v)
	}
	out, err := json.Marshal(ao)
	if err != nil {
		return a
	}
	return out
}

// instructions merges the instructions of the backends principal may use
// (they name a backend's tools), each under a heading that names its
// namespace (tools and prompts there are <namespace><sep><name>). A backend
// mounted without a namespace that is the only one with instructions has
// them relayed unchanged.
func (g *Gateway) instructions(principal *auth.Principal) string {
	bs := g.bs()
	type part struct{ server, text string }
	var parts []part
	for _, name := range bs.order {
		if g.ps().auth.Enabled() && !principal.MayUse(name, g.sep()) {
			continue
		}
		if p := bs.byName[name].profile.Load(); p != nil && strings.TrimSpace(p.instructions) != "" {
			parts = append(parts, part{name, p.instructions})
		}
	}
	if len(parts) == 1 && bs.byName[parts[0].server].namespace() == "" {
		return parts[0].text
	}
	var sb strings.Builder
	for i, p := range parts {
		if i > 0 {
			sb.WriteString("\n\n")
		}
		if ns := bs.byName[p.server].namespace(); ns != "" {
			sb.WriteString("## Server " + p.server + ": its tools and prompts are named " + ns + g.sep() + "<name>\n\n")
		} else {
			sb.WriteString("## Server " + p.server + "\n\n")
		}
		sb.WriteString(strings.TrimRight(p.text, "\n"))
	}
	return sb.String()
}
