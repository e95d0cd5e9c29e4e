package proxy

import (
	"strings"
	"testing"
)

// TestHeaderAnnotationError: each 2026-07-28 rule for x-mcp-header
// (server/tools) that a tool definition can break, and what stays valid.
func TestHeaderAnnotationError(t *testing.T) {
	for _, tt := range []struct {
		name, schema, want string // want: part of the error; "" for valid
	}{
		{"no annotation", `{"type":"object","properties":{"q":{"type":"string"}}}`, ""},
		{"valid", `{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer","x-mcp-header":"N"},"b":{"type":["boolean"],"x-mcp-header":"B!#$%&'*+-.^_|~"}}}`, ""},
		{"nested through properties", `{"type":"object","properties":{"o":{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"R"}}}}}`, ""},
		{"a property named x-mcp-header", `{"type":"object","properties":{"x-mcp-header":{"type":"object"}}}`, ""},
		{"annotation-like default value", `{"type":"object","default":{"x-mcp-header":"no good"}}`, ""},
		{"empty", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":""}}}`, "not a non-empty string"},
		{"not a string", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":7}}}`, "not a non-empty string"},
		{"space", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Re gion"}}}`, `has ' '`},
		{"colon", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region:"}}}`, `has ':'`},
		{"CR LF", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"A\r\nB"}}}`, `has '\r'`},
		{"non-ASCII", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Régión"}}}`, `has 'é'`},
		{"escaped key", `{"type":"object","properties":{"r":{"type":"number","x-mcp-\u0068eader":"R"}}}`, `type "number"`},
		{"duplicate, other case", `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"Region"},"b":{"type":"string","x-mcp-header":"REGION"}}}`, "repeats the one at /properties/a"},
		{"number", `{"type":"object","properties":{"r":{"type":"number","x-mcp-header":"R"}}}`, `type "number"`},
		{"object", `{"type":"object","properties":{"r":{"type":"object","x-mcp-header":"R"}}}`, `type "object"`},
		{"array", `{"type":"object","properties":{"r":{"type":"array","x-mcp-header":"R"}}}`, `type "array"`},
		{"nullable", `{"type":"object","properties":{"r":{"type":["string","null"],"x-mcp-header":"R"}}}`, `type ["string","null"]`},
		{"no type", `{"type":"object","properties":{"r":{"x-mcp-header":"R"}}}`, "type null"},
		{"root", `{"type":"string","x-mcp-header":"R"}`, "not on a property reached"},
		{"under items", `{"type":"object","properties":{"l":{"type":"array","items":{"type":"string","x-mcp-header":"L"}}}}`, "/properties/l/items is not on a property reached"},
		{"under anyOf", `{"type":"object","anyOf":[{"properties":{"r":{"type":"string","x-mcp-header":"R"}}}]}`, "/anyOf/0/properties/r is not"},
		{"under if/then", `{"type":"object","then":{"properties":{"r":{"type":"string","x-mcp-header":"R"}}}}`, "/then/properties/r is not"},
		{"under $defs", `{"type":"object","$defs":{"d":{"type":"string","x-mcp-header":"R"}},"properties":{"r":{"$ref":"#/$defs/d"}}}`, "/$defs/d is not"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := headerAnnotationError([]byte(tt.schema))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("headerAnnotationError(%s) = %v, want %q", tt.schema, err, tt.want)
			}
		})
	}
}

// TestHiddenToolProfileCatalog: a tool whose x-mcp-header annotations are
// invalid only in the catalog of the client's capability profile is hidden
// from (and not callable by) that 2026-07-28 client, though the primary
// catalog has no such tool; the request's catalog is the one loaded with
// it (Session.cat), also used for its Mcp-Param-* checks.
func TestHiddenToolProfileCatalog(t *testing.T) {
	g := &Gateway{}
	g.catalog.Store(&catalog{}) // the primary catalog: nothing hidden
	sess := &Session{cat: &catalog{badHeaders: map[string]string{"s.t": "bad annotation"}}}
	sess.setClient(protocol2026, "raw-modern", "9", nil)
	c := &call{g: g, sess: sess}
	if !c.hiddenTool("s.t") {
		t.Error("hiddenTool(s.t) = false, want true: the tool is bad in the client's catalog")
	}
	if c.hiddenTool("s.other") {
		t.Error("hiddenTool(s.other) = true, want false")
	}
	if c.catalog() != sess.cat {
		t.Error("call.catalog() is not the catalog loaded with the request")
	}
}
