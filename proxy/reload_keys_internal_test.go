package proxy

import (
	"context"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
)

// reloadKeys says, for every key of the config, what a reload does with a
// change of it: "" means it is applied (the next request, session or tick
// reads the config in force, or the policy set is rebuilt from it);
// otherwise the reload is refused with ErrRestartRequired naming that key.
// A key added to config.Config must be added here: TestReloadKeys fails
// until it is, so no key is silently ignored by a reload.
var reloadKeys = map[string]string{
	"listen":               "listen",
	"namespace_separator":  "namespace_separator",
	"max_body_bytes":       "", // read per request (readBody)
	"shutdown_timeout":     "", // Gateway.Config at shutdown; retire
	"instance":             "instance",
	"allowed_origins":      "", // policySet.origins, per request
	"client_trace_context": "", // per request (tracectx.go)

	"limits.read_header_timeout":                      "limits.read_header_timeout",
	"limits.body_read_timeout":                        "limits.body_read_timeout",
	"limits.idle_timeout":                             "limits.idle_timeout",
	"limits.max_sessions":                             "", // per new session
	"limits.max_sessions_per_principal":               "",
	"limits.max_subscriptions":                        "",
	"limits.max_upstream_subscriptions_per_principal": "", // per new subscription
	"limits.max_upstream_subscriptions_per_server":    "",
	"limits.max_tasks_per_principal":                  "",
	"limits.max_held_per_principal":                   "",
	"limits.max_inflight_per_session":                 "",
	"limits.session_idle_timeout":                     "", // janitor reads it each sweep
	"limits.rate_per_principal.rate":                  "", // policySet.rates
	"limits.rate_per_principal.burst":                 "",
	"limits.rate_per_tool.rate":                       "",
	"limits.rate_per_tool.burst":                      "",
	"limits.priority.background_roles":                "", // policySet.cfg, per call
	"limits.priority.background_principals":           "",

	"cache.max_bytes": "cache",

	"admin.listen":       "admin.listen",
	"admin.token_sha256": "", // adminOnly, per request
	"admin.trace_url":    "", // the console asks Gateway.Config per page

	"servers": "", // changed backends restart

	"auth.tokens": "", // policySet.auth
	"auth.oauth":  "",
	"auth.roles":  "",

	"recorder.enabled":                 "recorder",
	"recorder.clickhouse.addr":         "recorder",
	"recorder.clickhouse.database":     "recorder",
	"recorder.clickhouse.username":     "recorder",
	"recorder.clickhouse.password":     "recorder",
	"recorder.clickhouse.cluster":      "recorder",
	"recorder.clickhouse.migrate":      "recorder",
	"recorder.clickhouse.local_dir":    "recorder",
	"recorder.clickhouse.local_binary": "recorder",
	"recorder.spool.dir":               "recorder",
	"recorder.spool.fsync":             "recorder",
	"recorder.spool.fsync_interval":    "recorder",
	"recorder.spool.max_bytes":         "recorder",
	"recorder.spool.segment_bytes":     "recorder",
	"recorder.queue_size":              "recorder",
	"recorder.queue_bytes":             "recorder",
	"recorder.batch_size":              "recorder",
	"recorder.flush_interval":          "recorder",
	"recorder.overflow":                "recorder",
	"recorder.ready_when_degraded":     "recorder",
	"recorder.payloads.enabled":        "recorder",
	"recorder.payloads.max_bytes":      "recorder",
	"recorder.redaction.keys":          "recorder",
	"recorder.redaction.patterns":      "recorder",
	"recorder.redaction.custom":        "recorder",
	"recorder.redaction.hmac_key_env":  "recorder",
	"recorder.retention.hops":          "recorder",
	"recorder.retention.payloads":      "recorder",
	"recorder.retention.audit":         "recorder",

	"sessions.keys_file":                 "sessions",
	"sessions.keys":                      "sessions",
	"sessions.lifetime":                  "", // sealedSessions.setLifetime: shortens issued ids too
	"sessions.max_revoked":               "sessions",
	"sessions.max_revoked_per_principal": "sessions",

	"redis.addr":                 "redis",
	"redis.username":             "redis",
	"redis.password":             "redis",
	"redis.db":                   "redis",
	"redis.prefix":               "redis",
	"redis.timeout":              "redis",
	"redis.rate_limit_fail_open": "redis",
	"redis.revocation_fail_open": "redis",

	"pinning.on_change":     "", // pinTracker.reconfigure
	"pinning.poll_interval": "", // the poll loop rearms with it each round
}

// configLeaves returns the config's keys: the yaml path of every field
// that is not a struct (lists, maps, pointers and scalars), with the field.
func configLeaves(t reflect.Type, prefix string, idx []int, out map[string][]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		path := append(slices.Clone(idx), i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			configLeaves(f.Type, key, path, out)
			continue
		}
		out[key] = path
	}
}

// change sets v to a value different from the one it holds.
func change(t *testing.T, key string, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	default:
		t.Fatalf("%s: cannot change a %s", key, v.Kind())
	}
}

// TestReloadKeys walks every key of the config: a change of it is either
// applied by a reload or refuses the reload naming the key, as reloadKeys
// says; no key is left out of reloadKeys.
func TestReloadKeys(t *testing.T) {
	leaves := map[string][]int{}
	configLeaves(reflect.TypeFor[config.Config](), "", nil, leaves)
	var missing, stale []string
	for k := range leaves {
		if _, ok := reloadKeys[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range reloadKeys {
		if _, ok := leaves[k]; !ok {
			stale = append(stale, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 || len(stale) > 0 {
		t.Fatalf("reloadKeys is out of date: say what a reload does with %q; remove %q", missing, stale)
	}
	base := func() *config.Config {
		cfg, err := config.Parse([]byte("servers:\n  - {name: a, url: \"http://127.0.0.1:1/mcp\"}\n"), "base.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for key, want := range reloadKeys {
		t.Run(key, func(t *testing.T) {
			cur, next := base(), base()
			change(t, key, reflect.ValueOf(next).Elem().FieldByIndex(leaves[key]))
			got := restartOnly(cur, next)
			switch {
			case want == "" && len(got) > 0:
				t.Errorf("restartOnly after changing %s = %q, want it applied by the reload", key, got)
			case want != "" && !slices.Equal(got, []string{want}):
				t.Errorf("restartOnly after changing %s = %q, want [%s]", key, got, want)
			}
		})
	}
}

// countingPins is a PinStore that counts its reads.
type countingPins struct{ loads atomic.Int64 }

func (p *countingPins) LoadPins(context.Context) ([]recorder.PinEvent, error) {
	p.loads.Add(1)
	return nil, nil
}
func (p *countingPins) AppendPins(context.Context, []recorder.PinEvent) error { return nil }

// TestReloadTimers: the background loops pick up a reloaded
// limits.session_idle_timeout and pinning.poll_interval at their next
// round. Fails before the fix: the janitor and the pin poller kept the
// period they started with.
func TestReloadTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &config.Config{Limits: config.Limits{SessionIdleTimeout: time.Hour}, Pinning: config.Pinning{PollInterval: time.Hour}}
		pins := &countingPins{}
		g, err := New(Options{Config: cfg, Logger: discard, PinStore: pins})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = g.Shutdown(context.Background()) }()
		s := g.newSession("idle", nil)
		if err := g.sessions.add(s, cfg.Limits); err != nil {
			t.Fatal(err)
		}
		s.lastUsed.Store(time.Now().UnixNano())
		synctest.Wait()
		loads := pins.loads.Load()

		next := *cfg
		next.Limits.SessionIdleTimeout, next.Pinning.PollInterval, next.Hash = time.Minute, time.Minute, "next"
		if _, err := g.reloadWith(context.Background(), "test.yaml", func() (*config.Config, error) { return &next, nil }, "test"); err != nil {
			t.Fatal(err)
		}
		// The loops armed with an hour wake at most a minute later (the
		// janitor sweeps at a quarter of the timeout, at most a minute).
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if n := g.sessions.Len(); n != 0 {
			t.Errorf("%d sessions open 3m after a reload set session_idle_timeout 1m, want 0", n)
		}
		if got := pins.loads.Load() - loads; got < 1 {
			t.Errorf("pins read %d times in 3m after a reload set poll_interval 1m, want at least 1", got)
		}
	})
}
