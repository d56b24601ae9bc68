package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// keyTestFile is the path of a test key under testdata/keys (see its README).
func keyTestFile(name string) string { return filepath.Join("testdata", "keys", name) }

// Secret keys that pass CheckSecretKey for each HS algorithm.
const (
	keySecret256 = "k9S!f2#Lq8@vX1^zR4&tY7*uP0(wE3)mN6-bH5=c" // 40 bytes
	keySecret384 = keySecret256 + "Jd8.Gs2,"                  // 48 bytes
	keySecret512 = keySecret384 + "Aq7;Zx4:Wm1~Rt6|"          // 64 bytes
)

func TestCheckSecretKey(t *testing.T) {
	tests := []struct {
		name    string
		alg     string
		key     string
		wantErr string // substring; "" means accepted
	}{
		{"HS256 32 bytes", "HS256", keySecret256[:32], ""},
		{"empty alg is HS256", "", keySecret256[:32], ""},
		{"HS256 31 bytes", "HS256", keySecret256[:31], "31 bytes, want at least 32"},
		{"HS384 48 bytes", "HS384", keySecret384, ""},
		{"HS384 47 bytes", "HS384", keySecret384[:47], "47 bytes, want at least 48"},
		{"HS512 64 bytes", "HS512", keySecret512, ""},
		{"HS512 63 bytes", "HS512", keySecret512[:63], "63 bytes, want at least 64"},
		{"HS512 with an HS256 key", "HS512", keySecret256, "want at least 64"},
		{"empty", "HS256", "", "empty"},
		{"secret", "HS256", "secret", "placeholder"},
		{"SECRET", "HS256", "SECRET", "placeholder"},
		{"ChangeMe", "HS256", "ChangeMe", "placeholder"},
		{"simplejwt test key", "HS256", "not very secret in tests", "placeholder"},
		{"jwt.io key", "HS256", "your-256-bit-secret", "placeholder"},
		{"simplejwt backend test key", "HS256", "not_secret", "placeholder"},
		{"NOT_SECRET", "HS256", "NOT_SECRET", "placeholder"},
		{"django-insecure", "HS256", "django-insecure-" + keySecret256, "django-insecure-"},
		{"one character", "HS256", strings.Repeat("a", 64), "1 distinct characters, want at least 5"},
		{"four characters", "HS256", strings.Repeat("abcd", 16), "4 distinct characters, want at least 5"},
		{"five characters", "HS256", strings.Repeat("abcde", 8), ""},
		{"bytes not runes: 16 × é is 32 bytes, 1 character", "HS256", strings.Repeat("é", 16), "1 distinct characters"},
		{"bytes not runes: 5 characters, 32 bytes", "HS256", strings.Repeat("éàüöî", 3) + "xy", ""},
		{"bytes not runes: 15 runes of 2 bytes", "HS256", strings.Repeat("éàüöî", 3), "30 bytes, want at least 32"},
		{"invalid UTF-8", "HS256", keySecret256 + "\xff", "UTF-8"},
		{"RS256", "RS256", keySecret512, `algorithm "RS256"`},
		{"none", "none", keySecret512, `algorithm "none"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSecretKey(tt.alg, tt.key)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckSecretKey(%q, %q) = %v, want nil", tt.alg, tt.key, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("CheckSecretKey(%q, %q) = nil, want an error containing %q", tt.alg, tt.key, tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("CheckSecretKey(%q, %q) = %q, want it to contain %q", tt.alg, tt.key, err, tt.wantErr)
			case err != nil && len(tt.key) >= 8 && strings.Contains(err.Error(), tt.key):
				t.Fatalf("CheckSecretKey(%q, %q) = %q: the error shows the key", tt.alg, tt.key, err)
			}
		})
	}
}

func TestNewTokensKeyPolicy(t *testing.T) {
	tests := []struct {
		name    string
		cfg     TokenConfig
		wantErr []string // substrings; nil means accepted
	}{
		{"zero value but the secret", TokenConfig{SecretKey: keySecret256}, nil},
		{"HS256", TokenConfig{Algorithm: "HS256", SecretKey: keySecret256}, nil},
		{"HS384", TokenConfig{Algorithm: "HS384", SecretKey: keySecret384}, nil},
		{"HS512", TokenConfig{Algorithm: "HS512", SecretKey: keySecret512}, nil},
		{"RS256 PKCS#8", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem")}, nil},
		{"RS256 PKCS#1", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048-old.pem")}, nil},
		{"RS256 rotation PKIX and PKCS#1 public keys", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem"),
			PublicKeyFiles: []string{keyTestFile("rsa2048-old.pub.pem"), keyTestFile("rsa2048-old.pkcs1.pub.pem")}}, nil},
		{"ES256 SEC 1 with EC PARAMETERS", TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256.pem")}, nil},
		{"ES256 PKCS#8", TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256-old.pem"),
			PublicKeyFiles: []string{keyTestFile("ec-p256-old.pub.pem")}}, nil},
		{"EdDSA", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem"),
			PublicKeyFiles: []string{keyTestFile("ed25519-old.pub.pem")}}, nil},
		{"asymmetric ignores SecretKey", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem"), SecretKey: "x"}, nil},
		{"leeway 60s", TokenConfig{SecretKey: keySecret256, Leeway: 60 * time.Second}, nil},
		{"access 1h", TokenConfig{SecretKey: keySecret256, AccessLifetime: time.Hour}, nil},

		{"none", TokenConfig{Algorithm: "none", SecretKey: keySecret256}, []string{`algorithm "none" is not supported`}},
		{"hs256 lower case", TokenConfig{Algorithm: "hs256", SecretKey: keySecret256}, []string{`"hs256" is not supported`}},
		{"RS512", TokenConfig{Algorithm: "RS512", PrivateKeyFile: keyTestFile("rsa2048.pem")}, []string{`"RS512" is not supported`}},
		{"PS256", TokenConfig{Algorithm: "PS256", PrivateKeyFile: keyTestFile("rsa2048.pem")}, []string{`"PS256" is not supported`}},
		{"ES384", TokenConfig{Algorithm: "ES384", PrivateKeyFile: keyTestFile("ec-p384.pem")}, []string{`"ES384" is not supported`}},
		{"HS256 no key", TokenConfig{}, []string{"secret key is empty"}},
		{"HS256 short key", TokenConfig{SecretKey: keySecret256[:20]}, []string{"20 bytes, want at least 32"}},
		{"HS512 HS256-sized key", TokenConfig{Algorithm: "HS512", SecretKey: keySecret256}, []string{"want at least 64"}},
		{"HS256 placeholder", TokenConfig{SecretKey: "your-256-bit-secret"}, []string{"placeholder"}},
		{"HS256 django-insecure", TokenConfig{SecretKey: "django-insecure-" + keySecret256}, []string{"django-insecure-"}},
		{"HS256 with a private key", TokenConfig{SecretKey: keySecret256, PrivateKeyFile: keyTestFile("rsa2048.pem")}, []string{"ambiguous"}},
		{"HS256 with a public key", TokenConfig{SecretKey: keySecret256, PublicKeyFiles: []string{keyTestFile("rsa2048-old.pub.pem")}}, []string{"ambiguous"}},
		{"RS256 no key", TokenConfig{Algorithm: "RS256"}, []string{"RS256 needs a private key file"}},
		{"RS256 1024 bits", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa1024.pem")},
			[]string{"rsa1024.pem", "RSA modulus is 1024 bits, want at least 2048"}},
		{"RS256 1024-bit public key", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem"), PublicKeyFiles: []string{keyTestFile("rsa1024.pub.pem")}},
			[]string{"public key file", "rsa1024.pub.pem", "1024 bits"}},
		{"RS256 EC key", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("ec-p256.pem")}, []string{"ec-p256.pem", "EC key given for RS256"}},
		{"RS256 Ed25519 public key", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem"), PublicKeyFiles: []string{keyTestFile("ed25519-old.pub.pem")}},
			[]string{"ed25519-old.pub.pem", "Ed25519 key given for RS256"}},
		{"ES256 P-384", TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p384.pem")}, []string{"ec-p384.pem", "curve P-384, want P-256"}},
		{"ES256 RSA key", TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("rsa2048.pem")}, []string{"rsa2048.pem", "RSA key given for ES256"}},
		{"ES256 RSA public key", TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256.pem"), PublicKeyFiles: []string{keyTestFile("rsa2048-old.pub.pem")}},
			[]string{"rsa2048-old.pub.pem", "RSA key given for ES256"}},
		{"EdDSA EC key", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ec-p256.pem")}, []string{"EC key given for EdDSA"}},
		{"EdDSA RSA key", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("rsa2048.pem")}, []string{"RSA key given for EdDSA"}},
		{"private key file holds a public key", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519-old.pub.pem")},
			[]string{"ed25519-old.pub.pem", "holds a public key"}},
		{"public key file holds a private key", TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem"), PublicKeyFiles: []string{keyTestFile("ed25519-old.pem")}},
			[]string{"ed25519-old.pem", "holds a private key"}},
		{"encrypted key", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048-encrypted.pem")}, []string{"rsa2048-encrypted.pem", "encrypted"}},
		{"missing file", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("nonexistent.pem")}, []string{"nonexistent.pem"}},
		{"missing public key file", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem"), PublicKeyFiles: []string{keyTestFile("gone.pub.pem")}}, []string{"gone.pub.pem"}},
		{"not PEM", TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("README.md")}, []string{"README.md", "no PEM block"}},
		{"negative leeway", TokenConfig{SecretKey: keySecret256, Leeway: -time.Second}, []string{"leeway -1s"}},
		{"leeway 61s", TokenConfig{SecretKey: keySecret256, Leeway: 61 * time.Second}, []string{"leeway 1m1s"}},
		{"access 61m", TokenConfig{SecretKey: keySecret256, AccessLifetime: 61 * time.Minute}, []string{"access token lifetime 1h1m0s"}},
		{"negative access", TokenConfig{SecretKey: keySecret256, AccessLifetime: -time.Minute}, []string{"access token lifetime -1m0s"}},
		{"refresh equal to access", TokenConfig{SecretKey: keySecret256, AccessLifetime: time.Hour, RefreshLifetime: time.Hour}, []string{"refresh token lifetime 1h0m0s is not longer"}},
		{"refresh shorter than default access", TokenConfig{SecretKey: keySecret256, RefreshLifetime: time.Minute}, []string{"refresh token lifetime 1m0s is not longer"}},
		{"negative refresh", TokenConfig{SecretKey: keySecret256, RefreshLifetime: -time.Hour}, []string{"refresh token lifetime -1h0m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := NewTokens(tt.cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("NewTokens(%+v) = %v, want nil", tt.cfg, err)
				}
				if tk == nil {
					t.Fatalf("NewTokens(%+v) = nil, nil", tt.cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewTokens(%+v) = nil error, want one containing %q", tt.cfg, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewTokens(%+v) = %q, want it to contain %q", tt.cfg, err, want)
				}
			}
			if tt.cfg.SecretKey != "" && strings.Contains(err.Error(), tt.cfg.SecretKey) {
				t.Errorf("NewTokens(%+v) = %q: the error shows the key", tt.cfg, err)
			}
		})
	}
}

func TestNewTokensDefaults(t *testing.T) {
	// lifetimes issues one token of each type and returns exp - iat.
	lifetimes := func(tk *Tokens) (access, refresh time.Duration) {
		now := time.Unix(1_800_000_000, 0)
		_, a, err := tk.Issue("access", "1", now)
		if err != nil {
			t.Fatal(err)
		}
		_, r, err := tk.Issue("refresh", "1", now)
		if err != nil {
			t.Fatal(err)
		}
		return a.ExpiresAt.Sub(a.IssuedAt), r.ExpiresAt.Sub(r.IssuedAt)
	}
	tk, err := NewTokens(TokenConfig{SecretKey: keySecret256})
	if err != nil {
		t.Fatal(err)
	}
	if a, r := lifetimes(tk); a != DefaultAccessLifetime || r != DefaultRefreshLifetime {
		t.Errorf("default lifetimes %v, %v; want %v, %v", a, r, DefaultAccessLifetime, DefaultRefreshLifetime)
	}
	if tk.alg != "HS256" {
		t.Errorf("algorithm = %q, want HS256", tk.alg)
	}
	tk, err = NewTokens(TokenConfig{SecretKey: keySecret256, AccessLifetime: 10 * time.Minute, RefreshLifetime: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if a, r := lifetimes(tk); a != 10*time.Minute || r != 7*24*time.Hour {
		t.Errorf("lifetimes %v, %v; want 10m, 168h", a, r)
	}
}

// keyB64 decodes base64url without padding, failing the test on bad input.
func keyB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

// keyECPublic builds a public key from JWK coordinates.
func keyECPublic(t testing.TB, curve elliptic.Curve, x, y string) *ecdsa.PublicKey {
	t.Helper()
	point := append([]byte{4}, keyB64(t, x)...)
	point = append(point, keyB64(t, y)...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		t.Fatalf("EC key (%s, %s): %v", x, y, err)
	}
	return pub
}

// keyRSAPublic builds a public key from JWK members.
func keyRSAPublic(t testing.TB, n, e string) *rsa.PublicKey {
	t.Helper()
	return &rsa.PublicKey{N: new(big.Int).SetBytes(keyB64(t, n)), E: int(new(big.Int).SetBytes(keyB64(t, e)).Int64())}
}

// Public RFC keys (see shared/testdata/jwt-vectors.md).
const (
	rfc7515A2N = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
	rfc7515A3X = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
	rfc7515A3Y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
	rfc7517A1N = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc8037X   = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
)

func TestKeyThumbprintVectors(t *testing.T) {
	tests := []struct {
		name string
		key  func(t *testing.T) crypto.PublicKey
		want string
	}{
		{"V3 RFC 7515 A.3 P-256 (derived)", func(t *testing.T) crypto.PublicKey {
			return keyECPublic(t, elliptic.P256(), rfc7515A3X, rfc7515A3Y)
		}, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"},
		{"V6 RFC 8037 A.3 Ed25519", func(t *testing.T) crypto.PublicKey {
			return ed25519.PublicKey(keyB64(t, rfc8037X))
		}, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
		{"V7 RFC 7638 3.1 RSA", func(t *testing.T) crypto.PublicKey {
			return keyRSAPublic(t, rfc7517A1N, "AQAB")
		}, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kidOf(tt.key(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("thumbprint = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestKeyThumbprintCanonicalJSON(t *testing.T) {
	// RFC 7638 §3.1 prints the exact JSON it hashes for the RSA key.
	canonical := `{"e":"AQAB","kty":"RSA","n":"` + rfc7517A1N + `"}`
	sum := sha256.Sum256([]byte(canonical))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	got, err := thumbprint(jwk{Kty: "RSA", N: rfc7517A1N, E: "AQAB", Kid: "ignored", Use: "sig", Alg: "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("thumbprint = %s, want %s (kid, use and alg must not be hashed)", got, want)
	}
	if _, err := thumbprint(jwk{Kty: "oct"}); err == nil {
		t.Fatal(`thumbprint(kty "oct") = nil error, want one`)
	}
}

// keyJWKSDoc is a parsed JWKS document.
type keyJWKSDoc struct {
	Keys []map[string]string `json:"keys"`
}

// keyFromJWK rebuilds the public key of a JWK as a relying party does.
func keyFromJWK(t *testing.T, k map[string]string) crypto.PublicKey {
	t.Helper()
	switch k["kty"] {
	case "RSA":
		return keyRSAPublic(t, k["n"], k["e"])
	case "EC":
		if k["crv"] != "P-256" {
			t.Fatalf("crv = %q, want P-256", k["crv"])
		}
		return keyECPublic(t, elliptic.P256(), k["x"], k["y"])
	case "OKP":
		if k["crv"] != "Ed25519" {
			t.Fatalf("crv = %q, want Ed25519", k["crv"])
		}
		return ed25519.PublicKey(keyB64(t, k["x"]))
	}
	t.Fatalf("kty = %q", k["kty"])
	return nil
}

// keyIndieThumbprint is RFC 7638 written from the RFC's text, apart
// from thumbprint: the required members, sorted, as compact JSON.
func keyIndieThumbprint(t *testing.T, k map[string]string) string {
	t.Helper()
	required := map[string][]string{"RSA": {"e", "kty", "n"}, "EC": {"crv", "kty", "x", "y"}, "OKP": {"crv", "kty", "x"}}[k["kty"]]
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range required {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(m)
		value, _ := json.Marshal(k[m])
		b.Write(name)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	sum := sha256.Sum256([]byte(b.String()))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestJWKS(t *testing.T) {
	tests := []struct {
		alg, private, oldPrivate, oldPublic string
		kty, crv                            string
		wantMembers                         []string
	}{
		{"RS256", "rsa2048.pem", "rsa2048-old.pem", "rsa2048-old.pub.pem", "RSA", "", []string{"alg", "e", "kid", "kty", "n", "use"}},
		{"ES256", "ec-p256.pem", "ec-p256-old.pem", "ec-p256-old.pub.pem", "EC", "P-256", []string{"alg", "crv", "kid", "kty", "use", "x", "y"}},
		{"EdDSA", "ed25519.pem", "ed25519-old.pem", "ed25519-old.pub.pem", "OKP", "Ed25519", []string{"alg", "crv", "kid", "kty", "use", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			old := tokMust(t, TokenConfig{Algorithm: tt.alg, PrivateKeyFile: keyTestFile(tt.oldPrivate)})
			tk := tokMust(t, TokenConfig{Algorithm: tt.alg, PrivateKeyFile: keyTestFile(tt.private),
				PublicKeyFiles: []string{keyTestFile(tt.oldPublic), keyTestFile(tt.oldPublic)}}) // twice: listed once

			var doc keyJWKSDoc
			if err := json.Unmarshal(tk.JWKS(), &doc); err != nil {
				t.Fatalf("JWKS() = %s: %v", tk.JWKS(), err)
			}
			if len(doc.Keys) != 2 {
				t.Fatalf("JWKS() has %d keys, want 2 (signing key, old key): %s", len(doc.Keys), tk.JWKS())
			}
			wantKids := []string{tk.kid, old.kid}
			for i, k := range doc.Keys {
				var members []string
				for m := range k {
					members = append(members, m)
				}
				slices.Sort(members)
				if !slices.Equal(members, tt.wantMembers) {
					t.Errorf("key %d members = %v, want %v", i, members, tt.wantMembers)
				}
				if k["kty"] != tt.kty || k["crv"] != tt.crv || k["use"] != "sig" || k["alg"] != tt.alg {
					t.Errorf("key %d = %v, want kty %s, crv %q, use sig, alg %s", i, k, tt.kty, tt.crv, tt.alg)
				}
				if k["kid"] != wantKids[i] {
					t.Errorf("key %d kid = %s, want %s", i, k["kid"], wantKids[i])
				}
				if got := keyIndieThumbprint(t, k); k["kid"] != got {
					t.Errorf("key %d kid = %s, want its RFC 7638 thumbprint %s", i, k["kid"], got)
				}
				pub := keyFromJWK(t, k)
				want := tk.verify[wantKids[i]]
				if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(want) {
					t.Errorf("key %d does not rebuild the public key", i)
				}
			}

			// A relying party verifies both keys' tokens with the JWKS alone.
			for _, signer := range []*Tokens{tk, old} {
				raw, _, err := signer.Issue("access", "7", tokNow)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tokParseWithJWKS(t, tk.JWKS(), tt.alg, raw); err != nil {
					t.Errorf("token of key %s does not verify with the JWKS: %v", signer.kid, err)
				}
			}
		})
	}
}

func TestJWKSSymmetric(t *testing.T) {
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		t.Run(alg, func(t *testing.T) {
			tk := tokMust(t, TokenConfig{Algorithm: alg, SecretKey: keySecret512})
			if got, want := string(tk.JWKS()), `{"keys":[]}`; got != want {
				t.Fatalf("JWKS() = %s, want %s", got, want)
			}
		})
	}
}

func TestJWKSIsACopy(t *testing.T) {
	tk := tokMust(t, TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")})
	b := tk.JWKS()
	want := string(b)
	clear(b)
	if got := string(tk.JWKS()); got != want {
		t.Fatalf("JWKS() after modifying a returned slice = %q, want %q", got, want)
	}
}
