package proxy

import (
	"slices"
	"strings"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// stdioBaseEnv are the variables of the gateway's own environment that every
// stdio backend gets: what a program needs to find its tools, its home and
// its locale. Everything else (the redaction key, the ClickHouse password,
// other backends' tokens) stays in the gateway unless a server names it in
// env_passthrough. Entries ending in "*" are prefixes.
var stdioBaseEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL",
	"LANG", "LANGUAGE", "LC_*", "TZ",
	"TMPDIR", "TMP", "TEMP",
}

// StdioEnv is the environment the gateway gives the stdio backend s when
// its own is environ; replay launches stdio targets with it, so that a
// backend replayed against sees what the recorded one saw.
func StdioEnv(s config.Server, environ []string) []string { return stdioEnv(s, environ) }

// stdioEnv builds a stdio backend's environment from the gateway's own
// (environ, as os.Environ returns it): the base variables, the ones the
// server lists in env_passthrough, then the server's env, which wins.
func stdioEnv(s config.Server, environ []string) []string {
	allowed := func(name string) bool {
		for _, list := range [][]string{stdioBaseEnv, s.EnvPassthrough} {
			for _, p := range list {
				if prefix, ok := strings.CutSuffix(p, "*"); ok {
					if strings.HasPrefix(name, prefix) {
						return true
					}
				} else if name == p {
					return true
				}
			}
		}
		return false
	}
	var env []string
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		if _, set := s.Env[name]; set {
			continue
		}
		if allowed(name) {
			env = append(env, kv)
		}
	}
	names := make([]string, 0, len(s.Env))
	for k := range s.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		env = append(env, k+"="+s.Env[k])
	}
	return env
}
