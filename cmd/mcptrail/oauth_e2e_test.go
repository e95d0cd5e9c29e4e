package main

// The OAuth 2.1 resource server against a real authorization server: Ory
// Hydra (installed by scripts/setup.sh), started on free loopback ports with
// an in-memory store and JWT access tokens. Clients get tokens by the
// client-credentials grant; the gateway finds Hydra's keys by OIDC
// discovery.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/mcptrail/mcptrail/proxy/testbackend"
	"github.com/mcptrail/mcptrail/recorder/chlocal/chtest"
)

// hydra is a running Ory Hydra.
type hydra struct {
	public, admin, issuer string
}

func hydraBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("hydra"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "hydra")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("hydra is not installed (scripts/setup.sh installs it): %v", err)
	}
	return p
}

func startHydra(t *testing.T, name string) *hydra {
	t.Helper()
	pub, adm := freePort(t), freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`dsn: memory
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
urls:
  self:
    issuer: http://127.0.0.1:%d/
strategies:
  access_token: jwt
secrets:
  system: ["%s"]
log:
  level: warn
`, pub, adm, pub, randAlnum(32))
	cfgPath := filepath.Join(dir, "hydra.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "hydra.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hydraBin(t), "serve", "all", "--dev", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "DSN=memory")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	h := &hydra{public: "http://127.0.0.1:" + strconv.Itoa(pub), admin: "http://127.0.0.1:" + strconv.Itoa(adm)}
	waitFor(t, name+" to be ready", 60*time.Second, nil, func() (bool, error) {
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s exited: %s", name, tail(string(b), 3000))
		default:
		}
		resp, err := idpc.Get(h.public + "/.well-known/openid-configuration")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		var d struct {
			Issuer string `json:"issuer"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&d) != nil {
			return false, fmt.Errorf("discovery: HTTP %d", resp.StatusCode)
		}
		h.issuer = d.Issuer
		return true, nil
	})
	return h
}

// client registers a client-credentials client and returns its ID.
func (h *hydra) client(t *testing.T, secret string, scopes []string, audiences []string, lifespan string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": strings.Join(scopes, " "), "audience": audiences, "token_endpoint_auth_method": "client_secret_post",
	})
	resp, err := idpc.Post(h.admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var c struct {
		ID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &c) != nil || c.ID == "" {
		t.Fatalf("creating a hydra client: HTTP %d %s", resp.StatusCode, b)
	}
	if lifespan != "" {
		body, _ := json.Marshal(map[string]string{"client_credentials_grant_access_token_lifespan": lifespan})
		req, _ := http.NewRequest(http.MethodPut, h.admin+"/admin/clients/"+c.ID+"/lifespans", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := idpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("setting the client's token lifespan: HTTP %d %s", resp.StatusCode, b)
		}
	}
	return c.ID
}

// idpc talks to Hydra without keep-alive: a POST on an idle connection
// that Hydra is closing fails with EOF and is not retried by net/http
// (CI lost TestOAuthHydra to exactly that under load).
var idpc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// token gets an access token by the client-credentials grant.
func (h *hydra) token(t *testing.T, id, secret, scope, audience string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {scope}, "audience": {audience}}
	resp, err := idpc.PostForm(h.public+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tok) != nil || strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("token for %s: HTTP %d %s", id, resp.StatusCode, b)
	}
	return tok.AccessToken
}

// rotate adds a new signing key to Hydra's access-token key set and returns
// its key ID.
func (h *hydra) rotate(t *testing.T) string {
	t.Helper()
	kid := "rotated-" + randAlnum(8)
	body, _ := json.Marshal(map[string]string{"alg": "RS256", "use": "sig", "kid": kid})
	resp, err := idpc.Post(h.admin+"/admin/keys/hydra.jwt.access-token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("rotating hydra's key: HTTP %d %s", resp.StatusCode, b)
	}
	return kid
}

func jwtPart(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// headerRecorder is a real MCP backend (testbackend over streamable HTTP)
// that records the Authorization header of every request it gets.
type headerRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (h *headerRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Header.Get("Authorization"))
		h.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (h *headerRecorder) authorizations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// rawPost sends one initialize with a bearer token and returns the status,
// headers and JSON-RPC error.
func rawPost(t *testing.T, base, token string) (int, http.Header, *rpcError) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m rpcResponse
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, resp.Header, m.Error
}

func TestOAuthHydra(t *testing.T) {
	npm := npmDir(t)
	srv := chtest.Shared(t)
	idp := startHydra(t, "hydra")
	other := startHydra(t, "hydra-other") // a real, different issuer

	const resource = "https://mcp.test.example/mcp"
	const otherAud = "https://other.test.example/api"
	secret := func() string { return "s-" + randAlnum(24) }
	type principal struct {
		name, id, secret, scope string
		roles                   []string
		allow                   func(kind, target string) bool
	}
	everythingReader := func(kind, target string) bool {
		switch kind {
		case "tool":
			return target == "everything.echo"
		case "prompt", "completion":
			return strings.HasPrefix(target, "everything.")
		case "resource":
			return strings.HasPrefix(target, "everything:demo://resource/static/")
		}
		return false
	}
	ps := []*principal{
		{name: "reader", scope: "mcp mcp.read", roles: []string{"reader"}, allow: everythingReader},
		{name: "admin", scope: "mcp", roles: []string{"admin"}, allow: func(kind, _ string) bool { return kind != "method" }},
		{name: "tbuser", scope: "mcp mcp.tb", roles: []string{"tb-user"}, allow: func(kind, target string) bool {
			return kind == "tool" && strings.HasPrefix(target, "tb.")
		}},
		{name: "norole", scope: "mcp", allow: func(string, string) bool { return false }},
	}
	for _, p := range ps {
		p.secret = secret()
		p.id = idp.client(t, p.secret, strings.Fields("mcp mcp.read mcp.tb"), []string{resource, otherAud}, "")
	}
	shortSecret, noScopeSecret, foreignSecret := secret(), secret(), secret()
	shortID := idp.client(t, shortSecret, []string{"mcp", "mcp.read"}, []string{resource}, "1s")
	noScopeID := idp.client(t, noScopeSecret, []string{"mcp", "mcp.read"}, []string{resource}, "")
	foreignID := other.client(t, foreignSecret, []string{"mcp", "mcp.read"}, []string{resource}, "")

	// The backend over HTTP that records what credentials it is sent.
	rec := &headerRecorder{}
	tbSrv := httptest.NewServer(rec.wrap(testbackend.New(testbackend.Options{}).HTTPHandler()))
	t.Cleanup(tbSrv.Close)
	backendCred := "Bearer backend-" + randAlnum(20)
	credFile := filepath.Join(t.TempDir(), "tb-credential")
	if err := os.WriteFile(credFile, []byte(backendCred+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	staticTok := "tok-static-" + randAlnum(20)

	env := e2eEnv{CHAddr: srv.Addr(), CHDB: chtest.Database(t, srv.Addr()), SpoolDir: t.TempDir(), RedactKey: randAlnum(32)}
	everything := filepath.Join(npm, "node_modules/@modelcontextprotocol/server-everything/dist/index.js")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
shutdown_timeout: 20s
instance: e2e-oauth
servers:
  - name: everything
    transport: stdio
    command: node
    args: [%q, stdio]
    required: true
  - name: tb
    transport: http
    url: %s/mcp
    header_files:
      Authorization: %s
    required: true
auth:
  tokens:
    - name: static-root
      sha256: %s
      tools: ["*"]
      prompts: ["*"]
      resources: ["*"]
      completions: ["*"]
  oauth:
    issuer: %s
    resource: %s
    clock_skew: 1s
    required_scopes: [mcp]
    bindings:
      - role: reader
        scopes: [mcp.read]
      - role: admin
        subjects: [%s]
      - role: tb-user
        scopes: [mcp.tb]
  roles:
    - name: reader
      tools: ["everything.echo"]
      prompts: ["everything.*"]
      resources: ["everything:demo://resource/static/*"]
      completions: ["everything.*"]
    - name: admin
      tools: ["*"]
      prompts: ["*"]
      resources: ["*"]
      completions: ["*"]
    - name: tb-user
      tools: ["tb.*"]
recorder:
  clickhouse:
    addr: ["${E2E_CH_ADDR}"]
    database: ${E2E_CH_DB}
  spool:
    dir: ${E2E_SPOOL_DIR}
  flush_interval: 100ms
  redaction:
    hmac_key_env: E2E_REDACTION_KEY
`, everything, tbSrv.URL, credFile, sha256hex(staticTok), idp.issuer, resource, ps[1].id)
	cfgPath := filepath.Join(t.TempDir(), "oauth.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Config = cfgPath
	gw := startGateway(t, env)

	// RFC 9728 metadata, at the path-suffixed and the plain well-known URL.
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := httpc.Get(gw.url + path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || md.Resource != resource || !slices.Equal(md.AuthorizationServers, []string{idp.issuer}) {
			t.Fatalf("GET %s = %d %+v (%v), want resource %s and authorization server %s", path, resp.StatusCode, md, err, resource, idp.issuer)
		}
	}

	// Tokens.
	toks := map[string]string{}
	for _, p := range ps {
		toks[p.name] = idp.token(t, p.id, p.secret, p.scope, resource)
	}
	good := toks["reader"]
	shortTok := idp.token(t, shortID, shortSecret, "mcp mcp.read", resource)
	parts := strings.Split(good, ".")
	hdr, claims := jwtPart(t, good, 0), jwtPart(t, good, 1)
	noneHdr := map[string]any{"alg": "none", "typ": "JWT", "kid": hdr["kid"]}
	forged := maps(claims, "sub", ps[1].id) // claim to be the admin
	sig := []byte(parts[2])
	sig[len(sig)/2] ^= 1
	if sig[len(sig)/2] == parts[2][len(parts[2])/2] {
		t.Fatal("tampering did not change the signature")
	}
	wantMeta := `resource_metadata="` + "https://mcp.test.example/.well-known/oauth-protected-resource/mcp" + `"`

	bad := []struct{ name, token string }{
		{"wrong audience", idp.token(t, ps[0].id, ps[0].secret, ps[0].scope, otherAud)},
		{"wrong issuer", other.token(t, foreignID, foreignSecret, "mcp mcp.read", resource)},
		{"alg none", b64json(noneHdr) + "." + parts[1] + "."},
		{"alg none, signature kept", b64json(noneHdr) + "." + parts[1] + "." + parts[2]},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig)},
		{"tampered claims", parts[0] + "." + b64json(forged) + "." + parts[2]},
		{"garbage", "a.b.c"},
		{"unknown opaque", "not-a-jwt"},
	}
	// Expired: wait until the 1 s token is past exp + the 1 s skew.
	exp := time.Unix(int64(jwtPart(t, shortTok, 1)["exp"].(float64)), 0)
	time.Sleep(time.Until(exp.Add(1500 * time.Millisecond)))
	bad = append(bad, struct{ name, token string }{"expired", shortTok})
	for _, b := range bad {
		status, h, rerr := rawPost(t, gw.url, b.token)
		reqID := h.Get("X-Request-Id")
		switch {
		case status != http.StatusUnauthorized:
			t.Errorf("%s: HTTP %d, want 401", b.name, status)
		case reqID == "" || rerr == nil || !strings.Contains(string(rerr.Data), reqID):
			t.Errorf("%s: request ID %q not in the error %+v", b.name, reqID, rerr)
		case !strings.Contains(h.Get("WWW-Authenticate"), wantMeta) || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`):
			t.Errorf("%s: WWW-Authenticate %q, want invalid_token and %s", b.name, h.Get("WWW-Authenticate"), wantMeta)
		}
	}
	// No token at all: 401 naming the metadata, no error code (RFC 6750 §3.1).
	if status, h, _ := rawPost(t, gw.url, ""); status != 401 || !strings.Contains(h.Get("WWW-Authenticate"), wantMeta) || strings.Contains(h.Get("WWW-Authenticate"), "error=") {
		t.Errorf("no token: HTTP %d, WWW-Authenticate %q", status, h.Get("WWW-Authenticate"))
	}
	// A valid token without the required scope: 403 insufficient_scope.
	status, h, _ := rawPost(t, gw.url, idp.token(t, noScopeID, noScopeSecret, "mcp.read", resource))
	if wa := h.Get("WWW-Authenticate"); status != http.StatusForbidden || !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="mcp"`) || !strings.Contains(wa, wantMeta) {
		t.Errorf("token without scope mcp: HTTP %d, WWW-Authenticate %q, want 403 insufficient_scope scope=\"mcp\"", status, wa)
	}

	// The policy matrix: JWT principals (and the static token) × targets.
	clients := map[string]*mcpClient{}
	for _, p := range ps {
		clients[p.name] = dial(t, gw.url, toks[p.name])
	}
	clients["static"] = dial(t, gw.url, staticTok)
	ps = append(ps, &principal{name: "static", allow: func(kind, target string) bool { return kind != "method" }})
	staticDoc := ""
	for _, u := range matrixList(t, clients["static"], "resources/list", "resources", "uri") {
		if strings.HasPrefix(u, "demo://resource/static/document/") {
			staticDoc = u
			break
		}
	}
	if staticDoc == "" {
		t.Fatal("server-everything lists no static document")
	}
	type target struct {
		method, kind, oracle string
		params               map[string]any
	}
	targets := []target{
		{"tools/call", "tool", "everything.echo", map[string]any{"name": "everything.echo", "arguments": map[string]any{"message": "m"}}},
		{"tools/call", "tool", "everything.get-env", map[string]any{"name": "everything.get-env", "arguments": map[string]any{}}},
		{"tools/call", "tool", "tb.echo", map[string]any{"name": "tb.echo", "arguments": map[string]any{"message": "m"}}},
		{"prompts/get", "prompt", "everything.simple-prompt", map[string]any{"name": "everything.simple-prompt", "arguments": map[string]any{}}},
		{"prompts/get", "prompt", "tb.greet", map[string]any{"name": "tb.greet", "arguments": map[string]any{"name": "x"}}},
		{"resources/read", "resource", "everything:" + staticDoc, map[string]any{"uri": staticDoc}},
		{"resources/read", "resource", "everything:demo://resource/dynamic/text/1", map[string]any{"uri": "demo://resource/dynamic/text/1"}},
		{"completion/complete", "completion", "everything.completable-prompt", map[string]any{
			"ref": map[string]any{"type": "ref/prompt", "name": "everything.completable-prompt"}, "argument": map[string]any{"name": "department", "value": "E"}}},
		{"custom/thing", "method", "custom/thing", map[string]any{}},
	}
	type cell struct {
		p      *principal
		tg     target
		allow  bool
		code   int
		reqID  string
		answer string
	}
	var cells []*cell
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, p := range ps {
		for _, tg := range targets {
			c := &cell{p: p, tg: tg, allow: p.allow(tg.kind, tg.oracle)}
			resp, reqID, err := clients[p.name].request(ctx, tg.method, tg.params)
			if err != nil && resp.Error == nil {
				t.Fatalf("%s %s %s: %v", p.name, tg.method, tg.oracle, err)
			}
			c.reqID = reqID
			if resp.Error != nil {
				c.code, c.answer = resp.Error.Code, resp.Error.Message
			} else if strings.Contains(string(resp.Result), `"isError":true`) {
				c.code, c.answer = 1, string(resp.Result) // a tool error: no code, but not the answer wanted
			}
			cells = append(cells, c)
		}
	}
	// Lists show only what the role allows.
	if tools := matrixList(t, clients["reader"], "tools/list", "tools", "name"); !slices.Equal(tools, []string{"everything.echo"}) {
		t.Errorf("reader's tools/list = %v, want [everything.echo]", tools)
	}
	if tools := matrixList(t, clients["norole"], "tools/list", "tools", "name"); len(tools) != 0 {
		t.Errorf("norole's tools/list = %v, want none", tools)
	}

	// Key rotation: a token signed with a key the gateway has not seen.
	kid := idp.rotate(t)
	rotated := idp.token(t, ps[0].id, ps[0].secret, ps[0].scope, resource)
	if got := jwtPart(t, rotated, 0)["kid"]; got != kid {
		t.Fatalf("after rotation hydra signs with key %v, want %s", got, kid)
	}
	// The gateway fetches the keys again at most every 5 s (so bad tokens
	// cannot make it hammer the provider): the new key is seen by then.
	waitFor(t, "a token signed with the rotated key to be accepted", 30*time.Second, gw.proc, func() (bool, error) {
		status, _, rerr := rawPost(t, gw.url, rotated)
		return status == http.StatusOK, fmt.Errorf("HTTP %d %+v", status, rerr)
	})
	rc := dial(t, gw.url, rotated)
	if resp, _ := rc.callTool(t, "everything.echo", map[string]any{"message": "after rotation"}); resp.Error != nil {
		t.Errorf("a token signed with the rotated key: %+v", resp.Error)
	}

	// What the audit trail says.
	gw.waitWritten(t)
	conn := chConn(t, env.CHAddr)
	ids := ch.GroupSet{}
	for _, c := range cells {
		ids.Value = append(ids.Value, c.reqID)
	}
	type recd struct {
		upstream       uint64
		principal      string
		decision, rule string
		roles          string
	}
	got := map[string]*recd{}
	rows, err := conn.Query(ctx, `SELECT request_id, countIf(hop = 'upstream'), anyIf(principal, hop = 'auth'), anyIf(auth_decision, hop = 'auth'),
		anyIf(auth_rule, hop = 'auth'), anyIf(attr_values[indexOf(attr_keys, 'auth.roles')], hop = 'auth')
		FROM `+env.CHDB+`.hops WHERE request_id IN ? GROUP BY request_id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		r := &recd{}
		var id string
		if err := rows.Scan(&id, &r.upstream, &r.principal, &r.decision, &r.rule, &r.roles); err != nil {
			t.Fatal(err)
		}
		got[id] = r
	}
	rows.Close()
	passed := 0
	for _, c := range cells {
		r := got[c.reqID]
		name := c.p.name + " " + c.tg.method + " " + c.tg.oracle
		wantPrincipal := c.p.id
		if c.p.name == "static" {
			wantPrincipal = "static-root"
		}
		switch {
		case r == nil:
			t.Errorf("%s: nothing recorded for request %s", name, c.reqID)
		case c.allow && (c.code != 0 || r.decision != "allowed" || r.upstream == 0):
			t.Errorf("%s: answered %d %q, recorded %+v; want allowed and forwarded", name, c.code, c.answer, r)
		case !c.allow && (c.code != -32003 || r.decision != "denied" || r.upstream != 0):
			t.Errorf("%s: answered %d, recorded %+v; want -32003, denied, no upstream hop", name, c.code, r)
		case r.principal != wantPrincipal || r.roles != strings.Join(c.p.roles, ",") || r.rule == "":
			t.Errorf("%s: recorded principal %q roles %q rule %q, want %q %q and a rule", name, r.principal, r.roles, r.rule, wantPrincipal, strings.Join(c.p.roles, ","))
		case c.p.name == "norole" && !strings.HasSuffix(r.rule, ":default-deny"):
			t.Errorf("%s: rule %q, want a default deny", name, r.rule)
		case c.allow && len(c.p.roles) > 0 && !strings.HasPrefix(r.rule, "role:"):
			t.Errorf("%s: rule %q, want the role's rule", name, r.rule)
		default:
			passed++
		}
	}
	t.Logf("policy matrix: %d cells, %d passed; %d bad tokens refused", len(cells), passed, len(bad)+2)

	// The audit trail carries each call's principal, roles and rule, and
	// `mcptrail audit --role` finds them.
	auditRows, err := conn.Query(ctx, `SELECT request_id, principal, roles, rule FROM `+env.CHDB+`.audit FINAL WHERE request_id IN ?`, ids)
	if err != nil {
		t.Fatal(err)
	}
	type auditRec struct {
		principal, rule string
		roles           []string
	}
	audited := map[string]auditRec{}
	for auditRows.Next() {
		var (
			id string
			a  auditRec
		)
		if err := auditRows.Scan(&id, &a.principal, &a.roles, &a.rule); err != nil {
			t.Fatal(err)
		}
		audited[id] = a
	}
	auditRows.Close()
	wantByRole := map[string]int{}
	for _, c := range cells {
		a, ok := audited[c.reqID]
		r := got[c.reqID]
		if !ok || r == nil || strings.Join(a.roles, ",") != strings.Join(c.p.roles, ",") || a.rule != r.rule || a.principal != r.principal {
			t.Errorf("%s %s %s: audit row %+v (found %v), want principal, roles %q and rule of the auth hop %+v", c.p.name, c.tg.method, c.tg.oracle, a, ok, c.p.roles, r)
		}
		for _, role := range c.p.roles {
			wantByRole[role]++
		}
	}
	for role, want := range wantByRole {
		out, stderr, code := runCLI(t, "audit", "--role", role, "--since", "1h", "--format", "csv", "--clickhouse", env.CHAddr, "--database", env.CHDB)
		if code != 0 {
			t.Fatalf("audit --role %s: exit %d: %s", role, code, stderr)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("audit --role %s CSV: %v", role, err)
		}
		n := 0
		for _, rec := range recs[1:] {
			if slices.Contains(strings.Split(rec[len(rec)-1], ","), role) && rec[9] != "" {
				n++
			}
		}
		if n != len(recs)-1 || n < want {
			t.Errorf("audit --role %s: %d rows, %d with the role; want at least the %d calls of the matrix", role, len(recs)-1, n, want)
		}
	}

	// No token passthrough: the HTTP backend saw only its own credential.
	seen := rec.authorizations()
	if len(seen) == 0 {
		t.Fatal("the HTTP backend got no request")
	}
	for _, a := range seen {
		if a != backendCred {
			t.Fatalf("the HTTP backend got Authorization %q, want only its own credential %q", a, backendCred)
		}
	}
}

// maps returns a copy of m with k set to v.
func maps(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m))
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}
