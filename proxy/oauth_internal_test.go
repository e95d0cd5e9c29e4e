package proxy

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcptrail/mcptrail/proxy/config"
)

func TestResourceMetadataURL(t *testing.T) {
	for _, tt := range []struct{ resource, want string }{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{"https://mcp.example.com/", "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{"https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{"http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/b"},
	} {
		if got := resourceMetadataURL(tt.resource); got != tt.want {
			t.Errorf("resourceMetadataURL(%q) = %q, want %q", tt.resource, got, tt.want)
		}
	}
}

func TestBackendHeaders(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "cred")
	if err := os.WriteFile(f, []byte("Bearer one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := config.Server{Name: "crm", Headers: map[string]string{"X-Tenant": "acme"}, HeaderFiles: map[string]string{"Authorization": f}}
	got, err := backendHeaders(s)
	if want := map[string]string{"X-Tenant": "acme", "Authorization": "Bearer one"}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("backendHeaders = %v, %v; want %v", got, err, want)
	}
	// A rotated file is read at the next connect.
	if err := os.WriteFile(f, []byte("Bearer two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := backendHeaders(s); got["Authorization"] != "Bearer two" {
		t.Errorf("after rotation Authorization = %q, want Bearer two", got["Authorization"])
	}
	if s.Headers["Authorization"] != "" {
		t.Error("backendHeaders modified the configured headers")
	}
	s.HeaderFiles["Authorization"] = filepath.Join(dir, "missing")
	if _, err := backendHeaders(s); err == nil {
		t.Error("a missing header file gave no error")
	}
}
