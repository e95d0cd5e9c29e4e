package proxy

import (
	"encoding/json"
	"testing"
)

func TestMergeCapability(t *testing.T) {
	for _, tc := range []struct{ name, a, b, want string }{
		{"first", "", `{"listChanged":true}`, `{"listChanged":true}`},
		{"true wins", `{"listChanged":false}`, `{"listChanged":true}`, `{"listChanged":true}`},
		{"true kept", `{"subscribe":true}`, `{"subscribe":false}`, `{"subscribe":true}`},
		{"members unioned", `{"listChanged":true}`, `{"subscribe":true}`, `{"listChanged":true,"subscribe":true}`},
		{"nested", `{"requests":{"tools":{"call":{}}}}`, `{"list":{},"requests":{"sampling":{}}}`, `{"list":{},"requests":{"sampling":{},"tools":{"call":{}}}}`},
		{"empty and empty", `{}`, `{}`, `{}`},
	} {
		var a json.RawMessage
		if tc.a != "" {
			a = json.RawMessage(tc.a)
		}
		if got := string(mergeCapability(a, json.RawMessage(tc.b))); got != tc.want {
			t.Errorf("%s: mergeCapability(%s, %s) = %s, want %s", tc.name, tc.a, tc.b, got, tc.want)
		}
	}
}
