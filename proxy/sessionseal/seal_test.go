package sessionseal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func ring(t testing.TB, lines ...string) *Keyring {
	t.Helper()
	k, err := ParseKeys([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return k
}

const (
	key1 = "1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	key2 = "2 HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo="
)

func sample() *State {
	return &State{
		Owner: OwnerHash("alice"), Issued: t0, Expires: t0.Add(time.Hour),
		ProtocolVersion: "2025-11-25", ClientName: "claude-code", ClientVersion: "2.1.0",
		Caps: []byte(`{"elicitation":{},"roots":{"listChanged":true},"sampling":{}}`),
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := ring(t, key1)
	st := sample()
	tok, err := k.Seal(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open(tok, t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("Open = %v, want nil", err)
	}
	if got.ProtocolVersion != st.ProtocolVersion || got.ClientName != st.ClientName || got.ClientVersion != st.ClientVersion ||
		!bytes.Equal(got.Caps, st.Caps) || !got.Issued.Equal(t0) || !got.Expires.Equal(st.Expires) || got.Handle != st.Handle {
		t.Fatalf("Open = %+v, want %+v", got, st)
	}
	if !got.OwnedBy("alice") || got.OwnedBy("bob") || got.OwnedBy("oauth:alice") {
		t.Fatal("OwnedBy: want alice only")
	}
	if h, ok := Handle(tok); !ok || h != got.HandleString() {
		t.Fatalf("Handle = %q, %v, want %q", h, ok, got.HandleString())
	}
	tok2, _ := k.Seal(sample())
	if tok2 == tok {
		t.Fatal("two seals of the same state gave one token")
	}
}

func TestOpenRefuses(t *testing.T) {
	k1, k2 := ring(t, key1), ring(t, key2)
	tok, _ := k1.Seal(sample())
	raw, _ := enc.DecodeString(tok[len(Prefix):])
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return Prefix + enc.EncodeToString(b)
	}
	tests := []struct {
		name  string
		ring  *Keyring
		token string
		now   time.Time
		want  error
	}{
		{"empty", k1, "", t0, ErrMalformed},
		{"random hex id", k1, "0123456789abcdef0123456789abcdef", t0, ErrMalformed},
		{"no base64", k1, Prefix + "!!!", t0, ErrMalformed},
		{"truncated", k1, Prefix + enc.EncodeToString(raw[:len(raw)-6]), t0, ErrInvalid},
		{"cut to the header", k1, tok[:len(Prefix)+40], t0, ErrMalformed},
		{"too long", k1, tok + strings.Repeat("A", MaxTokenLen), t0, ErrMalformed},
		{"other key, same id space", k2, tok, t0, ErrUnknownKey},
		{"key id changed", k1, flip(0), t0, ErrUnknownKey},
		{"handle changed", k1, flip(3), t0, ErrInvalid},
		{"nonce changed", k1, flip(1 + handleSize + 2), t0, ErrInvalid},
		{"ciphertext changed", k1, flip(headerSize + 5), t0, ErrInvalid},
		{"tag changed", k1, flip(len(raw) - 1), t0, ErrInvalid},
		{"expired", k1, tok, t0.Add(time.Hour), ErrExpired},
		{"long expired", k1, tok, t0.Add(1000 * time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.ring.Open(tt.token, tt.now); !errors.Is(err, tt.want) {
				t.Fatalf("Open(%.20q…) = %v, want %v", tt.token, err, tt.want)
			}
		})
	}
	// Same key id, different key bytes: a ring that does not hold the
	// sealing key refuses it even when an id collides.
	other := ring(t, "1 HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=")
	if _, err := other.Open(tok, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open with another key under id 1 = %v, want ErrInvalid", err)
	}
	// Non-canonical base64 (different trailing bits) is refused, so each
	// sealed byte string has exactly one token.
	last := tok[len(tok)-1]
	for _, c := range "AEIMQUYcgkosw048" {
		if byte(c) == last {
			continue
		}
		alt := tok[:len(tok)-1] + string(c)
		if _, err := k1.Open(alt, t0); err == nil {
			t.Fatalf("Open(non-canonical variant) = nil, want an error")
		}
	}
}

func TestKeyRotation(t *testing.T) {
	old := ring(t, key1)
	rotated := ring(t, key2, key1) // new key first: seals; old still opens
	tokOld, _ := old.Seal(sample())
	if _, err := rotated.Open(tokOld, t0); err != nil {
		t.Fatalf("rotated ring opening an old token = %v, want nil", err)
	}
	tokNew, _ := rotated.Seal(sample())
	if _, err := old.Open(tokNew, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring opening a new token = %v, want ErrUnknownKey", err)
	}
	retired := ring(t, key2)
	if _, err := retired.Open(tokOld, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("ring without the old key = %v, want ErrUnknownKey", err)
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"one", key1, ""},
		{"comments and url alphabet", "# keys\n\n7 " + strings.NewReplacer("+", "-", "/", "_").Replace(key2[2:]), ""},
		{"unpadded", strings.TrimRight(key1, "="), ""},
		{"empty", "# nothing", "no key"},
		{"no id", key1[2:], "want"},
		{"bad id", "x" + key1[1:], "not a number"},
		{"id too big", "256" + key1[1:], "not a number"},
		{"short key", "1 AAECAwQ=", "want 32"},
		{"not base64", "1 ????", "not base64"},
		{"twice", key1 + "\n" + key1, "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeys([]byte(tt.text))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("ParseKeys = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8") {
				t.Fatalf("ParseKeys error %q shows the key", err)
			}
		})
	}
	if _, err := ParseKeys([]byte(NewKey(9))); err != nil {
		t.Fatalf("ParseKeys(NewKey) = %v", err)
	}
}

func TestSealLimits(t *testing.T) {
	k := ring(t, key1)
	st := sample()
	st.Caps = bytes.Repeat([]byte("x"), MaxCaps+1)
	if _, err := k.Seal(st); err == nil {
		t.Fatal("Seal of oversized capabilities = nil, want an error")
	}
	st = sample()
	st.ClientName = strings.Repeat("n", MaxIdent)
	st.ClientVersion = strings.Repeat("v", MaxIdent)
	st.ProtocolVersion = strings.Repeat("p", MaxIdent)
	st.Caps = bytes.Repeat([]byte("c"), MaxCaps)
	tok, err := k.Seal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxTokenLen {
		t.Fatalf("largest token is %d bytes, MaxTokenLen %d", len(tok), MaxTokenLen)
	}
	if _, err := k.Open(tok, t0); err != nil {
		t.Fatalf("Open(largest token) = %v", err)
	}
}

const (
	sealedKey2 = "m1Akxgahw4XGVQ3Fi24X9IV7rYYDJWdM7V4CaC6tjODeFMT6jVy4xelnbQpon67ewux0X26egIzMGqe48ZbBciQboka6Omc__zENonB7Y8NrQsmel5v8ArAuPY1i5xHQ1FXoLb-097w8snxX7pn21VANYpmBOGoay-gxtyrbBpoIY06Epl2fyEM1okIj3XCDc83JCANp9r1gpFFle3rVFs5Y_jZYP9VhFs0qmsHJqeu4UVusmhPzSb4PVNLFZ2PKYRERkrIA"
	sealedKey1 = "m1AfpfPjBrVPEvS33AwbBzGdwBWYwAQ27q05vK0tAVDYTR2pHnK_8nC560HMLwOGKBC_t4IfMHcb95WXH99RVAVMKIBQPs-IzI5rIFAszX1Ewzd2PbeGSNl6cSCxxhpH9owE-3mSZbRCzXHqg1GIs4q2DxcKMgRqw8agVxu2xBylN6x9Iv-wpmni9G_8b0cL1fQ26R0biMbxmfKk_M34rzPFyF1zsf7qGFfcTcwE4hhY1e4Indz6vsku7v0EC_jw4NHUV-xg"
)

// FuzzOpen: the opener never panics, and the only strings it opens are
// tokens the key sealed (the seeds): no mutation of a token opens, so none
// can be forged, re-bound to another principal or given a later expiry.
func FuzzOpen(f *testing.F) {
	k := ring(f, key2, key1)
	// Fixed tokens (sealed once with key2 and key1 from sample()): every
	// fuzz worker must agree on what was sealed.
	valid := map[string]bool{sealedKey2: true, sealedKey1: true}
	for tok := range valid {
		if _, err := k.Open(tok, t0); err != nil {
			f.Fatalf("seed token: %v", err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add(Prefix)
	f.Add(Prefix + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := k.Open(s, t0)
		_, _ = Handle(s)
		if err == nil && !valid[s] {
			t.Fatalf("Open(%q) = %+v, nil: opened a token that was never sealed", s, st)
		}
		if err == nil && !st.OwnedBy("alice") {
			t.Fatalf("Open(%q) lost its owner", s)
		}
	})
}

// BenchmarkSeal and BenchmarkOpen are the per-session (seal, at initialize)
// and per-request-on-a-new-replica (open) costs of sealed session ids.
func BenchmarkSeal(b *testing.B) {
	k := ring(b, key1)
	st := sample()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		tok, err := k.Seal(st)
		if err != nil {
			b.Fatal(err)
		}
		n += len(tok)
	}
	if n == 0 {
		b.Fatal("no token")
	}
	tok, _ := k.Seal(st)
	b.ReportMetric(float64(len(tok)), "token-bytes")
}

func BenchmarkOpen(b *testing.B) {
	k := ring(b, key1)
	tok, _ := k.Seal(sample())
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		st, err := k.Open(tok, t0)
		if err != nil {
			b.Fatal(err)
		}
		n += len(st.Caps)
	}
	if n == 0 {
		b.Fatal("nothing opened")
	}
}

// TestPublic: a sealed id is shown by its handle, never in full; any other
// id as it is.
func TestPublic(t *testing.T) {
	st := sample()
	tok, err := ring(t, key1).Seal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, id, want string }{
		{"sealed", tok, st.HandleString()},
		{"random", "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"},
		{"empty", "", ""},
	} {
		if got := Public(tt.id); got != tt.want {
			t.Errorf("%s: Public(%.20q…) = %q, want %q", tt.name, tt.id, got, tt.want)
		}
	}
}
