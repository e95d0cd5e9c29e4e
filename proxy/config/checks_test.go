package config_test

import (
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestArgumentRulesCompiledAtLoad: a rule that does not compile fails the
// load, and the error names its config key.
func TestArgumentRulesCompiledAtLoad(t *testing.T) {
	for _, tc := range []struct{ name, rule, want string }{
		{"syntax", `deny: 'args.path +'`, `servers[0].tools.read.argument_rules[0]: deny: ERROR`},
		{"not bool", `allow: 'args.path'`, `servers[0].tools.read.argument_rules[0]: allow: "args.path" is of type dyn, want bool`},
		{"both", "deny: 'true'\n            allow: 'true'", `servers[0].tools.read.argument_rules[0]: exactly one of deny and allow`},
		{"undeclared", `deny: 'path == "/"'`, `undeclared reference to 'path'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := `
servers:
  - name: files
    command: files-server
    tools:
      read:
        argument_rules:
          - deny: '!args.path.startsWith("/srv/")'
          - ` + tc.rule + `
`
			y = strings.Replace(y, "argument_rules[0]", "argument_rules[1]", 1)
			_, err := config.Parse([]byte(y), "test.yaml")
			want := strings.Replace(tc.want, "argument_rules[0]", "argument_rules[1]", 1)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Parse: %v\nwant an error containing %q", err, want)
			}
		})
	}
	good := `
servers:
  - name: files
    command: files-server
    tools:
      read:
        argument_rules:
          - deny: '!args.path.startsWith("/srv/")'
            message: only /srv/ may be read
`
	c, err := config.Parse([]byte(good), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Servers[0].Tools["read"].ArgumentRules[0]; r.Message != "only /srv/ may be read" {
		t.Errorf("rule = %+v", r)
	}
}
