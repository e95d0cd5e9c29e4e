package cli

import (
	"maps"
	"testing"
)

func TestParseTokens(t *testing.T) {
	for _, tt := range []struct {
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{[]string{"tok"}, map[string]string{"": "tok"}, false},
		{[]string{"alice=tok"}, map[string]string{"alice": "tok"}, false},
		// base64 padding is part of the token, not a principal separator
		{[]string{"dG9rZW4="}, map[string]string{"": "dG9rZW4="}, false},
		{[]string{"dG9rZQ=="}, map[string]string{"": "dG9rZQ=="}, false},
		{[]string{"alice=dG9rZQ=="}, map[string]string{"alice": "dG9rZQ=="}, false},
		{[]string{"alice=tok", "dG9rZW4="}, map[string]string{"alice": "tok", "": "dG9rZW4="}, false},
		{[]string{"alice=a=b"}, map[string]string{"alice": "a=b"}, false},
		{[]string{"alice="}, nil, true}, // e.g. alice=$UNSET
		{[]string{"="}, nil, true},
	} {
		got, err := parseTokens(tt.in)
		if (err != nil) != tt.wantErr || !tt.wantErr && !maps.Equal(got, tt.want) {
			t.Errorf("parseTokens(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
