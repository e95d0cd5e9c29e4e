package proxy

import (
	"encoding/json"
	"testing"
)

func TestRouteURI(t *testing.T) {
	snap := func(resources, templates []string) *backendSnapshot {
		s := &backendSnapshot{capabilities: map[string]json.RawMessage{"resources": json.RawMessage(`{}`)}}
		for _, u := range resources {
			s.lists[listResources] = append(s.lists[listResources], json.RawMessage(`{"uri":"`+u+`","name":"x"}`))
		}
		for _, u := range templates {
			s.lists[listTemplates] = append(s.lists[listTemplates], json.RawMessage(`{"uriTemplate":"`+u+`","name":"x"}`))
		}
		return s
	}
	one := buildCatalog([]string{"a"}, map[string]*backendSnapshot{"a": snap([]string{"file:///x"}, nil)}, ".", nil)
	two := buildCatalog([]string{"a", "b"}, map[string]*backendSnapshot{
		"a": snap([]string{"file:///x", "same://r"}, []string{"demo://t/{id}"}),
		"b": snap([]string{"git://repo", "same://r"}, nil),
	}, ".", nil)
	for _, tc := range []struct {
		name       string
		c          *catalog
		uri        string
		wantServer string // "" = not found
		wantURI    string
	}{
		{"listed", two, "git://repo", "b", "git://repo"},
		{"colliding, rewritten", two, "mcptrail://a/same://r", "a", "same://r"},
		{"template", two, "demo://t/7", "a", "demo://t/7"},
		{"scheme of one server", two, "git://other", "b", "git://other"},
		{"unknown scheme, two servers", two, "nosuch://x", "", ""},
		{"scheme of two servers", two, "same://other", "", ""},
		{"unknown scheme, one server", one, "nosuch://x", "a", "nosuch://x"},
		{"unlisted, one server", one, "file:///y", "a", "file:///y"},
	} {
		rt, ok := tc.c.routeURI(tc.uri)
		if got := rt.server; !ok && got != "" || ok != (tc.wantServer != "") || got != tc.wantServer || rt.uri != tc.wantURI {
			t.Errorf("%s: routeURI(%q) = %+v, %v; want server %q uri %q", tc.name, tc.uri, rt, ok, tc.wantServer, tc.wantURI)
		}
	}
}
