package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rate is a token bucket: Rate requests per unit on average, Burst at
// once. The zero value is no limit.
type Rate struct {
	// Rate is "<n>/s", "<n>/m" or "<n>/h" (n > 0, may have a fraction:
	// "0.5/s"), e.g. "100/m". Empty: no limit.
	Rate string `yaml:"rate"`
	// Burst is how many requests may pass at once (the bucket's size).
	// Default: n of Rate rounded up, at least 1 ("100/m" → 100).
	Burst int `yaml:"burst"`
}

// Enabled reports whether r limits anything.
func (r Rate) Enabled() bool { return r.Rate != "" }

// PerSecond is the bucket's refill rate in requests per second and its
// burst (defaulted).
func (r Rate) PerSecond() (perSec float64, burst int, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(r.Rate), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not <n>/s, <n>/m or <n>/h", r.Rate)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || !(n > 0) || n > 1e9 {
		return 0, 0, fmt.Errorf("%q: the count must be a number in (0, 1e9]", r.Rate)
	}
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("%q: the unit must be s, m or h", r.Rate)
	}
	burst = r.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(n)))
	}
	if burst < 0 {
		return 0, 0, fmt.Errorf("burst %d is negative", r.Burst)
	}
	perSec = n / per.Seconds()
	if !(perSec > 0) {
		return 0, 0, fmt.Errorf("%q: the rate is too small", r.Rate)
	}
	return perSec, burst, nil
}

// Priority sorts callers into priority classes for the per-tool
// concurrency queues (servers[].tools.<name>.max_concurrency): a waiting
// interactive call always gets the next free slot before any waiting
// background call. Everyone is interactive unless named here.
type Priority struct {
	// BackgroundRoles are roles (auth.oauth role bindings) whose calls
	// are background. Default none.
	BackgroundRoles []string `yaml:"background_roles"`
	// BackgroundPrincipals are principals (static token principals or
	// JWT subjects as mapped) whose calls are background. Default none.
	BackgroundPrincipals []string `yaml:"background_principals"`
}

func (v *validator) rate(key string, r Rate) {
	if !r.Enabled() {
		if r.Burst != 0 {
			v.add(key+".burst", "is set but %s.rate is not", key)
		}
		return
	}
	if _, _, err := r.PerSecond(); err != nil {
		v.add(key, "%v", err)
	}
}

// validateRateLimits checks limits.rate_* and the per-tool limits.
func (c *Config) validateRateLimits(v *validator) {
	v.rate("limits.rate_per_principal", c.Limits.RatePerPrincipal)
	v.rate("limits.rate_per_tool", c.Limits.RatePerTool)
	for i, s := range c.Servers {
		names := make([]string, 0, len(s.Tools))
		for n := range s.Tools {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := s.Tools[n]
			key := fmt.Sprintf("servers[%d].tools.%s", i, n)
			v.rate(key+".rate", t.Rate)
			v.nonNegative(key+".timeout", t.Timeout)
			v.nonNegativeInt(key+".max_concurrency", t.MaxConcurrency)
			v.nonNegativeInt(key+".queue_size", t.QueueSize)
			if t.QueueSize > 0 && t.MaxConcurrency == 0 {
				v.add(key+".queue_size", "is set but %s.max_concurrency is not", key)
			}
		}
	}
}

// DefaultToolQueueSize is a tool's wait queue when max_concurrency is set
// and queue_size is not.
const DefaultToolQueueSize = 100
