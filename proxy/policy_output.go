package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Output filtering (issue 11.5): a tools/call's result or error text passes
// the tool's filters before the client sees it: secret redaction with the
// recorder's rules (redact or block), a size cap, deny patterns. A filtered
// answer is marked in _meta and recorded.

// MetaFiltered is the _meta key of a filtered answer: an object naming the
// filter ("redact", "block", "max_bytes", "deny_patterns[i]") and the
// rule (config key) that applied it.
const MetaFiltered = "mcptrail.dev/filtered"

// JSONRedactor is the part of the recorder's redactor (recorder/redact)
// output filtering needs: redact a JSON document keeping its structure,
// and a text.
type JSONRedactor interface {
	JSON(b []byte) (out []byte, count int)
	String(s string) (string, int)
}

// outputFilter is a compiled config.OutputFilter.
type outputFilter struct {
	rule     string // config key, e.g. "servers[0].tools.echo.output"
	redact   string
	maxBytes int
	deny     []*regexp.Regexp
}

func (f *outputFilter) active() bool {
	return f.redact == config.OutputRedactRedact || f.redact == config.OutputRedactBlock || f.maxBytes > 0 || len(f.deny) > 0
}

// outputFilters are the filters of each server (default) and tool.
type outputFilters struct {
	servers map[string]*outputFilter
	tools   map[toolKey]*outputFilter
}

func (o *outputFilters) lookup(server, tool string) *outputFilter {
	if f, ok := o.tools[toolKey{server, tool}]; ok {
		return f
	}
	return o.servers[server]
}

// compileOutputFilters compiles every server's and tool's output filter;
// redaction needs the recorder's redactor.
func compileOutputFilters(servers []config.Server, red JSONRedactor) (*outputFilters, error) {
	o := &outputFilters{servers: map[string]*outputFilter{}, tools: map[toolKey]*outputFilter{}}
	compile := func(key string, cf config.OutputFilter) (*outputFilter, error) {
		f := &outputFilter{rule: key, redact: cf.Redact, maxBytes: cf.MaxBytes}
		for i, p := range cf.DenyPatterns {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("%s.deny_patterns[%d]: %w", key, i, err)
			}
			f.deny = append(f.deny, re)
		}
		if f.redact == config.OutputRedactRedact || f.redact == config.OutputRedactBlock {
			if red == nil {
				return nil, fmt.Errorf("%s.redact: %s needs the recorder's redaction rules (recorder.redaction)", key, f.redact)
			}
		}
		if !f.active() {
			return nil, nil
		}
		return f, nil
	}
	for i, s := range servers {
		key := fmt.Sprintf("servers[%d]", i)
		f, err := compile(key+".output", s.Output)
		if err != nil {
			return nil, err
		}
		if f != nil {
			o.servers[s.Name] = f
		}
		for tool := range s.Tools {
			f, err := compile(key+".tools."+tool+".output", s.OutputFor(tool))
			if err != nil {
				return nil, err
			}
			o.tools[toolKey{s.Name, tool}] = f // nil: this tool is not filtered
		}
	}
	return o, nil
}

// filterOutput runs the output filter of the tool rt routes to over the
// answer the backend gave.
// outputRedactor is Options.OutputRedactor, else Options.Redactor when it
// can redact JSON.
func outputRedactor(o Options) JSONRedactor {
	if o.OutputRedactor != nil {
		return o.OutputRedactor
	}
	if r, ok := o.Redactor.(JSONRedactor); ok {
		return r
	}
	return nil
}

func (c *call) filterOutput(ctx context.Context, rt nameRoute, m jsonrpc.Message) jsonrpc.Message {
	f := c.ps.outFilters.lookup(rt.server, rt.name)
	if f == nil || (m.Result == nil && m.Error == nil) {
		return m
	}
	t0 := time.Now()
	if m.Error != nil {
		msg, what := f.text(c.g.outRedactor, m.Error.Message)
		if what == "" {
			return m
		}
		e := *m.Error
		e.Message = msg
		e.Data = nil // may hold what the message did
		m.Error = &e
		c.errMsg = msg
		c.recordFiltered(ctx, f, what, "error text "+what, t0)
		return m
	}
	res, what, reason := f.result(c.g.outRedactor, m.Result)
	if what == "" {
		return m
	}
	if reason != "" { // withheld
		res = toolErrorResult("mcptrail: result of tool " + c.target + " withheld: " + reason)
		c.outcome, c.errMsg = recorder.OutcomeToolError, reason
	}
	m.Result = markFiltered(res, what, f.rule)
	c.recordFiltered(ctx, f, what, reason, t0)
	return m
}

// result filters a result: what names the filter that changed it ("" when
// none did); reason is set when the result is withheld.
func (f *outputFilter) result(red JSONRedactor, res json.RawMessage) (out json.RawMessage, what, reason string) {
	if f.maxBytes > 0 && len(res) > f.maxBytes {
		return nil, "max_bytes", fmt.Sprintf("it is %d bytes, over the cap of %d (%s.max_bytes)", len(res), f.maxBytes, f.rule)
	}
	for i, re := range f.deny {
		if re.Match(res) {
			return nil, "deny_patterns[" + strconv.Itoa(i) + "]", fmt.Sprintf("it matches %s.deny_patterns[%d]", f.rule, i)
		}
	}
	if f.redact == config.OutputRedactRedact || f.redact == config.OutputRedactBlock {
		red, n := red.JSON(res)
		if n > 0 {
			if f.redact == config.OutputRedactBlock {
				return nil, "block", fmt.Sprintf("it contains %d secret(s) by the redaction rules (%s.redact: block)", n, f.rule)
			}
			return red, "redact", ""
		}
	}
	return res, "", ""
}

// text filters an error text the same way.
func (f *outputFilter) text(red JSONRedactor, s string) (out, what string) {
	for i, re := range f.deny {
		if re.MatchString(s) {
			return fmt.Sprintf("mcptrail: error text withheld: it matches %s.deny_patterns[%d]", f.rule, i), "deny_patterns[" + strconv.Itoa(i) + "]"
		}
	}
	if f.redact == config.OutputRedactRedact || f.redact == config.OutputRedactBlock {
		r, n := red.String(s)
		if n > 0 {
			if f.redact == config.OutputRedactBlock {
				return fmt.Sprintf("mcptrail: error text withheld: it contains %d secret(s) by the redaction rules", n), "block"
			}
			return r, "redact"
		}
	}
	return s, ""
}

// markFiltered sets _meta["mcptrail.dev/filtered"] on a result.
func markFiltered(res json.RawMessage, what, rule string) json.RawMessage {
	o, err := jsonrpc.ParseObject(res)
	if err != nil {
		return res
	}
	meta, err := jsonrpc.ParseObject(o.Get("_meta"))
	if err != nil || meta == nil {
		meta = &jsonrpc.Object{}
	}
	mark := &jsonrpc.Object{}
	mark.SetString("filter", what)
	mark.SetString("rule", rule)
	meta.Set(MetaFiltered, mark.Marshal())
	o.Set("_meta", meta.Marshal())
	return o.Marshal()
}

// recordFiltered records a filter's decision: an auth hop with decision
// "filtered", the filter's rule and the reason; the response hop carries
// the attribute mcptrail.filtered.
func (c *call) recordFiltered(ctx context.Context, f *outputFilter, what, reason string, t0 time.Time) {
	rule := f.rule + "." + what
	c.g.metrics.policyDecision(ctx, "output", "filtered", f.rule)
	c.attrs = append(c.attrs, recorder.Attr{Key: "mcptrail.filtered", Value: rule})
	c.record(recorder.HopAuth, t0, time.Since(t0), func(e *recorder.Event) {
		e.AuthDecision, e.AuthRule = "filtered", rule
		e.ErrorMessage = reason
	})
}
