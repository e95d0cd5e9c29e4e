package recfmt

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

// AuditHeader names the columns, in order.
var AuditHeader = []string{"time", "principal", "method", "target", "server", "decision", "rule", "outcome", "error_code", "request_id", "session_id", "trace_id", "client", "duration_us", "roles"}

// AuditRecord is one row as the CSV fields of Header.
func AuditRecord(r clickhouse.AuditRow) []string {
	return []string{r.Time.UTC().Format(time.RFC3339Nano), r.Principal, r.Method, r.Target, r.Server, r.Decision, r.Rule, r.Outcome.String(),
		strconv.Itoa(int(r.ErrorCode)), r.RequestID, r.SessionID, r.TraceID, r.ClientName, strconv.FormatInt(r.Duration.Microseconds(), 10),
		strings.Join(r.Roles, ",")}
}

// AuditWriter streams rows in one format; nothing is held beyond a row.
type AuditWriter struct {
	// Write writes one row.
	Write func(clickhouse.AuditRow) error
	// Close flushes what is buffered.
	Close func() error
}

// AuditFormats are the formats NewAuditWriter accepts.
var AuditFormats = []string{"csv", "jsonl"}

// NewAuditWriter returns a Writer of format (csv or jsonl) to w. CSV starts with the
// header and is flushed every 1000 rows, its cells neutralised against formula
// injection (neutraliseFormulas); JSON lines are written row by row, as they are.
func NewAuditWriter(w io.Writer, format string) (*AuditWriter, error) {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(AuditHeader); err != nil {
			return nil, fmt.Errorf("writing audit CSV: %w", err)
		}
		n := 0
		return &AuditWriter{
			Write: func(r clickhouse.AuditRow) error {
				if err := cw.Write(neutraliseFormulas(AuditRecord(r))); err != nil {
					return fmt.Errorf("writing audit CSV: %w", err)
				}
				if n++; n%1000 == 0 {
					cw.Flush()
					return cw.Error()
				}
				return nil
			},
			Close: func() error { cw.Flush(); return cw.Error() },
		}, nil
	case "jsonl":
		enc := json.NewEncoder(w)
		return &AuditWriter{
			Write: func(r clickhouse.AuditRow) error {
				m := make(map[string]any, len(AuditHeader))
				for i, v := range AuditRecord(r) {
					m[AuditHeader[i]] = v
				}
				m["error_code"], m["duration_us"] = r.ErrorCode, r.Duration.Microseconds()
				m["roles"] = append([]string{}, r.Roles...)
				if err := enc.Encode(m); err != nil {
					return fmt.Errorf("writing audit JSON lines: %w", err)
				}
				return nil
			},
			Close: func() error { return nil },
		}, nil
	}
	return nil, fmt.Errorf("audit format %q: want csv or jsonl", format)
}

// neutraliseFormulas prefixes with ' every cell a spreadsheet would run as
// a formula: one starting with =, +, -, @, a tab or a carriage return
// (OWASP, CSV injection). Principals, tools, client names and rules are
// chosen by clients and backends; a row must not run code in the
// spreadsheet of whoever opens the export. Integers (error codes) are
// numbers, not formulas, and stay as they are. It rewrites rec in place.
func neutraliseFormulas(rec []string) []string {
	for i, v := range rec {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) && !isInteger(v) {
			rec[i] = "'" + v
		}
	}
	return rec
}

func isInteger(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil && !strings.HasPrefix(s, "+")
}

// CallJSON is a call as `mcptrail calls --json` and the console's live
// tail (calls.json) write it.
type CallJSON struct {
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id"`
	SessionID    string    `json:"session_id,omitempty"`
	TraceID      string    `json:"trace_id,omitempty"`
	Principal    string    `json:"principal,omitempty"`
	Method       string    `json:"method"`
	Server       string    `json:"server,omitempty"`
	Target       string    `json:"target,omitempty"`
	Outcome      string    `json:"outcome"`
	ErrorCode    int32     `json:"error_code,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`
	DurationUs   int64     `json:"duration_us"`
}

// NewCallJSON converts a call.
func NewCallJSON(c clickhouse.Call) CallJSON {
	return CallJSON{c.Time.UTC(), c.RequestID, c.SessionID, c.TraceID, c.Principal, c.Method, c.Server, c.Target,
		c.Outcome.String(), c.ErrorCode, c.ErrorMessage, c.Duration.Microseconds()}
}
