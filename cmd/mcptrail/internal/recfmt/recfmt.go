// Package recfmt is how mcptrail presents recordings, shared by the
// command line (trace, calls, audit) and the web console so that both say
// the same thing: time windows (--since/--until), durations and sizes, the
// one-line detail of a hop, and the audit export formats (CSV, JSON lines).
package recfmt

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// ParseWhen parses a since/until value named name in errors: a duration
// back from now ("90m", "1h", "90d", "1d12h"), an RFC 3339 time or a date
// (UTC). Empty is the zero time.
func ParseWhen(name, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := config.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want a duration back from now (30m, 1h, 90d) or a time (2026-11-24, 2026-11-24T10:00:00Z)", name, s)
}

// ParseWindow parses since and until (named sinceName and untilName in
// errors); until must come after since, and since may not be in the future.
func ParseWindow(sinceName, since, untilName, until string, now time.Time) (time.Time, time.Time, error) {
	s, err := ParseWhen(sinceName, since, now)
	if err != nil {
		return s, s, err
	}
	u, err := ParseWhen(untilName, until, now)
	if err != nil {
		return s, u, err
	}
	if !u.IsZero() && !u.After(s) {
		return s, u, fmt.Errorf("%s %s is not after %s %s", untilName, u.Format(time.RFC3339), sinceName, s.Format(time.RFC3339))
	}
	if s.After(now) {
		return s, u, fmt.Errorf("%s %s is in the future", sinceName, s.Format(time.RFC3339))
	}
	return s, u, nil
}

// OutcomeText is the outcome of a hop, with the JSON-RPC error code.
func OutcomeText(e *recorder.Event) string {
	switch e.Outcome {
	case recorder.OutcomeJSONRPCError:
		return fmt.Sprintf("%s %d", e.Outcome, e.ErrorCode)
	default:
		return e.Outcome.String()
	}
}

// HopDetail is the decision or fact a hop is about.
func HopDetail(e *recorder.Event) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	switch e.Hop {
	case recorder.HopInbound:
		add(strings.TrimSpace(e.Method + " " + e.Target))
		if e.RPCID != "" {
			add("id " + e.RPCID)
		}
		if e.RequestBytes > 0 {
			add(Bytes(e.RequestBytes) + " in")
		}
	case recorder.HopAuth:
		d := e.AuthDecision
		if d == "" {
			d = "none"
		}
		if e.Principal != "" {
			d += " for " + e.Principal
		}
		if e.AuthRule != "" {
			d += " by " + e.AuthRule
		}
		add(d)
	case recorder.HopRoute:
		if e.RouteRule != "" {
			add("rule " + e.RouteRule)
		}
		if e.Backend != "" {
			add("→ " + e.Backend)
		}
	case recorder.HopUpstream:
		if e.Attempt > 0 {
			add(fmt.Sprintf("attempt %d", e.Attempt))
		}
		if e.Fallback {
			add("fallback")
		}
		if e.UpstreamVersion != "" {
			add("protocol " + e.UpstreamVersion)
		}
		if e.QueueUs > 0 {
			add("queued " + Duration(time.Duration(e.QueueUs)*time.Microsecond))
		}
		if e.TTFBUs > 0 {
			add("ttfb " + Duration(time.Duration(e.TTFBUs)*time.Microsecond))
		}
		if e.ResponseBytes > 0 {
			add(Bytes(e.ResponseBytes) + " back")
		}
	case recorder.HopResponse:
		if e.ErrorCode != 0 {
			add(fmt.Sprintf("code %d", e.ErrorCode))
		}
		if e.ResponseBytes > 0 {
			add(Bytes(e.ResponseBytes) + " out")
		}
	case recorder.HopNotification, recorder.HopServerRequest:
		add(e.Method)
	}
	if e.RedactionCount > 0 {
		add(fmt.Sprintf("%d redacted", e.RedactionCount))
	}
	return strings.Join(parts, ", ")
}

// Duration prints a duration with three significant figures: 850µs, 12.3ms, 1.25s.
func Duration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return "0µs"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', decimals(float64(d)/float64(time.Millisecond)), 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', decimals(d.Seconds()), 64) + "s"
	default:
		return d.Round(time.Second).String()
	}
}

func decimals(v float64) int {
	switch {
	case v < 10:
		return 2
	case v < 100:
		return 1
	default:
		return 0
	}
}

// Bytes prints a size in B, KiB or MiB.
func Bytes(n uint32) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fKiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
}
