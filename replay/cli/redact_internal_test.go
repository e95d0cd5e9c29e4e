package cli

import (
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

// TestRedactResults: a secret a live backend answered with during a replay
// (in a difference or an error) is redacted before the results are stored.
func TestRedactResults(t *testing.T) {
	secret := "sk_live_" + strings.Repeat("S", 24)
	in := []clickhouse.ReplayResult{
		{Tool: "crm.echo", Diff: `[{"path":"/content/0/text","old":"a","new":"{\"password\":\"pw-123456\"}"}]`},
		{Tool: "crm.x", Error: "backend said: key " + secret},
	}
	out, err := redactResults(in, []string{"MCPTRAIL_REDACTION_KEY=k"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		for _, s := range []string{"pw-123456", secret} {
			if strings.Contains(r.Diff+r.Error, s) {
				t.Errorf("stored result %+v keeps %s", r, s)
			}
		}
	}
	if out[0].Tool != "crm.echo" || !strings.Contains(out[0].Diff, `/content/0/text`) {
		t.Errorf("redaction changed what holds no secret: %+v", out[0])
	}
}
