package proxy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/redisstate/redistest"
)

// sealedTrio starts three replicas sharing session keys and a Redis.
func sealedTrio(t *testing.T, addr string, failOpen bool) (a, b, c *env) {
	t.Helper()
	cfg := oneBackend(t)
	cfg.Redis = config.Redis{Addr: addr, Prefix: fmt.Sprintf("down-%d:", time.Now().UnixNano()), Timeout: 200 * time.Millisecond, RevocationFailOpen: failOpen}
	cfg.Sessions.Keys = sessKey1
	ca, cb, cc := *cfg, *cfg, *cfg
	return startGateway(t, &ca), startGateway(t, &cb), startGateway(t, &cc)
}

// sessionStatus is the HTTP status of a tools/list in alice's session sid.
func sessionStatus(t *testing.T, e *env, sid string) int {
	t.Helper()
	resp, _ := post(t, e.url, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, sessionHeaders("alice-token", sid))
	return resp.StatusCode
}

// TestSealedRevocationRedisDown: while Redis is down, a replica cannot
// tell whether a sealed session it does not hold was DELETEd on another;
// by default it answers 404 (fail closed, like the rate limits), with
// redis.revocation_fail_open it serves it. Fails before the fix: the
// DELETEd id was served by another replica.
func TestSealedRevocationRedisDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("revocation_fail_open=", failOpen), func(t *testing.T) {
			r := redistest.Start(t)
			a, _, c := sealedTrio(t, r.Addr, failOpen)
			alice := map[string]string{"Authorization": "Bearer alice-token"}
			deleted := initSession(t, a.url, alice)
			if got := deleteSession(t, a.url, sessionHeaders("alice-token", deleted)); got != http.StatusNoContent {
				t.Fatalf("DELETE on a: %d", got)
			}
			r.Kill()
			want := http.StatusNotFound
			if failOpen {
				want = http.StatusOK // the escape hatch: the DELETEd id is served again
			}
			if got := sessionStatus(t, c, deleted); got != want {
				t.Errorf("c, Redis down, an id DELETEd on a: %d, want %d", got, want)
			}
		})
	}
}

// TestSealedRevocationAfterRedisOutage: a DELETE made while Redis is down
// reaches the other replicas once it is back: the one holding the session
// drops it, the others find it revoked. Revocations Redis lost (restarted
// empty) are written again by the replica that made them. Fails before the
// fix: the DELETE made during the outage never left its replica, and the
// revocation lost with Redis's data was gone for good.
func TestSealedRevocationAfterRedisOutage(t *testing.T) {
	r := redistest.Start(t)
	a, b, c := sealedTrio(t, r.Addr, false)
	alice := map[string]string{"Authorization": "Bearer alice-token"}
	held := initSession(t, a.url, alice)
	if got := sessionStatus(t, b, held); got != http.StatusOK {
		t.Fatalf("b rebuilding a's session: %d", got)
	}
	deleted := initSession(t, a.url, alice)
	if got := deleteSession(t, a.url, sessionHeaders("alice-token", deleted)); got != http.StatusNoContent {
		t.Fatalf("DELETE on a: %d", got)
	}
	r.Kill()
	if got := deleteSession(t, a.url, sessionHeaders("alice-token", held)); got != http.StatusNoContent {
		t.Fatalf("DELETE on a with Redis down: %d", got)
	}
	r.Restart(t) // empty: the revocation of deleted is lost with it
	waitFor(t, "b to drop the session DELETEd during the outage", func() bool { return b.gw.Status().Sessions == 0 })
	for name, e := range map[string]*env{"b": b, "c": c} {
		if got := sessionStatus(t, e, held); got != http.StatusNotFound {
			t.Errorf("%s after Redis came back: the session DELETEd during the outage answered %d, want 404", name, got)
		}
	}
	waitFor(t, "the revocation Redis lost to be written again", func() bool { return sessionStatus(t, c, deleted) == http.StatusNotFound })
}
