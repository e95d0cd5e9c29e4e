package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// maxValueRunes bounds old/new values in text and JUnit output.
const maxValueRunes = 60

// WriteText renders the report for a terminal.
func WriteText(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	t := r.Total
	fmt.Fprintf(ew, "mcptrail replay (%s): %d requests, %d replayed: %d identical, %d changed, %d failed, %d skipped, %d noise\n",
		r.Mode, len(r.Cases), t.Replayed, t.Identical, t.Changed, t.Failed, t.Skipped, t.Noise)
	if t.Reordered > 0 {
		fmt.Fprintf(ew, "  %d answer(s) only list the same named items in another order (low risk, not a regression)\n", t.Reordered)
	}
	for _, a := range r.Against {
		fmt.Fprintf(ew, "  against %s", a.Name)
		if a.Address != "" {
			fmt.Fprintf(ew, " (%s)", a.Address)
		}
		if a.ServerName != "" {
			fmt.Fprintf(ew, ": %s %s", a.ServerName, a.ServerVersion)
		}
		if a.ProtocolVersion != "" {
			fmt.Fprintf(ew, ", protocol %s", a.ProtocolVersion)
		}
		if len(a.Env) > 0 {
			fmt.Fprintf(ew, "; environment %s", strings.Join(a.Env, " "))
		}
		fmt.Fprintln(ew)
	}
	if len(r.Selection) > 0 && string(r.Selection) != "null" && string(r.Selection) != "{}" {
		fmt.Fprintf(ew, "  selection %s\n", r.Selection)
	}
	if r.ConfigHash != "" {
		fmt.Fprintf(ew, "  recorded with gateway config %s\n", r.ConfigHash)
	}
	if len(r.Tools) > 0 {
		fmt.Fprintln(ew)
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TOOL\tREPLAYED\tIDENTICAL\tCHANGED\tFAILED\tSKIPPED\tNOISE\tREC P50\tREC P99\tREPLAY P50\tREPLAY P99")
		for _, s := range append(r.Tools, r.Total) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Tool, s.Replayed, s.Identical, s.Changed, s.Failed, s.Skipped, s.Noise,
				us(s.RecordedP50Us), us(s.RecordedP99Us), us(s.ReplayP50Us), us(s.ReplayP99Us))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Top) > 0 {
		fmt.Fprintln(ew, "\nTop differences")
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		for _, d := range r.Top {
			p := d.Path
			if p == "" {
				p = "/"
			}
			o, n := window(d.Old, d.New)
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t×%d\t%s → %s\n", strings.ToUpper(d.Risk.String()), d.Tool, p, d.Kind, d.Count, o, n)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if r.MoreDiffs > 0 {
			fmt.Fprintf(ew, "  … and %d more difference group(s) (--format json lists every case)\n", r.MoreDiffs)
		}
	}
	if len(r.Noise) > 0 {
		fmt.Fprintln(ew, "\nNoise (differed between two passes of the same requests, so not counted)")
		for _, n := range r.Noise {
			fmt.Fprintf(ew, "  %s  %s  ×%d\n", n.Tool, n.Path, n.Count)
		}
	}
	var failed, skipped []Case
	for _, c := range r.Cases {
		switch c.Status {
		case StatusFailed:
			failed = append(failed, c)
		case StatusSkipped:
			skipped = append(skipped, c)
		}
	}
	for _, g := range []struct {
		title string
		cs    []Case
	}{{"Failed", failed}, {"Skipped", skipped}} {
		if len(g.cs) == 0 {
			continue
		}
		fmt.Fprintf(ew, "\n%s\n", g.title)
		for _, c := range g.cs {
			fmt.Fprintf(ew, "  %s %s: %s\n", c.RequestID, c.Tool(), c.Reason)
		}
	}
	verdict := "PASS"
	if n := r.Regressions(); n > 0 {
		verdict = fmt.Sprintf("FAIL: %d regression(s)", n)
	}
	fmt.Fprintf(ew, "\n%s\n", verdict)
	return ew.err
}

// us formats microseconds compactly; "-" when unknown.
func us(v int64) string {
	if v <= 0 {
		return "-"
	}
	return (time.Duration(v) * time.Microsecond).String()
}

// window renders two differing values so that the difference shows: when
// either is longer than maxValueRunes, both are cut to the same window
// around their first differing character.
func window(old, new string) (string, string) {
	if old == "" || new == "" || utf8.RuneCountInString(old) <= maxValueRunes && utf8.RuneCountInString(new) <= maxValueRunes {
		return short(old), short(new)
	}
	a, b := []rune(old), []rune(new)
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	start := max(0, i-maxValueRunes/3)
	cut := func(r []rune) string {
		if start >= len(r) {
			return "…"
		}
		end := min(len(r), start+maxValueRunes-2)
		s := string(r[start:end])
		if start > 0 {
			s = "…" + s
		}
		if end < len(r) {
			s += "…"
		}
		return s
	}
	return cut(a), cut(b)
}

func short(s string) string {
	if s == "" {
		return "∅"
	}
	if utf8.RuneCountInString(s) <= maxValueRunes {
		return s
	}
	r := []rune(s)
	return string(r[:maxValueRunes-1]) + "…"
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// WriteJSON renders the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("writing JSON report: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

func secs(us int64) string { return fmt.Sprintf("%.6f", float64(us)/1e6) }

// WriteJUnit renders one test suite per tool and one test case per request;
// changed and failed requests are failures, skipped ones are skipped, noise
// is a pass with the removed noise noted in system-out.
func WriteJUnit(w io.Writer, r *Report) error {
	out := junitSuites{Name: "mcptrail replay " + r.Mode}
	idx := map[string]int{}
	var total int64
	suiteUs := map[string]int64{}
	for _, c := range r.Cases {
		tool := c.Tool()
		i, ok := idx[tool]
		if !ok {
			i = len(out.Suites)
			idx[tool] = i
			out.Suites = append(out.Suites, junitSuite{Name: tool})
		}
		s := &out.Suites[i]
		jc := junitCase{Name: strings.TrimSpace(c.RequestID + " " + c.Method), Classname: tool, Time: secs(c.ReplayUs)}
		total += c.ReplayUs
		suiteUs[tool] += c.ReplayUs
		switch c.Status {
		case StatusChanged:
			msg := fmt.Sprintf("%d difference(s), highest risk %s", len(c.Diff.Changes), c.Diff.MaxRisk())
			var body strings.Builder
			for _, ch := range c.Diff.Changes {
				body.WriteString(ch.String())
				body.WriteByte('\n')
			}
			jc.Failure = &junitFailure{Message: msg, Type: "changed", Body: body.String()}
		case StatusFailed:
			jc.Failure = &junitFailure{Message: c.Reason, Type: "failed"}
		case StatusSkipped:
			jc.Skipped = &junitSkipped{Message: c.Reason}
		case StatusNoise:
			jc.SystemOut = fmt.Sprintf("%d noisy difference(s) ignored", c.NoiseChanges)
		case StatusReordered:
			jc.SystemOut = "same items in another order (low risk)"
		}
		s.Tests++
		out.Tests++
		if jc.Failure != nil {
			s.Failures++
			out.Failures++
		}
		if jc.Skipped != nil {
			s.Skipped++
			out.Skipped++
		}
		s.Cases = append(s.Cases, jc)
	}
	for i := range out.Suites {
		out.Suites[i].Time = secs(suiteUs[out.Suites[i].Name])
	}
	out.Time = secs(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("writing JUnit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing JUnit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("writing JUnit report: %w", err)
	}
	return nil
}
