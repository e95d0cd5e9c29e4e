package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
)

// Argument validation (issue 11.4): every tool's inputSchema, as its backend
// lists it, is compiled once when the catalog is built, and a tools/call
// whose arguments it rejects is answered with a tool execution error
// without calling the backend.
//
// The library is github.com/santhosh-tekuri/jsonschema/v6: maintained,
// pure Go, passes the JSON-Schema-Test-Suite for draft-04 to 2020-12
// (MCP 2025-11-25 makes 2020-12 the default dialect; older servers send
// draft-07), compiles a schema once into a reusable validator, and reports
// errors with their instance location and keyword path.

// RuleSchema is the rule recorded for arguments refused by the tool's
// inputSchema.
const RuleSchema = "arguments:input-schema"

// schemaPrinter renders validation messages; English, like the rest.
var schemaPrinter = message.NewPrinter(language.English)

// noLoader refuses every $ref outside the schema itself: a backend's
// schema must not make the gateway read files or fetch URLs.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("mcptrail: inputSchema refers to %s; only references inside the schema are followed", url)
}

// compileInputSchema compiles one tool's inputSchema; nil without one.
func compileInputSchema(target string, raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("reading the inputSchema of %s: %w", target, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	const loc = "mcptrail:///inputSchema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("adding the inputSchema of %s: %w", target, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compiling the inputSchema of %s: %w", target, err)
	}
	return s, nil
}

// argumentError checks arguments (absent: {}) against s and describes the
// first failure: its JSON pointer, keyword and message; "" when valid.
func argumentError(s *jsonschema.Schema, args json.RawMessage) (msg, keyword string) {
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage(`{}`)
	}
	// jsonrpc.Value builds the same instance as the library's decoder in
	// a third of the time; what it declines (not JSON) gets the library's
	// error text.
	inst, ok := jsonrpc.Value(args)
	if !ok {
		var err error
		if inst, err = jsonschema.UnmarshalJSON(bytes.NewReader(args)); err != nil {
			if errors.Is(err, io.EOF) {
				return "arguments are not JSON", "type"
			}
			return "arguments are not JSON: " + err.Error(), "type"
		}
	}
	err := s.Validate(inst)
	if err == nil {
		return "", ""
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error(), "schema"
	}
	var leaves []string
	keyword = "schema"
	var walk func(*jsonschema.ValidationError)
	walk = func(v *jsonschema.ValidationError) {
		if len(v.Causes) > 0 {
			for _, c := range v.Causes {
				walk(c)
			}
			return
		}
		kw := "schema"
		if p := v.ErrorKind.KeywordPath(); len(p) > 0 {
			kw = p[len(p)-1]
		}
		if len(leaves) == 0 {
			keyword = kw
		}
		leaves = append(leaves, "at "+jsonPointer(v.InstanceLocation)+": keyword "+kw+": "+v.ErrorKind.LocalizedString(schemaPrinter))
	}
	walk(ve)
	if len(leaves) > maxSchemaErrors {
		leaves = append(leaves[:maxSchemaErrors], fmt.Sprintf("and %d more", len(leaves)-maxSchemaErrors))
	}
	return strings.Join(leaves, "; "), keyword
}

// maxSchemaErrors bounds the failures one answer names.
const maxSchemaErrors = 5

// jsonPointer renders an instance location as an RFC 6901 pointer.
func jsonPointer(loc []string) string {
	if len(loc) == 0 {
		return `""`
	}
	var b strings.Builder
	for _, tok := range loc {
		b.WriteByte('/')
		tok = strings.ReplaceAll(tok, "~", "~0")
		b.WriteString(strings.ReplaceAll(tok, "/", "~1"))
	}
	return b.String()
}

// toolErrorResult is a tools/call result with isError: true and one text.
func toolErrorResult(text string) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // the model reads "<" better than "\u003c"
	_ = enc.Encode(text)
	t := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	b := make([]byte, 0, len(t)+64)
	b = append(b, `{"content":[{"type":"text","text":`...)
	b = append(b, t...)
	return append(b, `}],"isError":true}`...)
}

// validateArguments checks a tools/call routed by rt against the tool's
// compiled inputSchema; on a failure it records the refusal (an auth hop
// with rule RuleSchema, no upstream hop) and returns the tool error.
func (c *call) validateArguments(ctx context.Context, rt nameRoute) (json.RawMessage, bool) {
	b := c.g.bs().byName[rt.server]
	if b == nil || !b.cfg.ValidatesArguments(rt.name) {
		return nil, true
	}
	s := c.catalog().schemas[toolKey{rt.server, rt.name}]
	if s == nil {
		return nil, true
	}
	t0 := time.Now()
	msg, _ := argumentError(s, c.params.Get("arguments"))
	if msg == "" {
		return nil, true
	}
	text := "mcptrail: invalid arguments for tool " + c.target + ": " + msg
	c.refuseCheck(ctx, "arguments", RuleSchema, text, t0)
	return toolErrorResult(text), false
}

// refuseCheck records a check's refusal answered as a tool execution
// error: the call's decision becomes denied by rule, an auth hop carries
// the reason, and the outcome is a tool error (what the client sees).
func (c *call) refuseCheck(ctx context.Context, check, rule, reason string, t0 time.Time) {
	c.authResult, c.authRule = auth.ResultDenied, rule
	c.outcome, c.errMsg = recorder.OutcomeToolError, reason
	c.g.metrics.policyDecision(ctx, check, c.authResult, rule)
	c.g.stats.denied.Add(1)
	c.record(recorder.HopAuth, t0, time.Since(t0), func(e *recorder.Event) {
		e.Outcome = recorder.OutcomeDenied
		e.ErrorMessage = reason
	})
}
