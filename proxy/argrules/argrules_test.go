package argrules_test

import (
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/argrules"
)

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		deny       bool
		in         argrules.Input
		refuse     bool
		reason     string
	}{
		{"deny outside /srv", `!args.path.startsWith("/srv/")`, true, argrules.Input{Args: map[string]any{"path": "/etc/passwd"}}, true, "denied by rule r"},
		{"deny lets /srv through", `!args.path.startsWith("/srv/")`, true, argrules.Input{Args: map[string]any{"path": "/srv/a"}}, false, ""},
		{"missing key fails closed", `!args.path.startsWith("/srv/")`, true, argrules.Input{}, true, "could not be evaluated"},
		{"allow by role", `"admin" in roles || args.a < 100.0`, false, argrules.Input{Args: map[string]any{"a": 500.0}, Roles: []string{"admin"}}, false, ""},
		{"allow refuses", `"admin" in roles || args.a < 100.0`, false, argrules.Input{Args: map[string]any{"a": 500.0}}, true, "not allowed by rule r"},
		{"principal and tool", `principal == "ci" && tool == "delete"`, true, argrules.Input{Principal: "ci", Tool: "delete"}, true, "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := argrules.Compile("r", tc.expr, tc.deny, "")
			if err != nil {
				t.Fatal(err)
			}
			refuse, reason := r.Refuses(&tc.in)
			if refuse != tc.refuse || !strings.Contains(reason, tc.reason) {
				t.Errorf("Refuses = %v %q, want %v %q", refuse, reason, tc.refuse, tc.reason)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for expr, want := range map[string]string{
		`args.path +`:   "Syntax error",
		`args.path`:     "want bool",
		`nosuch == "x"`: "undeclared reference",
	} {
		if _, err := argrules.Compile("r", expr, true, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q) = %v, want an error with %q", expr, err, want)
		}
	}
}
