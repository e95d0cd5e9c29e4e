package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// TestModernTaskOwnedByOwnerKey: a task belongs to the principal that
// created it as OwnerKey tells principals apart: a JWT whose subject equals
// a static token's principal name is someone else and gets "Task not found"
// for that token's task (the red team's finding: tasks were bound by name).
func TestModernTaskOwnedByOwnerKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": idp.URL, "jwks_uri": idp.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := json.Marshal(map[string]any{"iss": idp.URL, "aud": "https://gw.example/mcp", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	jws, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}

	url := startEverythingHTTP(t)
	e := startGateway(t, &config.Config{
		Servers: []config.Server{{Name: "everything", Transport: "http", URL: url, Timeout: 30 * time.Second}},
		Auth: config.Auth{
			Tokens: []config.Token{{Name: "alice", SHA256: sha("alice-static"), Tools: []string{"everything.*"}}},
			Roles:  []config.Role{{Name: "all", Tools: []string{"everything.*"}}},
			OAuth: &config.OAuth{Issuer: idp.URL, Resource: "https://gw.example/mcp",
				Bindings: []config.Binding{{Role: "all", Subjects: []string{"alice"}}}},
		},
	})
	caps := map[string]any{"extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
	as := func(bearer, method, name string) map[string]string {
		h := modernHeaders(method, name)
		h["Authorization"] = "Bearer " + bearer
		return h
	}
	call := map[string]any{"name": "everything.simulate-research-query", "arguments": map[string]any{"topic": "owners"}}
	_, b := post(t, e.url, modernBody(1, "tools/call", call, caps), as("alice-static", "tools/call", "everything.simulate-research-query"))
	a := decodeAnswer(t, b)
	var taskID string
	_ = json.Unmarshal(a.Result["taskId"], &taskID)
	if a.Error != nil || !strings.HasPrefix(taskID, "everything/") {
		t.Fatalf("tools/call = %s, want an extension task", b)
	}
	_, b = post(t, e.url, modernBody(2, "tasks/get", map[string]any{"taskId": taskID}, caps), as(jwt, "tasks/get", ""))
	if a := decodeAnswer(t, b); a.Error == nil || a.Error.Code != -32602 {
		t.Errorf("JWT alice: tasks/get of static alice's task = %s, want -32602 Task not found", b)
	}
	_, b = post(t, e.url, modernBody(3, "tasks/get", map[string]any{"taskId": taskID}, caps), as("alice-static", "tasks/get", ""))
	if a := decodeAnswer(t, b); a.Error != nil {
		t.Errorf("static alice: tasks/get of her own task = %s, want the task", b)
	}
}
