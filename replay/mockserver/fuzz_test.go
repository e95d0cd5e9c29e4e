package mockserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzServeHTTP(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
		`{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"fail","arguments":{}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":7}}`,
		`[1]`, `{`, `{"jsonrpc":"2.0","id":null,"result":1}`,
	} {
		f.Add(s)
	}
	mock, err := New(recording(f, true), Config{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		mock.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/everything/mcp", strings.NewReader(body)))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("status %d with invalid JSON body %q for %q", rec.Code, rec.Body, body)
			}
		case http.StatusAccepted, http.StatusBadGateway, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("unexpected status %d for %q", rec.Code, body)
		}
	})
}
