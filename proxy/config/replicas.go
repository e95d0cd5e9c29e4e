package config

import (
	"net"
	"time"

	"github.com/mcptrail/mcptrail/proxy/redisstate"
)

// Defaults of the replica settings.
const (
	DefaultSessionLifetime = 24 * time.Hour
	// DefaultMaxRevoked and DefaultMaxRevokedPerPrincipal bound the
	// DELETEd sealed sessions a replica remembers (about 100 bytes each).
	DefaultMaxRevoked             = 100_000
	DefaultMaxRevokedPerPrincipal = 10_000
	DefaultRedisPrefix            = "mcptrail:"
	DefaultRedisTimeout           = redisstate.DefaultTimeout // defined once, in package redisstate
)

// Sessions configures how 2025 (streamable HTTP) sessions are kept.
//
// Without keys (the default) a session lives in the memory of the gateway
// that opened it: a load balancer must send its requests there (sticky
// sessions), and it ends when that gateway stops. With keys, the gateway
// seals what a session needs (protocol version, client info and
// capabilities, principal, expiry) into its Mcp-Session-Id with
// XChaCha20-Poly1305: any replica holding the same keys serves it, also
// after the replica that opened it died. See the README's "Replicas".
type Sessions struct {
	// KeysFile is a file of session keys, one "<id> <base64 32-byte key>" a
	// line (id 0–255; make one with `mcptrail session-key`). The first
	// key seals new sessions, every key opens: to rotate, put the new key
	// first and drop the old one after sessions.lifetime. Every replica
	// needs the same keys. Default none: sessions are not sealed.
	KeysFile string `yaml:"keys_file"`
	// Keys is the same as KeysFile's content, normally
	// ${MCPTRAIL_SESSION_KEYS}; only one of the two may be set.
	Keys string `yaml:"keys"`
	// Lifetime is how long a sealed session lasts from its initialize;
	// the expiry is sealed in its id and no use extends it (a client
	// re-initializes after it). limits.session_idle_timeout then only
	// frees a replica's memory of an idle session. Default 24h.
	//
	// A reload or restart that lowers it shortens the sessions issued
	// already too: an id is valid until its sealed expiry or its issue
	// time plus the lifetime in force, whichever comes first. It is the
	// only sessions.* key a reload changes.
	Lifetime time.Duration `yaml:"lifetime"`
	// MaxRevoked caps the DELETEd sealed sessions this replica remembers,
	// each until its sealed expiry, so that their ids stay refused. At
	// the cap the replica opens no new sealed session (initialize gets
	// 503, naming this key) and rebuilds none opened elsewhere, until
	// some expire: forgetting one would make a DELETEd id valid again.
	// Default 100000.
	MaxRevoked int `yaml:"max_revoked"`
	// MaxRevokedPerPrincipal is MaxRevoked for one principal's sessions
	// (initialize gets 429): one client that opens and DELETEs sessions
	// in a loop fills its own share only. Default 10000.
	MaxRevokedPerPrincipal int `yaml:"max_revoked_per_principal"`
}

// Sealed reports whether session keys are configured.
func (s Sessions) Sealed() bool { return s.KeysFile != "" || s.Keys != "" }

// Redis shares the rate-limit buckets and the result cache between
// replicas through a Redis (or Valkey) server. Without an address (the
// default) both stay in the gateway's memory.
type Redis struct {
	// Addr is the server's host:port. Default none: nothing is shared.
	Addr string `yaml:"addr"`
	// Username and Password authenticate (Redis 6 ACLs); the password
	// normally comes from ${ENV}. Default none.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the database number. Default 0.
	DB int `yaml:"db"`
	// Prefix starts every key the gateway writes, so replicas of one
	// deployment share state and other deployments on the same server do
	// not. Default "mcptrail:".
	Prefix string `yaml:"prefix"`
	// Timeout bounds each Redis command (dial, read, write). Default 250ms.
	Timeout time.Duration `yaml:"timeout"`
	// RateLimitFailOpen lets calls through the rate limits when Redis does
	// not answer. Default false: such a call is refused with -32029 whose
	// message says Redis failed and carries the request ID (a limit that
	// silently stops holding is worse than a refused call). The cache
	// always fails open: a Redis error is a miss, and the answer is not
	// stored.
	RateLimitFailOpen bool `yaml:"rate_limit_fail_open"`
	// RevocationFailOpen serves a sealed session this replica does not
	// hold when Redis cannot say whether another replica DELETEd it.
	// Default false: such a session is answered 404 like an unknown one
	// (the client re-initializes here), so a DELETEd id never comes back
	// while Redis is down. The sessions a replica holds are served
	// either way; a DELETE that could not reach Redis is sent again
	// until it does (or the session expires).
	RevocationFailOpen bool `yaml:"revocation_fail_open"`
}

// Enabled reports whether Redis is configured.
func (r Redis) Enabled() bool { return r.Addr != "" }

func (c *Config) applyReplicaDefaults() {
	setDefault(&c.Sessions.Lifetime, DefaultSessionLifetime)
	setDefault(&c.Sessions.MaxRevoked, DefaultMaxRevoked)
	setDefault(&c.Sessions.MaxRevokedPerPrincipal, DefaultMaxRevokedPerPrincipal)
	if c.Redis.Enabled() {
		setDefault(&c.Redis.Prefix, DefaultRedisPrefix)
		setDefault(&c.Redis.Timeout, DefaultRedisTimeout)
	}
}

func (c *Config) validateReplicas(v *validator) {
	if c.Sessions.KeysFile != "" && c.Sessions.Keys != "" {
		v.add("sessions.keys", "is also given as sessions.keys_file: set one")
	}
	v.nonNegative("sessions.lifetime", c.Sessions.Lifetime)
	v.nonNegativeInt("sessions.max_revoked", c.Sessions.MaxRevoked)
	v.nonNegativeInt("sessions.max_revoked_per_principal", c.Sessions.MaxRevokedPerPrincipal)
	if c.Sessions.MaxRevoked > 0 && c.Sessions.MaxRevokedPerPrincipal > c.Sessions.MaxRevoked {
		v.add("sessions.max_revoked_per_principal", "%d is more than sessions.max_revoked (%d)", c.Sessions.MaxRevokedPerPrincipal, c.Sessions.MaxRevoked)
	}
	r := c.Redis
	if !r.Enabled() {
		return // the other redis.* keys are unused
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		v.add("redis.addr", "%q is not host:port", r.Addr)
	}
	v.nonNegative("redis.timeout", r.Timeout)
	v.nonNegativeInt("redis.db", r.DB)
}

// replicaWarnings are the secrets written in the config file.
func (c *Config) replicaWarnings() []string {
	var w []string
	if c.Sessions.Keys != "" && !c.FromEnv("sessions.keys") {
		w = append(w, "sessions.keys is written in the config file: use ${ENV_VAR} or sessions.keys_file so the secret stays out of it")
	}
	if c.Redis.Password != "" && !c.FromEnv("redis.password") {
		w = append(w, "redis.password is written in the config file: use ${ENV_VAR} so the secret stays out of it")
	}
	return w
}
