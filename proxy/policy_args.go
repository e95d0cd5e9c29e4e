package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mcptrail/mcptrail/proxy/argrules"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// Argument rules (issue 11.4): CEL expressions per tool, compiled when the
// gateway is built from its config, evaluated on each tools/call after the
// schema check; a refusal is a tool execution error and the backend is
// never called.

// toolKey names a tool as its server knows it.
type toolKey struct{ server, tool string }

// compileArgRules compiles every servers[].tools.<tool>.argument_rules;
// errors name the config key.
func compileArgRules(servers []config.Server) (map[toolKey][]*argrules.Rule, error) {
	out := map[toolKey][]*argrules.Rule{}
	for i, s := range servers {
		for tool, ts := range s.Tools {
			for j, r := range ts.ArgumentRules {
				key := fmt.Sprintf("servers[%d].tools.%s.argument_rules[%d]", i, tool, j)
				rule, err := r.Compile(key)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				k := toolKey{s.Name, tool}
				out[k] = append(out[k], rule)
			}
		}
	}
	return out, nil
}

// checkArgumentRules evaluates the argument rules of the tool rt routes
// to; on a refusal it records it (an auth hop denied by the rule's key, no
// upstream hop) and returns the tool error.
func (c *call) checkArgumentRules(ctx context.Context, rt nameRoute) (json.RawMessage, bool) {
	rules := c.ps.argRules[toolKey{rt.server, rt.name}]
	if len(rules) == 0 {
		return nil, true
	}
	t0 := time.Now()
	in := argrules.Input{Tool: rt.name}
	if c.princ != nil {
		in.Principal, in.Roles = c.princ.Name, c.princ.Roles
	} else if !c.ps.auth.Enabled() {
		in.Principal = "anonymous" // as recorded
	}
	if raw := c.params.Get("arguments"); len(raw) > 0 {
		if err := json.Unmarshal(raw, &in.Args); err != nil {
			in.Args = nil // not an object: every rule on args fails closed
		}
	}
	for _, r := range rules {
		if refuse, reason := r.Refuses(&in); refuse {
			text := "mcptrail: tool " + c.target + " refused: " + reason
			c.refuseCheck(ctx, "argument-rules", r.Name, text, t0)
			return toolErrorResult(text), false
		}
	}
	return nil, true
}
