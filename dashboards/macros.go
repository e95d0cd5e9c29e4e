package dashboards

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Macros lists the ClickHouse plugin macros the generated SQL uses, with
// what each expands to. Each expansion runs on ClickHouse 18.16 and 25.x;
// $__timeInterval (toStartOfInterval) is deliberately absent.
var Macros = map[string]string{
	"$__timeFilter(col)":          "col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)",
	"$__fromTime":                 "toDateTime(<from s>)",
	"$__toTime":                   "toDateTime(<to s>)",
	"$__interval_s":               "the panel's bucket width in whole seconds, at least 1",
	"$__conditionalAll(cond, $v)": "1=1 when variable v is All, else cond",
}

// Window is the concrete time range and bucket width a panel is queried
// with, as Grafana would send them.
type Window struct {
	From, To time.Time
	// Interval is the panel's bucket width ($__interval_s); below 1s counts as 1s.
	Interval time.Duration
}

var (
	macroRe    = regexp.MustCompile(`\$__(\w+)`)
	varRe      = regexp.MustCompile(`\$\{(\w+):singlequote\}`)
	condAllTok = "$__conditionalAll("
)

// Expand returns sql with template variables and plugin macros replaced the
// way Grafana's front end and the ClickHouse plugin's back end replace them
// for window w. vars holds the selected values of each template variable; a
// missing or empty entry means "All". Only the macros in Macros and variables
// written ${name:singlequote} are understood; anything else is an error, so a
// panel cannot use a macro whose expansion was never tested.
func Expand(sql string, w Window, vars map[string][]string) (string, error) {
	// Front end, step 1: $__conditionalAll(cond, $v) becomes 1=1 for All.
	for {
		i := strings.LastIndex(sql, condAllTok)
		if i < 0 {
			break
		}
		args, end, err := macroArgs(sql, i+len(condAllTok))
		if err != nil {
			return "", err
		}
		if len(args) != 2 {
			return "", fmt.Errorf("$__conditionalAll at offset %d: %d arguments, want 2", i, len(args))
		}
		name := strings.TrimPrefix(strings.Trim(strings.TrimSpace(args[1]), "${}"), "$")
		phrase := args[0]
		if len(vars[name]) == 0 {
			phrase = "1=1"
		}
		sql = sql[:i] + phrase + sql[end:]
	}
	// Front end, step 2: template variables.
	var verr error
	sql = varRe.ReplaceAllStringFunc(sql, func(m string) string {
		name := varRe.FindStringSubmatch(m)[1]
		vals := vars[name]
		if len(vals) == 0 {
			verr = fmt.Errorf("variable %s is All but used outside $__conditionalAll", name)
			return m
		}
		q := make([]string, len(vals))
		for i, v := range vals {
			q[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
		}
		return strings.Join(q, ",")
	})
	if verr != nil {
		return "", verr
	}
	// Back end: the plugin's macros.
	from, to := w.From.Unix(), w.To.Unix()
	sec := int64(math.Max(w.Interval.Seconds(), 1))
	var out strings.Builder
	for {
		loc := macroRe.FindStringSubmatchIndex(sql)
		if loc == nil {
			out.WriteString(sql)
			break
		}
		out.WriteString(sql[:loc[0]])
		name := sql[loc[2]:loc[3]]
		rest := sql[loc[1]:]
		switch name {
		case "timeFilter":
			if !strings.HasPrefix(rest, "(") {
				return "", fmt.Errorf("$__timeFilter without a column")
			}
			args, end, err := macroArgs(rest, 1)
			if err != nil {
				return "", err
			}
			if len(args) != 1 {
				return "", fmt.Errorf("$__timeFilter: %d arguments, want 1", len(args))
			}
			col := strings.TrimSpace(args[0])
			fmt.Fprintf(&out, "%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, from, col, to)
			rest = rest[end:]
		case "fromTime":
			fmt.Fprintf(&out, "toDateTime(%d)", from)
		case "toTime":
			fmt.Fprintf(&out, "toDateTime(%d)", to)
		case "interval_s":
			fmt.Fprintf(&out, "%d", sec)
		default:
			return "", fmt.Errorf("macro $__%s is not one the dashboards may use", name)
		}
		sql = rest
	}
	expanded := out.String()
	if i := strings.IndexByte(expanded, '$'); i >= 0 {
		return "", fmt.Errorf("unexpanded reference at %q", expanded[i:min(len(expanded), i+30)])
	}
	return expanded, nil
}

// macroArgs splits the arguments of a macro call whose opening parenthesis
// is just before start, at top-level commas, as the plugin does. end is the
// offset just past the closing parenthesis.
func macroArgs(s string, start int) (args []string, end int, err error) {
	depth, last := 1, start
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return append(args, s[last:i]), i + 1, nil
			}
		case ',':
			if depth == 1 {
				args = append(args, s[last:i])
				last = i + 1
			}
		}
	}
	return nil, 0, fmt.Errorf("macro call at offset %d is not closed", start)
}
