package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"db_password", []string{"db", "password"}},
		{"passwordHash", []string{"password", "hash"}},
		{"APIKey", []string{"api", "key"}},
		{"X-Api-Key", []string{"x", "api", "key"}},
		{"clientSecret2", []string{"client", "secret2"}},
		{"oauth2Token", []string{"oauth2", "token"}},
		{"  --a..B", []string{"a", "b"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := splitWords(tt.in, nil); !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Keys that contain a secret word are secrets whatever their spelling;
// keys that only describe a secret, and LLM token counts, are not.
func TestKeyWords(t *testing.T) {
	r := mustNew(t, Config{})
	secret := map[string]string{
		"password": "password", "Password": "password", "db_password": "password", "passwordHash": "password",
		"DBPassword": "password", "dbpassword": "password", "user-passwords": "password", "new_passwd": "passwd",
		"apiKey": "apikey", "api-key": "api-key", "x_api_key": "x-api-key", "X-API-KEY": "x-api-key",
		"xapikey": "x-api-key", "openaiApiKey": "api_key", "clientSecret": "client_secret", "client_secret": "client_secret",
		"secretAccessKey": "access_key", "aws_secret_access_key": "access_key", "accessToken": "access_token",
		"access-token": "access_token", "refreshToken": "refresh_token", "csrftoken": "token", "id_token": "token",
		"sessionToken": "token", "x-auth-token": "x-auth-token", "Authorization": "authorization",
		"proxyAuthorization": "proxy-authorization", "Cookie": "cookie", "Set-Cookie": "set-cookie",
		"privateKey": "private_key", "ssh_private_key": "private_key", "signingKey": "signing_key",
		"credentials": "credential", "googleCredentials": "credential", "sentry_dsn": "dsn", "passphrase": "passphrase",
		"token_value": "token", "AccountKey": "account_key", "SharedAccessKey": "access_key", "X-Amz-Signature": "x-amz-signature",
	}
	for key, rule := range secret {
		if got, ok := r.keys.match(key); !ok || got != rule {
			t.Errorf("key %q: rule %q, %v; want %q", key, got, ok, rule)
		}
	}
	for _, key := range []string{
		"maxTokens", "max_tokens", "total_tokens", "tokenizer", "token_count", "tokenCount", "progressToken",
		"passwordPolicy", "password_required", "secret_name", "api_key_env", "tokenUrl", "token_type",
		"hmac_key_env", "keyboard", "name", "message", "author", "monkey", "secretary_name", "description",
		"session_id", "cursor", "nextCursor", "pass", "tokens",
	} {
		if rule, ok := r.keys.match(key); ok {
			t.Errorf("key %q matched rule %q, want no match", key, rule)
		}
	}
	// A rule naming the describing word itself wins over the exception.
	c := mustNew(t, Config{Keys: []string{"token_count", "progress_token"}})
	for _, key := range []string{"token_count", "tokenCount", "progressToken"} {
		if _, ok := c.keys.match(key); !ok {
			t.Errorf("with rules %v, key %q is not matched", []string{"token_count", "progress_token"}, key)
		}
	}
}

// The shapes of issue 7 item 10, and their neighbours: each secret must go,
// the text around it must stay.
func TestTextShapes(t *testing.T) {
	r := mustNew(t, Config{})
	tests := []struct {
		name, in   string
		secrets    []string
		keep       []string
		rules      []string // rules of the placeholders, in order
		jsonLegacy bool     // also checked inside a JSON string value
	}{
		{"JSON after a prefix", `Echo: {"password": "pw-123", "user": "bob"}`, []string{"pw-123"}, []string{"Echo: {", `"user": "bob"`}, []string{"password"}, true},
		{"nested JSON after a prefix", `failed: {"error":{"creds":{"user":"u","pass":"p-1"}},"ok":false} (retry)`, []string{"p-1"}, []string{"failed: {", "(retry)", `"ok":false`}, []string{"creds"}, true},
		{"two JSON objects", `a {"token":"t-1"} b {"x":1} c {"apiKey":"k-2"}`, []string{"t-1", "k-2"}, []string{"a {", `{"x":1}`, " c "}, []string{"token", "apikey"}, true},
		{"form style", `password=pw-1&token=tk-2&user=bob`, []string{"pw-1", "tk-2"}, []string{"&user=bob", "password=", "&token="}, []string{"password", "token"}, true},
		{"query string", `memory://graph?x=1&api_key=ak-9&y=2`, []string{"ak-9"}, []string{"memory://graph?x=1&api_key=", "&y=2"}, []string{"api_key"}, true},
		{"header line", "GET /\r\nAuthorization: Bearer abcdefgh123456\r\nX-Api-Key: hk-7\r\nAccept: */*", []string{"abcdefgh123456", "hk-7"}, []string{"Accept: */*", "Authorization: Bearer «"}, []string{"bearer", "x-api-key"}, true},
		{"basic auth", `Authorization: Basic dXNlcjpwYXNz`, []string{"dXNlcjpwYXNz"}, []string{"Authorization: Basic «"}, []string{"authorization"}, true},
		{"cookie", `Cookie: sid=s-3; theme=dark`, []string{"sid=s-3"}, []string{"theme=dark"}, []string{"cookie"}, true},
		{"quoted non-JSON", `{'password': 'pw 4', 'n': 1`, []string{"pw 4"}, []string{"'n': 1"}, []string{"password"}, true},
		{"escaped quotes", `body={\"client_secret\":\"cs-5\"}`, []string{"cs-5"}, []string{`body={\"client_secret\":\"«`}, []string{"client_secret"}, true},
		{"arrow", `{ :db_password => "dbp-6" }`, []string{"dbp-6"}, nil, []string{"password"}, true},
		{"AWS key after underscore", "awskey_AKIAIOSFODNN7EXAMPLE", []string{"AKIAIOSFODNN7EXAMPLE"}, []string{"awskey_"}, []string{"aws_access_key_id"}, true},
		{"AWS key glued to a word", "idAKIAIOSFODNN7EXAMPLEx", []string{"AKIAIOSFODNN7EXAMPLE"}, []string{"id"}, []string{"aws_access_key_id"}, true},
		{"GitHub token after underscore", "tok_ghp_" + strings.Repeat("a1B2", 9), []string{"ghp_" + strings.Repeat("a1B2", 9)}, []string{"tok_"}, []string{"github_token"}, true},
		{"PEM block", "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\nrest", []string{"b3BlbnNzaC1rZXk"}, []string{"rest"}, []string{"pem_private_key"}, true},
		{"PGP block", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----", []string{"lQOYBF"}, nil, []string{"pem_private_key"}, true},
		{"URL password", "dsn postgres://app:pg-pass-8@db:5432/x", []string{"pg-pass-8"}, []string{"postgres://app:", "@db:5432/x"}, []string{"url_password"}, true},
		{"OpenAI key", "key sk-proj-" + strings.Repeat("Ab3", 12), []string{"sk-proj-" + strings.Repeat("Ab3", 12)}, []string{"key "}, []string{"llm_api_key"}, true},
		{"tool name with a token", "everything.sk_test_" + strings.Repeat("Z", 24), []string{"sk_test_" + strings.Repeat("Z", 24)}, []string{"everything."}, []string{"stripe_key"}, true},
		{"XML element", `<user>bob</user><db:password>xpw-11</db:password>`, []string{"xpw-11"}, []string{"<user>bob</user><db:password>«", "</db:password>"}, []string{"password"}, true},
		{"command-line flag", `mysql -u root --password fpw-12 --host db`, []string{"fpw-12"}, []string{"--host db", "--password «"}, []string{"password"}, true},
		{"key holding a token", `{"ghp_` + strings.Repeat("k", 36) + `": 1}`, []string{"ghp_" + strings.Repeat("k", 36)}, []string{": 1}"}, []string{"github_token"}, true},
		{"connection string", `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=azk-13==;EndpointSuffix=core`, []string{"azk-13"}, []string{"AccountName=acct;", ";EndpointSuffix=core"}, []string{"account_key"}, true},
		{"presigned URL", `https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDEXAMPLE%2F2026&X-Amz-Signature=sig-14&X-Amz-Expires=60`, []string{"sig-14", "AKIDEXAMPLE"}, []string{"&X-Amz-Expires=60"}, []string{"credential", "x-amz-signature"}, true},
		{"JSON-RPC id text", `"password=pw-10"`, []string{"pw-10"}, nil, []string{"password"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := r.String(tt.in)
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("String(%q) = %q: leaks %q", tt.in, got, s)
				}
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("String(%q) = %q: lost %q", tt.in, got, k)
				}
			}
			var rules []string
			for _, p := range FindPlaceholders([]byte(got)) {
				rules = append(rules, p.Rule)
			}
			if !slices.Equal(rules, tt.rules) || n != len(tt.rules) {
				t.Errorf("String(%q) = %q, %d: rules %q, want %q", tt.in, got, n, rules, tt.rules)
			}
			if again, n2 := r.String(got); n2 != 0 || again != got {
				t.Errorf("String twice = %q, %d; want unchanged", again, n2)
			}
			if !tt.jsonLegacy {
				return
			}
			doc, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": tt.in}}})
			out, _ := r.JSON(doc)
			if !json.Valid(out) {
				t.Fatalf("JSON(%s) = %s: invalid", doc, out)
			}
			var back struct{ Content []struct{ Text string } }
			_ = json.Unmarshal(out, &back)
			for _, s := range tt.secrets {
				if strings.Contains(back.Content[0].Text, s) {
					t.Errorf("JSON(%s) = %s: leaks %q", doc, out, s)
				}
			}
		})
	}
}

// Text that only looks like the shapes above stays as it is.
func TestTextNoFalsePositives(t *testing.T) {
	r := mustNew(t, Config{})
	for _, s := range []string{
		"https://example.com/path?q=1&page=2",
		"token_count=12 max_tokens: 4096 tokens: 7",
		"secret://vault/path", // a scheme, not a key
		"12:30:45 and a=b, c: d",
		`{"progressToken": 7, "tokenCount": 3}`,
		"token == other", // a comparison
		`Echo: {"message": "hello"}`,
		"password: null",
		"the secret of success",
		"{{ template }} { not json",
		"Bearer",
		"<p>token counts</p> <a href=x>secret</a> a->b x=>y",
		"run --token-count 5 --password --verbose -- password",
	} {
		if got, n := r.String(s); n != 0 || got != s {
			t.Errorf("String(%q) = %q, %d; want unchanged", s, got, n)
		}
	}
}

// A JSON-RPC id is never replaced by a key rule, but a secret pattern in
// it is redacted like any other string.
func TestEnvelopeIDPatterns(t *testing.T) {
	r := mustNew(t, Config{Keys: append([]string{"id"}, DefaultKeys...)})
	in := []byte(`{"jsonrpc":"2.0","id":"ghp_` + strings.Repeat("x", 36) + `","method":"m","params":{"id":"p"}}`)
	out, n := r.JSON(in)
	if n != 2 || bytes.Contains(out, []byte("ghp_")) || !bytes.Contains(out, []byte(`"id":"«redacted:github_token:`)) {
		t.Errorf("JSON(%s) = %s, %d; want the id's token and params.id redacted", in, out, n)
	}
}

// canaryCarriers put a secret where a rule must find it; %s is the secret.
var canaryCarriers = []struct {
	format string
	aws    bool // the secret must look like an AWS key id
}{
	{format: `{"password": "%s"}`}, {format: `{"db_password":"%s","x":1}`}, {format: `{"apiKey":"%s"}`},
	{format: `{"a":{"clientSecret":["%s"]}}`}, {format: `password=%s`}, {format: `&token=%s&`},
	{format: `Authorization: Bearer %s`}, {format: "X-Api-Key: %s\r\n"}, {format: `'accessToken': '%s'`},
	{format: `"passwordHash" : "%s"`}, {format: `awskey_%s`, aws: true}, {format: `%s`, aws: true},
	{format: "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----"}, {format: `postgres://u:%s@h/db`},
	{format: `Echo: {"password": "%s"}`}, {format: `?x=1&api-key=%s`}, {format: `ghp_%s`},
}

// FuzzCanaryNeverSurvives: a secret in a shape a rule covers never
// survives redaction, whatever text surrounds it, as free text (String),
// as a JSON string value (JSON, Payload) or as a JSON document.
func FuzzCanaryNeverSurvives(f *testing.F) {
	for i := range canaryCarriers {
		f.Add("", "", uint8(i))
		f.Add(`{"x":"`, `"}`, uint8(i))
		f.Add("{{{{{{{{{{ ", " }", uint8(i))
		f.Add(`[{"a":`, `}]`, uint8(i))
		f.Add("«redacted:", ":hmac:0123456789abcdef»", uint8(i))
		f.Add("x", "y=z", uint8(i))
	}
	r := mustNew(f, Config{})
	const plain = "Zq7CanaryXv93Kp0Lm2Nb4Vc6Xz8Aa1Ss3Dd5"
	const aws = "AKIACANARYX7Q2W9E4R1"
	f.Fuzz(func(t *testing.T, prefix, suffix string, which uint8) {
		c := canaryCarriers[int(which)%len(canaryCarriers)]
		secret := plain
		if c.aws {
			secret = aws
		}
		text := prefix + strings.Replace(c.format, "%s", secret, 1) + suffix
		leaks := func(what, out string) {
			t.Helper()
			if strings.Contains(out, secret) {
				t.Fatalf("%s of %q = %q: the secret survives", what, text, out)
			}
		}
		out, _ := r.String(text)
		leaks("String", out)
		doc, _ := json.Marshal(map[string]string{"text": text})
		jout, _ := r.JSON(doc)
		var back map[string]string
		if err := json.Unmarshal(jout, &back); err != nil {
			t.Fatalf("JSON(%s) = %s: %v", doc, jout, err)
		}
		leaks("JSON", back["text"])
		pout, _, _, _ := r.Payload(doc)
		leaks("Payload", string(pout))
		if json.Valid([]byte(text)) {
			dout, _ := r.JSON([]byte(text))
			leaks("JSON document", string(dout))
		}
	})
}

// The payload digest is keyed: a plain sha256 of a payload whose only
// unknown is a short secret would let anyone holding the table guess it.
func TestPayloadDigestIsKeyed(t *testing.T) {
	in := []byte(`{"name":"db.login","arguments":{"password":"1234"}}`)
	a := mustNew(t, Config{})
	_, _, _, d1 := a.Payload(in)
	_, _, _, d2 := a.Payload(in)
	plain := sha256.Sum256(in)
	other, err := New(Config{}, []byte("another key"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, d3 := other.Payload(in)
	if d1 != d2 || len(d1) != 64 || d1 == hex.EncodeToString(plain[:]) || d1 == d3 {
		t.Errorf("digests %s, %s (other key %s, plain sha256 %x); want equal 64-hex digests, keyed", d1, d2, d3, plain)
	}
}
