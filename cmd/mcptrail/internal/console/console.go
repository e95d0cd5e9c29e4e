// Package console is mcptrail's web console: server-rendered pages over the
// recordings — calls, a call's trace as a waterfall, the audit trail with
// its export, replay runs and their diffs, and the gateway's health.
//
// It lives under cmd/mcptrail because it sits where the commands do in the
// import direction (cmd → replay, dashboards → proxy → recorder): it reads
// through recorder/clickhouse (the one place queries are written), renders
// replay runs with replay/report, and shows proxy.Status. The gateway only
// mounts it as an http.Handler (proxy.Options.Console) behind its admin
// check; proxy does not import it.
//
// Everything is embedded (templates, one stylesheet, one small script) and
// served with a Content-Security-Policy of 'self' only: no inline script or
// style, no third-party origin, so it works offline. It is read-only. Every
// query runs under a deadline (Config.QueryTimeout) and pages bound their
// rows, so a slow or down ClickHouse gives an error page, not a hung one.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// StoreSource hands out the ClickHouse store, connecting when needed
// (clickhouse.Lazy). It may block until ctx ends.
type StoreSource interface {
	Store(ctx context.Context) (*clickhouse.Store, error)
}

// addrer is implemented by a StoreSource that knows its address (for
// messages).
type addrer interface{ Addr() []string }

// Config configures the console.
type Config struct {
	// Store reads the recordings. Required.
	Store StoreSource
	// Status returns the gateway's status (/statusz) for the health page;
	// nil when no gateway runs in this process (`mcptrail console`).
	Status func() proxy.Status
	// TraceURL returns the URL OTel trace IDs link to, "{trace_id}"
	// replaced (admin.trace_url); called at every page, so that a reloaded
	// config applies. nil: no links.
	TraceURL func() string
	// QueryTimeout bounds each page's queries. Default 10s.
	QueryTimeout time.Duration
	// ExportTimeout bounds an audit download. Default 10m.
	ExportTimeout time.Duration
	// Logger receives errors; default discard.
	Logger *slog.Logger
	// Version is shown in the footer.
	Version string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Console is the http.Handler of /console/.
type Console struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
}

var _ proxy.AdminDenier = (*Console)(nil)

// CSP is the Content-Security-Policy of every console response: only this
// origin, no inline script or style, no framing, forms only to itself.
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// New builds the console.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil {
		return nil, errors.New("console: no store")
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	if cfg.ExportTimeout <= 0 {
		cfg.ExportTimeout = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("component", "console")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TraceURL == nil {
		cfg.TraceURL = func() string { return "" }
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	for _, name := range []string{"calls", "trace", "audit", "replays", "replay", "health", "error", "login"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parsing template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/calls", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET /console/calls", c.calls)
	c.mux.HandleFunc("GET /console/calls.json", c.callsJSON)
	c.mux.HandleFunc("GET /console/find", c.find)
	c.mux.HandleFunc("GET /console/trace/{id}", c.trace)
	c.mux.HandleFunc("GET /console/audit", c.audit)
	c.mux.HandleFunc("GET /console/audit.csv", c.auditExport("csv"))
	c.mux.HandleFunc("GET /console/audit.jsonl", c.auditExport("jsonl"))
	c.mux.HandleFunc("GET /console/replays", c.replays)
	c.mux.HandleFunc("GET /console/replays/{id}", c.replay)
	c.mux.HandleFunc("GET /console/health", c.health)
	c.mux.HandleFunc("POST /console/login", c.login)
	c.mux.HandleFunc("POST /console/logout", c.logout)
	return c, nil
}

// ServeHTTP sets the security headers and the request ID (the one the
// gateway's admin check gave the request, else a new one) and serves the
// page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	c.mux.ServeHTTP(w, withRequestID(w, r))
}

type requestIDKey struct{}

// withRequestID gives r the request ID of its answer (proxy.AdminRequestID).
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	if _, ok := r.Context().Value(requestIDKey{}).(string); ok {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), requestIDKey{}, proxy.AdminRequestID(w)))
}

// requestID is r's request ID; "" outside ServeHTTP.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// log is the logger of r's lines: each carries its request_id.
func (c *Console) log(r *http.Request) *slog.Logger {
	return c.cfg.Logger.With("request_id", requestID(r))
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make the browser send Origin: null on the login POST
	h.Set("Cache-Control", "no-store")
}

// RequireToken guards c with the admin token whose hex sha256 is
// tokenSHA256 (bearer or cookie, as the gateway's admin endpoints), for
// `mcptrail console`, which runs without a gateway. Empty: open, to
// requests naming it by IP address or localhost only (DNS rebinding,
// proxy.GuardOpenAdmin).
func RequireToken(tokenSHA256 string, c *Console) http.Handler {
	if tokenSHA256 == "" {
		return proxy.GuardOpenAdmin(c, c.cfg.Logger)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !proxy.AdminTokenOK(r, tokenSHA256) {
			reqID := proxy.AdminRequestID(w)
			c.cfg.Logger.Warn("console request denied", "request_id", reqID, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcptrail-admin"`)
			c.DenyAdmin(w, r, http.StatusUnauthorized, "the console needs the admin token", reqID)
			return
		}
		c.ServeHTTP(w, r)
	})
}

// DenyAdmin implements proxy.AdminDenier: a 401 shows the login form (a
// posted login sets the cookie, and the next page checks it), a 403 says
// why. Static files are served to anyone so that the login page is styled.
func (c *Console) DenyAdmin(w http.ResponseWriter, r *http.Request, status int, reason, requestID string) {
	securityHeaders(w)
	w.Header().Set(proxy.HeaderRequestID, requestID)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, requestID))
	if status == http.StatusUnauthorized {
		if strings.HasPrefix(r.URL.Path, "/console/static/") && r.Method == http.MethodGet {
			c.mux.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/console/login" {
			c.login(w, r)
			return
		}
	}
	d := loginPage{Reason: reason, RequestID: requestID, Next: safeNext(r.URL.RequestURI()), Form: status == http.StatusUnauthorized}
	if _, err := r.Cookie(proxy.AdminCookie); err == nil && d.Form {
		d.Rejected = true
	}
	c.render(w, r, status, "login", page{Title: "Sign in", Data: d})
}

type loginPage struct {
	Reason, RequestID, Next string
	Form, Rejected          bool
}

// login stores the posted admin token in an HttpOnly, SameSite=Strict
// cookie scoped to /console/ and goes back to the page asked for; the
// admin check on that page decides whether the token is right.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		c.fail(w, r, http.StatusForbidden, "Login refused", errors.New("the login form was posted from another origin"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" {
		c.DenyAdmin(w, r, http.StatusUnauthorized, "enter the admin token", proxy.AdminRequestID(w))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: proxy.AdminCookie, Value: tok, Path: "/console/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: proxy.AdminCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/calls", http.StatusSeeOther)
}

// safeNext keeps a redirect target inside the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/console/") || strings.HasPrefix(u.Path, "/console/login") || strings.Contains(u.Path, "//") {
		return "/console/calls"
	}
	return u.RequestURI()
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// page is what the layout renders around a page's Data.
type page struct {
	Title   string
	Nav     string // calls, audit, replays, health
	Version string
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Version = c.cfg.Version
	var b strings.Builder
	if err := c.pages[name].Execute(&b, p); err != nil {
		c.log(r).Error("rendering console page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// errorPage is the data of the error page.
type errorPage struct {
	Heading   string
	Message   string
	Hint      string
	RequestID string // the log lines' request_id
}

// fail renders the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, heading string, err error) {
	c.render(w, r, status, "error", page{Title: heading, Data: errorPage{Heading: heading, Message: err.Error(), RequestID: requestID(r)}})
}

// failQuery renders a query's failure: a deadline is 504 (ClickHouse too
// slow), anything else 503 (down, unreachable, schema missing).
func (c *Console) failQuery(w http.ResponseWriter, r *http.Request, what string, err error) {
	addr := "ClickHouse"
	if a, ok := c.cfg.Store.(addrer); ok {
		addr = "ClickHouse at " + strings.Join(a.Addr(), ",")
	}
	c.log(r).Warn("console query failed", "what", what, "path", r.URL.Path, "err", err)
	d := errorPage{Heading: "Cannot read " + what, Message: err.Error(), RequestID: requestID(r)}
	status := http.StatusServiceUnavailable
	switch {
	case isTimeout(err):
		status = http.StatusGatewayTimeout
		d.Hint = fmt.Sprintf("%s did not answer in time (the console waits %s per page). It may be overloaded or hung, or the window too wide: narrow the filters and try again.", addr, c.cfg.QueryTimeout)
	case strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "does not exist"):
		d.Hint = "The database has no mcptrail tables yet: run `mcptrail migrate` (mcptrail serve migrates at start)."
	default:
		d.Hint = addr + " is unreachable or refused the query. The console reads the recordings there; the gateway keeps recording to its spool meanwhile."
	}
	c.render(w, r, status, "error", page{Title: d.Heading, Data: d})
}

// store returns the store within ctx: a connection attempt that outlives
// the page's deadline is left to finish in the background.
func (c *Console) store(ctx context.Context) (*clickhouse.Store, error) {
	type res struct {
		s   *clickhouse.Store
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.cfg.Store.Store(ctx)
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("connecting to ClickHouse: %w", ctx.Err())
	}
}

// query runs f with the page's deadline and a connected store.
func (c *Console) query(r *http.Request, f func(ctx context.Context, s *clickhouse.Store) error) error {
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.QueryTimeout)
	defer cancel()
	s, err := c.store(ctx)
	if err != nil {
		return err
	}
	return f(ctx, s)
}

// isTimeout: the page's deadline, or a network timeout (a server that
// accepts connections but does not answer).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
