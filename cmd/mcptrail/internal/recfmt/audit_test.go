package recfmt

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

// TestAuditCSVNeutralisesFormulas: a cell a client or a backend chose
// (principal, tool, client name, rule…) that a spreadsheet would run as a
// formula is written with a leading ' (OWASP CSV injection); numbers the
// gateway writes stay numbers. Fails before the fix: the cells were
// written as they are.
func TestAuditCSVNeutralisesFormulas(t *testing.T) {
	for _, tt := range []struct {
		name, value, want string
	}{
		{"equals", `=HYPERLINK("http://evil.example","x")`, `'=HYPERLINK("http://evil.example","x")`},
		{"plus", "+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"},
		{"minus", "-2+3", "'-2+3"},
		{"at", "@SUM(1+1)", "'@SUM(1+1)"},
		{"tab", "\t=1", "'\t=1"},
		{"carriage return", "\r=1", "'\r=1"},
		{"plain", "alice", "alice"},
		{"inner equals", "a=b", "a=b"},
		{"empty", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row := clickhouse.AuditRow{Time: time.Unix(1_800_000_000, 0), Principal: tt.value, Method: "tools/call", Target: tt.value,
				Server: tt.value, Decision: "denied", Rule: tt.value, ErrorCode: -32001, RequestID: "r1", ClientName: tt.value,
				Duration: 1500 * time.Microsecond, Roles: []string{tt.value}}
			var b bytes.Buffer
			w, err := NewAuditWriter(&b, "csv")
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(row); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
			if err != nil || len(recs) != 2 {
				t.Fatalf("CSV %q: %v, %d records", b.String(), err, len(recs))
			}
			got := map[string]string{}
			for i, h := range AuditHeader {
				got[h] = recs[1][i]
			}
			for _, col := range []string{"principal", "target", "server", "rule", "client", "roles"} {
				if got[col] != tt.want {
					t.Errorf("%s = %q, want %q", col, got[col], tt.want)
				}
			}
			if got["error_code"] != "-32001" || got["duration_us"] != "1500" {
				t.Errorf("error_code %q, duration_us %q: want the numbers -32001 and 1500 as they are", got["error_code"], got["duration_us"])
			}
		})
	}
}
