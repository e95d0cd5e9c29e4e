package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// do sends one request and returns the status and body.
func do(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v // what a browser sends for a rebound name
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, "(stream)"
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOriginValidation: a browser Origin not in allowed_origins gets 403 on
// every MCP endpoint, before authentication; an allowed one and none at all
// (non-browser clients) pass. Fails before the fix: Origin was not checked.
func TestOriginValidation(t *testing.T) {
	cfg := oneBackend(t)
	cfg.AllowedOrigins = []string{"https://app.example", "http://localhost:6274"}
	e := startGateway(t, cfg)
	tok := "Bearer alice-token"
	sid := initSession(t, e.url, map[string]string{"Authorization": tok})
	tests := []struct {
		name, method, path, origin, body string
		want                             int
	}{
		{"no origin", "POST", "/mcp", "", initBody, 200},
		{"allowed origin", "POST", "/mcp", "https://app.example", initBody, 200},
		{"allowed origin, other case", "POST", "/mcp", "HTTP://LOCALHOST:6274", initBody, 200},
		{"refused origin POST", "POST", "/mcp", "https://evil.example", initBody, 403},
		{"refused origin same host other port", "POST", "/mcp", "http://localhost:8080", initBody, 403},
		{"null origin", "POST", "/mcp", "null", initBody, 403},
		{"refused origin GET stream", "GET", "/mcp", "https://evil.example", "", 403},
		{"refused origin DELETE", "DELETE", "/mcp", "https://evil.example", "", 403},
		{"refused origin legacy SSE", "GET", "/sse", "https://evil.example", "", 403},
		{"refused origin legacy message", "POST", "/message?sessionId=x", "https://evil.example", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": tok, "Accept": "application/json, text/event-stream"}
			if tt.method != "POST" || tt.path != "/mcp" || tt.body != initBody {
				hdr["Mcp-Session-Id"] = sid
			}
			if tt.origin != "" {
				hdr["Origin"] = tt.origin
			}
			status, body := do(t, tt.method, e.url+tt.path, hdr, tt.body)
			if status != tt.want {
				t.Errorf("%s %s with Origin %q: %d %.200s, want %d", tt.method, tt.path, tt.origin, status, body, tt.want)
			}
			if tt.want == 403 && !strings.Contains(body, "allowed_origins") {
				t.Errorf("403 body %q does not name allowed_origins", body)
			}
		})
	}
	// The gateway's own loopback origin is same-origin (the MCP
	// conformance suite's dns-rebinding-protection valid-Host check).
	self := e.url // http://127.0.0.1:<port>
	if status, body := do(t, "POST", e.url+"/mcp", map[string]string{"Authorization": tok, "Accept": "application/json, text/event-stream", "Origin": self}, initBody); status != 200 {
		t.Errorf("same-origin loopback Origin %s: %d %.200s, want 200", self, status, body)
	}
	// Refused before authentication: no token needed to be told 403.
	if status, _ := do(t, "POST", e.url+"/mcp", map[string]string{"Origin": "https://evil.example"}, initBody); status != 403 {
		t.Errorf("refused origin without a token: %d, want 403", status)
	}
}

// TestAdminEndpoints: with client authentication on, /statusz and /metrics
// on the MCP listener need the admin token (without one configured they are
// refused, whatever client token is sent); on admin.listen they are served,
// behind the admin token when one is set. /healthz and /readyz stay open.
// Fails before the fix: /statusz answered anyone.
func TestAdminEndpoints(t *testing.T) {
	metrics := func(o *proxy.Options) {
		o.MetricsHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "metrics\n") })
		o.Console = stubConsole{}
	}
	client := map[string]string{"Authorization": "Bearer alice-token"}
	admin := map[string]string{"Authorization": "Bearer admin-token"}
	adminCookie := map[string]string{"Cookie": proxy.AdminCookie + "=admin-token"}
	clientCookie := map[string]string{"Cookie": proxy.AdminCookie + "=alice-token"}

	cfg := oneBackend(t)
	e := startGateway(t, cfg, metrics)
	cfgTok := oneBackend(t)
	cfgTok.Admin.TokenSHA256 = sha("admin-token")
	eTok := startGateway(t, cfgTok, metrics)
	cfgSep := oneBackend(t)
	cfgSep.Admin.Listen = "127.0.0.1:1" // only its presence matters: AdminHandler is served below
	eSep := startGateway(t, cfgSep, metrics)
	sep := httptest.NewServer(eSep.gw.AdminHandler())
	t.Cleanup(sep.Close)
	cfgSepTok := oneBackend(t)
	cfgSepTok.Admin = config.Admin{Listen: "127.0.0.1:1", TokenSHA256: sha("admin-token")}
	eSepTok := startGateway(t, cfgSepTok, metrics)
	sepTok := httptest.NewServer(eSepTok.gw.AdminHandler())
	t.Cleanup(sepTok.Close)

	tests := []struct {
		name, base, path string
		hdr              map[string]string
		want             int
	}{
		{"MCP listener, no admin token configured", e.url, "/statusz", nil, 403},
		{"MCP listener, client token", e.url, "/statusz", client, 403},
		{"MCP listener, client token, metrics", e.url, "/metrics", client, 403},
		{"MCP listener, healthz", e.url, "/healthz", nil, 200},
		{"MCP listener, readyz", e.url, "/readyz", nil, 200},
		{"MCP listener with admin token, none sent", eTok.url, "/statusz", nil, 401},
		{"MCP listener with admin token, client token", eTok.url, "/statusz", client, 401},
		{"MCP listener with admin token", eTok.url, "/statusz", admin, 200},
		{"MCP listener with admin token, metrics", eTok.url, "/metrics", admin, 200},
		{"admin.listen set: not on the MCP listener", eSep.url, "/statusz", admin, 404},
		{"admin.listen set: not on the MCP listener, metrics", eSep.url, "/metrics", admin, 404},
		{"admin listener, no token configured", sep.URL, "/statusz", nil, 200},
		{"admin listener, metrics", sep.URL, "/metrics", nil, 200},
		{"admin listener, no MCP", sep.URL, "/mcp", client, 404},
		{"admin listener with token, none sent", sepTok.URL, "/statusz", nil, 401},
		{"admin listener with token", sepTok.URL, "/statusz", admin, 200},
		{"admin listener with token, readyz", sepTok.URL, "/readyz", nil, 200},
		// The web console (Options.Console) sits behind the same check and
		// renders its own refusals (AdminDenier); a browser sends the admin
		// token as a cookie.
		{"console, MCP listener, no admin token configured", e.url, "/console/calls", client, 403},
		{"console, MCP listener with admin token, none sent", eTok.url, "/console/calls", nil, 401},
		{"console, MCP listener with admin token, client token", eTok.url, "/console/calls", client, 401},
		{"console, MCP listener with admin token", eTok.url, "/console/calls", admin, 200},
		{"console, MCP listener with admin token as cookie", eTok.url, "/console/calls", adminCookie, 200},
		{"console, MCP listener with a client token as cookie", eTok.url, "/console/calls", clientCookie, 401},
		{"console, admin.listen set: not on the MCP listener", eSep.url, "/console/calls", admin, 404},
		{"console, admin listener, no token configured", sep.URL, "/console/calls", nil, 200},
		{"console, admin listener with token, none sent", sepTok.URL, "/console/calls", nil, 401},
		{"console, admin listener with token, client cookie", sepTok.URL, "/console/calls", clientCookie, 401},
		{"console, admin listener with token", sepTok.URL, "/console/calls", adminCookie, 200},
		{"statusz, admin token as cookie", sepTok.URL, "/statusz", adminCookie, 200},
		// DNS rebinding: a page of evil.example rebinds its name to the
		// gateway's address and reads the open console same-origin (fails
		// before the fix: 200 with every recorded call).
		{"console, admin listener, no token, rebound Host", sep.URL, "/console/calls", map[string]string{"Host": "rebind.evil.example:9090"}, 403},
		{"console, admin listener, no token, localhost", sep.URL, "/console/calls", map[string]string{"Host": "localhost:9090"}, 200},
		{"console, admin listener, no token, IPv6 loopback", sep.URL, "/console/calls", map[string]string{"Host": "[::1]:9090"}, 200},
		{"console, admin listener with token, rebound Host", sepTok.URL, "/console/calls", map[string]string{"Host": "admin.corp.example", "Cookie": proxy.AdminCookie + "=admin-token"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(t, "GET", tt.base+tt.path, tt.hdr, "")
			if status != tt.want {
				t.Errorf("GET %s = %d %.200s, want %d", tt.path, status, body, tt.want)
			}
			if strings.HasPrefix(tt.path, "/console/") && tt.want != 404 {
				want := "console page"
				if tt.want != 200 {
					want = "console refusal " + strconv.Itoa(tt.want)
				}
				if !strings.HasPrefix(body, want) {
					t.Errorf("GET %s: body %q, want the console's own %q", tt.path, body, want)
				}
			}
		})
	}
}

// stubConsole stands in for the web console: a page, and its own refusal.
type stubConsole struct{}

func (stubConsole) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "console page")
}

func (stubConsole) DenyAdmin(w http.ResponseWriter, r *http.Request, status int, reason, requestID string) {
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "console refusal "+strconv.Itoa(status)+" "+reason+" "+requestID)
}
