package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// oauthConfig turns auth.oauth and auth.roles into the auth package's form;
// nil when JWTs are not accepted.
func oauthConfig(a config.Auth) *auth.OAuth {
	o := a.OAuth
	if o == nil {
		return nil
	}
	out := &auth.OAuth{Issuer: o.Issuer, Resource: o.Resource, ClockSkew: o.ClockSkew, Algorithms: o.Algorithms,
		RequiredScopes: o.RequiredScopes, PrincipalClaim: o.PrincipalClaim, GroupsClaim: o.GroupsClaim}
	for _, b := range o.Bindings {
		out.Bindings = append(out.Bindings, auth.Binding{Role: b.Role, Subjects: b.Subjects, Groups: b.Groups, Scopes: b.Scopes})
	}
	for _, r := range a.Roles {
		out.Roles = append(out.Roles, auth.Role{Name: r.Name, Tools: r.Tools, Prompts: r.Prompts,
			Resources: r.Resources, Completions: r.Completions, Methods: r.Methods})
	}
	return out
}

// WellKnownProtectedResource is the RFC 9728 metadata path prefix.
const WellKnownProtectedResource = "/.well-known/oauth-protected-resource"

// resourceMetadataURL is where the protected resource metadata of resource
// is served (RFC 9728 §3.1): the well-known prefix inserted between the
// host and the resource's path.
func resourceMetadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + WellKnownProtectedResource + path
}

// protectedResourceMetadata is the RFC 9728 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name"`
}

// serveResourceMetadata answers GET /.well-known/oauth-protected-resource
// (and the same followed by the resource's path), unauthenticated, as
// clients read it to find the authorization server.
func (g *Gateway) serveResourceMetadata(w http.ResponseWriter, r *http.Request) {
	o := g.ps().auth.OAuth()
	if o == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	scopes := g.conf().Auth.OAuth.ScopesSupported
	if len(scopes) == 0 {
		scopes = o.RequiredScopes
	}
	b, _ := json.Marshal(protectedResourceMetadata{
		Resource: o.Resource, AuthorizationServers: []string{o.Issuer}, ScopesSupported: scopes,
		BearerMethodsSupported: []string{"header"}, ResourceName: "mcptrail",
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(b)
}

// challenge is the WWW-Authenticate value of a 401 or 403: with OAuth on,
// it names the resource metadata (MCP authorization, RFC 9728 §5.1).
func (g *Gateway) challenge(errCode, desc, scope string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="mcptrail"`)
	if o := g.ps().auth.OAuth(); o != nil {
		b.WriteString(`, resource_metadata="` + resourceMetadataURL(o.Resource) + `"`)
	}
	if errCode != "" {
		b.WriteString(`, error="` + errCode + `", error_description="` + strings.ReplaceAll(desc, `"`, `'`) + `"`)
	}
	if scope != "" {
		b.WriteString(`, scope="` + scope + `"`)
	}
	return b.String()
}

// authFailure maps a failed authentication to what the client is told: a
// bounded description (also the recorded rule), the HTTP status and the
// WWW-Authenticate challenge. The detail (why a JWT was refused) is only
// logged: it may carry claim values the client chose.
func (g *Gateway) authFailure(err error) (desc string, status int, challenge string) {
	var scope *auth.InsufficientScopeError
	switch {
	case errors.As(err, &scope):
		desc = "insufficient scope"
		return desc, http.StatusForbidden, g.challenge("insufficient_scope", desc, scope.Scope)
	case errors.Is(err, auth.ErrProviderUnavailable):
		return "identity provider unavailable", http.StatusServiceUnavailable, ""
	case errors.Is(err, auth.ErrMissingToken):
		desc = "missing bearer token"
		if g.ps().auth.OAuth() != nil && !strings.Contains(err.Error(), ":") {
			// No credentials at all: RFC 6750 §3.1 sends no error code.
			return desc, http.StatusUnauthorized, g.challenge("", desc, "")
		}
	case g.ps().auth.OAuth() != nil:
		desc = "invalid or unknown bearer token"
	default:
		desc = "unknown bearer token"
	}
	return desc, http.StatusUnauthorized, g.challenge("invalid_token", desc, "")
}

// backendHeaders are the headers an HTTP backend gets with every request:
// its own credential from headers (values from the environment via ${NAME})
// and header_files, read now so that a rotated file is used at the next
// connect. Nothing of the client's request (its Authorization above all)
// is among them: a client's token is for this gateway only (MCP
// authorization: no token passthrough).
func backendHeaders(s config.Server) (map[string]string, error) {
	if len(s.HeaderFiles) == 0 {
		return s.Headers, nil
	}
	h := make(map[string]string, len(s.Headers)+len(s.HeaderFiles))
	for k, v := range s.Headers {
		h[k] = v
	}
	for k, f := range s.HeaderFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading header %s of server %s: %w", k, s.Name, err)
		}
		h[k] = strings.TrimSpace(string(b))
	}
	return h, nil
}
