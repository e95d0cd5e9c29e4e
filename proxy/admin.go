package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
)

// AdminHandler serves the admin endpoints on their own listener
// (admin.listen):
//
//	/statusz   counters as JSON (mcptrail status)
//	/metrics   Options.MetricsHandler (Prometheus), when set
//	/console/  Options.Console (the web console), when set
//	/healthz, /readyz as on the MCP listener
//
// When admin.token_sha256 is set every admin request needs that bearer
// token; otherwise the listener's address is the protection.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	g.probes(mux)
	g.adminEndpoints(mux, false)
	return mux
}

// probes adds /healthz and /readyz: they tell a load balancer whether to
// send traffic and reveal nothing else, so every listener serves them.
func (g *Gateway) probes(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if ok, why := g.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, why+"\n")
			return
		}
		if sp, ok := g.rec.(StatusProvider); ok {
			if rs := sp.RecorderStatus(); !rs.Healthy {
				// Ready by choice (recorder.ready_when_degraded), but say so.
				_, _ = io.WriteString(w, "ready; recorder degraded: "+strings.Join(rs.Problems, "; ")+"\n")
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
}

// adminEndpoints adds /statusz and /metrics behind adminAllowed.
func (g *Gateway) adminEndpoints(mux *http.ServeMux, onMCPListener bool) {
	mux.Handle("/statusz", g.adminOnly(onMCPListener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(g.Status())
	})))
	if g.opts.MetricsHandler != nil {
		mux.Handle("/metrics", g.adminOnly(onMCPListener, g.opts.MetricsHandler))
	}
	if g.opts.Console != nil {
		// Without an admin token the console is guarded against DNS
		// rebinding (GuardOpenAdmin); adminOnly decides per request, as a
		// reload may set the token.
		mux.Handle("/console/", g.adminOnly(onMCPListener, openGuarded{g.opts.Console}))
	}
}

// openGuarded marks an admin handler that, served without an admin token,
// answers only to a rebinding-safe Host (GuardOpenAdmin).
type openGuarded struct{ http.Handler }

// DenyAdmin renders a refusal as the wrapped handler does.
func (o openGuarded) DenyAdmin(w http.ResponseWriter, r *http.Request, status int, reason, requestID string) {
	if d, ok := o.Handler.(AdminDenier); ok {
		d.DenyAdmin(w, r, status, reason, requestID)
		return
	}
	writeRPCError(w, status, nil, jsonrpc.CodeUnauthorized, reason, requestID)
}

// GuardOpenAdmin guards an admin handler served without an admin token
// (the web console: every recorded call) against DNS rebinding: a web page
// of evil.example that rebinds its name to this address is same-origin
// with what it reads, and the browser sends no Origin on its GETs. Such a
// page can only name the gateway by a DNS name it owns, so a request whose
// Host is not an IP address or localhost is refused with 403 (with an
// admin token the page has no token to send). h may render the refusal
// (AdminDenier).
func GuardOpenAdmin(h http.Handler, logger interface {
	Warn(msg string, args ...any)
}) http.Handler {
	return openAdminGuard{h, logger}
}

type openAdminGuard struct {
	h      http.Handler
	logger interface{ Warn(msg string, args ...any) }
}

func (o openAdminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := AdminRequestID(w)
	if RebindingSafeHost(r.Host) {
		o.h.ServeHTTP(w, r)
		return
	}
	o.DenyAdmin(w, r, http.StatusForbidden, refuseRebinding(o.logger, r, reqID), reqID)
}

// refuseRebinding logs the refusal of an open admin request whose Host is
// a DNS name and returns the reason the client is told.
func refuseRebinding(logger interface{ Warn(msg string, args ...any) }, r *http.Request, reqID string) string {
	logger.Warn("open admin request refused: Host is a DNS name (DNS rebinding)", "request_id", reqID,
		"host", truncateForLog(r.Host), "path", r.URL.Path, "remote", r.RemoteAddr)
	return "mcptrail: without an admin token (admin.token_sha256) " + r.URL.Path +
		" answers only to an IP address or localhost, so that a web page cannot rebind its own name to this address and read it"
}

// DenyAdmin renders a refusal as the guarded handler does.
func (o openAdminGuard) DenyAdmin(w http.ResponseWriter, r *http.Request, status int, reason, requestID string) {
	if d, ok := o.h.(AdminDenier); ok {
		d.DenyAdmin(w, r, status, reason, requestID)
		return
	}
	writeRPCError(w, status, nil, jsonrpc.CodeUnauthorized, reason, requestID)
}

// AdminRequestID is the request ID of an admin request (the console's
// pages, /statusz): the one a handler in front already gave it (w's
// X-Request-Id), else a new one, set on w. Every log line of the request
// carries it as request_id, and its answer as X-Request-Id.
func AdminRequestID(w http.ResponseWriter) string {
	if id := w.Header().Get(HeaderRequestID); id != "" {
		return id
	}
	id := NewRequestID()
	w.Header().Set(HeaderRequestID, id)
	return id
}

// RebindingSafeHost reports whether a Host header names this machine in a
// way no other site's page can share: an IP literal, localhost or a name
// under .localhost (which browsers resolve to loopback themselves).
func RebindingSafeHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	return net.ParseIP(h) != nil
}

// AdminCookie is the cookie a browser may carry the admin token in (the
// web console's login sets it), as an alternative to the Authorization
// header that a browser does not send on navigation.
const AdminCookie = "mcptrail_admin"

// AdminTokenOK reports whether r carries the admin token whose hex sha256
// is wantSHA256, as a bearer token or in AdminCookie. The comparison is in
// constant time.
func AdminTokenOK(r *http.Request, wantSHA256 string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		c, err := r.Cookie(AdminCookie)
		if err != nil {
			return false
		}
		tok = c.Value
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(wantSHA256))) == 1
}

// AdminDenier is implemented by an admin handler that renders its own
// refusal (status 401 or 403, the reason and the request ID the gateway's
// log line carries), for example an HTML page with a login form instead
// of a JSON-RPC error.
type AdminDenier interface {
	DenyAdmin(w http.ResponseWriter, r *http.Request, status int, reason, requestID string)
}

// adminOnly guards an admin endpoint. With admin.token_sha256 set it needs
// that bearer token. Without it, an admin endpoint on the MCP listener is
// refused while client authentication is on (a client token is not an
// admin token, and an unauthenticated caller must not read the gateway's
// backends, counters and recorder state); on its own admin.listen, or when
// the gateway has no authentication at all, it is open (and an openGuarded
// handler answers only to a rebinding-safe Host). The token is read from
// the config in force at each request, so a reload applies to the next one.
func (g *Gateway) adminOnly(onMCPListener bool, h http.Handler) http.Handler {
	_, guardOpen := h.(openGuarded)
	deny := func(w http.ResponseWriter, r *http.Request, status int, reason, reqID string) {
		if d, ok := h.(AdminDenier); ok {
			// The connection closes after this answer, but the handler may
			// read a small body (a login form): no read deadline here, and
			// the header goes out before the answer does.
			w.Header().Set("Connection", "close")
			d.DenyAdmin(w, r, status, reason, reqID)
			return
		}
		writeRPCError(w, status, nil, jsonrpc.CodeUnauthorized, reason, reqID)
		closeUnread(w)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID := AdminRequestID(w)
		want := g.conf().Admin.TokenSHA256
		switch {
		case want != "":
			if !AdminTokenOK(r, want) {
				g.stats.denied.Add(1)
				w.Header().Set("WWW-Authenticate", `Bearer realm="mcptrail-admin"`)
				g.logger.Warn("admin request denied", "request_id", reqID, "path", r.URL.Path, "remote", r.RemoteAddr)
				deny(w, r, http.StatusUnauthorized, "mcptrail: "+r.URL.Path+" needs the admin token (admin.token_sha256)", reqID)
				return
			}
		case onMCPListener && g.ps().auth.Enabled():
			g.stats.denied.Add(1)
			deny(w, r, http.StatusForbidden, "mcptrail: "+r.URL.Path+" is an admin endpoint: serve it on admin.listen, or set admin.token_sha256", reqID)
			return
		case guardOpen && !RebindingSafeHost(r.Host):
			deny(w, r, http.StatusForbidden, refuseRebinding(g.logger, r, reqID), reqID)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkOrigin refuses a browser request from an origin that is not in
// allowed_origins with 403, as the MCP transport requires (DNS rebinding:
// a web page must not drive a gateway on the user's loopback or LAN).
// Requests without an Origin header (non-browser clients) pass. The origins
// are those of the config in force at each request (a reload applies).
func (g *Gateway) checkOrigin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || g.ps().origins.allows(origin) || sameLoopbackOrigin(origin, r.Host) {
			h(w, r)
			return
		}
		reqID := NewRequestID()
		g.stats.denied.Add(1)
		writeRPCError(w, http.StatusForbidden, nil, jsonrpc.CodeInvalidRequest, "mcptrail: Origin not allowed (allowed_origins)", reqID)
		closeUnread(w)
		g.logger.Warn("request denied: origin not allowed", "request_id", reqID, "origin", truncateForLog(origin), "remote", r.RemoteAddr)
	}
}

// originSet is allowed_origins, normalized once per config.
type originSet struct {
	any     bool // "*"
	allowed []string
}

func newOriginSet(origins []string) originSet {
	s := originSet{allowed: make([]string, 0, len(origins))}
	for _, o := range origins {
		s.allowed = append(s.allowed, strings.ToLower(strings.TrimRight(o, "/")))
	}
	s.any = slices.Contains(s.allowed, "*")
	return s
}

func (s originSet) allows(origin string) bool {
	return s.any || slices.Contains(s.allowed, strings.ToLower(origin))
}

// sameLoopbackOrigin reports whether origin is the gateway's own origin on a
// loopback address (a page the gateway's host serves to itself, as the MCP
// conformance suite's valid-Host check sends). DNS rebinding cannot forge
// it: a rebound page's Origin names the attacker's host, not a loopback one.
func sameLoopbackOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || !strings.EqualFold(u.Host, host) {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// truncateForLog bounds a client-chosen header value in a log line.
func truncateForLog(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…(truncated)"
	}
	return s
}
