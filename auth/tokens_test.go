package auth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// tokNow is the clock of most tests.
var tokNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// tokMust is NewTokens that fails the test on error.
func tokMust(t testing.TB, cfg TokenConfig) *Tokens {
	t.Helper()
	tk, err := NewTokens(cfg)
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	return tk
}

// tokHS256 returns HS256 Tokens over keySecret256 with cfg's other fields.
func tokHS256(t testing.TB, cfg TokenConfig) *Tokens {
	t.Helper()
	cfg.Algorithm, cfg.SecretKey = "HS256", keySecret256
	return tokMust(t, cfg)
}

// tokClaims are good access-token claims issued at now; callers change or
// delete (nil value) members.
func tokClaims(now time.Time, changes map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"token_type": "access",
		"exp":        now.Unix() + 300,
		"iat":        now.Unix(),
		"jti":        "0f8fad5bd9cb469fa16570867728950e",
		"user_id":    "42",
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// tokSign signs claims with golang-jwt, setting (or, for a nil value,
// deleting) header members.
func tokSign(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return raw
}

// tokSignHS signs claims with HS256 and the test secret.
func tokSignHS(t testing.TB, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	return tokSign(t, jwt.SigningMethodHS256, []byte(keySecret256), header, claims)
}

// tokB64 is base64url without padding, as JWS uses.
var tokB64 = base64.RawURLEncoding

// tokUnsigned returns header.payload. with an empty signature (alg none).
func tokUnsigned(header, payload string) string {
	return tokB64.EncodeToString([]byte(header)) + "." + tokB64.EncodeToString([]byte(payload)) + "."
}

// tokParseWithJWKS verifies raw as an outside relying party would: the key
// comes from the JWKS document by the token's kid.
func tokParseWithJWKS(t *testing.T, jwks []byte, alg, raw string) (*jwt.Token, error) {
	t.Helper()
	var doc keyJWKSDoc
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range doc.Keys {
		keys[k["kid"]] = keyFromJWK(t, k)
	}
	return jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("unknown kid %q", kid)
	}, jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return tokNow }))
}

// tokErrName names Parse's errors in failure messages.
func tokErrName(err error) string {
	switch err {
	case nil:
		return "nil"
	case ErrTokenInvalid:
		return "ErrTokenInvalid"
	case ErrTokenExpired:
		return "ErrTokenExpired"
	case ErrTokenWrongType:
		return "ErrTokenWrongType"
	case ErrTokenBlacklisted:
		return "ErrTokenBlacklisted"
	}
	return fmt.Sprintf("%T %v", err, err)
}

// tokShort abbreviates a token for failure messages.
func tokShort(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s…(%d bytes)", s[:80], len(s))
	}
	return s
}

// --- Fixed vectors (shared/testdata/jwt-vectors.md) at the JWS/JWT layer ---

// Vector tokens.
const (
	v1Token  = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	v1Key    = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
	v2Token  = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
	v3Token  = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
	v4Token  = "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"
	v4X      = "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk"
	v4Y      = "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"
	v5Token  = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
	v6Token  = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	v6D      = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	v8Token  = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0"
	v8Key    = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg"
	v9Token  = "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2"
	v9X      = "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt"
	v9Y      = "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"
	v10aTok  = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjk0NjY4NDgwMH0.NHpdD2X8ub4SE_MZLBedWa57FCpntGaN_r6f8kNKdUs"
	v10bTok  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjk0NjY4NDgwMH0.jvxQgXCSDToR8uKoRJcMT-LmMJJn2-NM76nfSR2FOgs"
	v11Token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	wpKey    = "-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE"
	wpTC1    = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC1hZXMtc2lnbiJ9.Zm9v.TD37p4c_0jmreSrBSDmE0F3mYSPtkZ3WrSyI5wb_KTg"
	wpTC2    = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC1hZXMtc2lnbiJ9.Zm9v.XD37p4c_0jmreSrBSDmE0F3mYSPtkZ3WrSyI5wb_KTg"
	wpTC31   = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC1lYy1zaWduIn0.Zm9v.TgWtz2FIRukBQ_mA5sgHa0Ybtgn7bl-YBPAi7Z0XdHU"
)

// tokRFCExp is the exp of the RFC 7515 tokens (2011-03-22T18:43:00Z).
const tokRFCExp = 1300819380

// tokSplit returns a compact JWS's signing input and decoded signature.
func tokSplit(t *testing.T, raw string) (string, []byte) {
	t.Helper()
	i := strings.LastIndexByte(raw, '.')
	return raw[:i], keyB64(t, raw[i+1:])
}

func TestTokenVectorsSignatures(t *testing.T) {
	tests := []struct {
		name   string
		method jwt.SigningMethod
		token  string
		key    func(t *testing.T) any
	}{
		{"V1 RFC 7515 A.1 HS256", jwt.SigningMethodHS256, v1Token, func(t *testing.T) any { return keyB64(t, v1Key) }},
		{"V2 RFC 7515 A.2 RS256", jwt.SigningMethodRS256, v2Token, func(t *testing.T) any { return keyRSAPublic(t, rfc7515A2N, "AQAB") }},
		{"V3 RFC 7515 A.3 ES256", jwt.SigningMethodES256, v3Token, func(t *testing.T) any { return keyECPublic(t, elliptic.P256(), rfc7515A3X, rfc7515A3Y) }},
		{"V4 RFC 7515 A.4 ES512", jwt.SigningMethodES512, v4Token, func(t *testing.T) any { return keyECPublic(t, elliptic.P521(), v4X, v4Y) }},
		{"V6 RFC 8037 A.4 EdDSA", jwt.SigningMethodEdDSA, v6Token, func(t *testing.T) any { return ed25519.PublicKey(keyB64(t, rfc8037X)) }},
		{"V8 RFC 7520 4.4 HS256 with kid", jwt.SigningMethodHS256, v8Token, func(t *testing.T) any { return keyB64(t, v8Key) }},
		{"V9 RFC 7520 4.3 ES512 with kid", jwt.SigningMethodES512, v9Token, func(t *testing.T) any { return keyECPublic(t, elliptic.P521(), v9X, v9Y) }},
		{"V10 simplejwt HS256 a", jwt.SigningMethodHS256, v10aTok, func(t *testing.T) any { return []byte("not_secret") }},
		{"V10 simplejwt HS256 b", jwt.SigningMethodHS256, v10bTok, func(t *testing.T) any { return []byte("not_secret") }},
		{"V11 jwt.io HS256", jwt.SigningMethodHS256, v11Token, func(t *testing.T) any { return []byte("your-256-bit-secret") }},
		{"V12 Wycheproof tc1 HS256", jwt.SigningMethodHS256, wpTC1, func(t *testing.T) any { return keyB64(t, wpKey) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input, sig := tokSplit(t, tt.token)
			key := tt.key(t)
			if err := tt.method.Verify(input, sig, key); err != nil {
				t.Fatalf("%s.Verify = %v, want nil", tt.method.Alg(), err)
			}
			// Any single-bit change to the signature, the header or the payload fails.
			bad := bytes.Clone(sig)
			bad[len(bad)/2] ^= 1
			if err := tt.method.Verify(input, bad, key); err == nil {
				t.Errorf("%s.Verify(changed signature) = nil, want an error", tt.method.Alg())
			}
			for _, at := range []int{0, strings.IndexByte(input, '.') + 1} {
				changed := []byte(input)
				changed[at] ^= 1
				if err := tt.method.Verify(string(changed), sig, key); err == nil {
					t.Errorf("%s.Verify(input changed at %d) = nil, want an error", tt.method.Alg(), at)
				}
			}
		})
	}
	t.Run("V12 Wycheproof tc2 modified signature", func(t *testing.T) {
		input, sig := tokSplit(t, wpTC2)
		if err := jwt.SigningMethodHS256.Verify(input, sig, keyB64(t, wpKey)); err == nil {
			t.Fatal("HS256.Verify(tc2) = nil, want an error")
		}
	})
	t.Run("V1 key does not verify V8", func(t *testing.T) {
		input, sig := tokSplit(t, v8Token)
		if err := jwt.SigningMethodHS256.Verify(input, sig, keyB64(t, v1Key)); err == nil {
			t.Fatal("HS256.Verify(V8, V1 key) = nil, want an error")
		}
	})
}

func TestTokenVectorsDeterministicSigning(t *testing.T) {
	t.Run("V6 Ed25519 re-signs byte for byte", func(t *testing.T) {
		priv := ed25519.NewKeyFromSeed(keyB64(t, v6D))
		if got := tokB64.EncodeToString(priv.Public().(ed25519.PublicKey)); got != rfc8037X {
			t.Fatalf("public key = %s, want %s", got, rfc8037X)
		}
		input, want := tokSplit(t, v6Token)
		got, err := jwt.SigningMethodEdDSA.Sign(input, priv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("signature = %x, want %x", got, want)
		}
	})
	t.Run("V10 golang-jwt reproduces simplejwt's token", func(t *testing.T) {
		got := tokSign(t, jwt.SigningMethodHS256, []byte("not_secret"), nil, jwt.MapClaims{"exp": 946684800})
		if got != v10bTok {
			t.Fatalf("token = %s, want %s", got, v10bTok)
		}
	})
	t.Run("V1 HS256 re-signs byte for byte", func(t *testing.T) {
		input, want := tokSplit(t, v1Token)
		got, err := jwt.SigningMethodHS256.Sign(input, keyB64(t, v1Key))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("signature = %x, want %x", got, want)
		}
	})
}

func TestTokenVectorsJWTLayer(t *testing.T) {
	clock := func(sec int64) jwt.ParserOption {
		return jwt.WithTimeFunc(func() time.Time { return time.Unix(sec, 0) })
	}
	v1Keyfunc := func(*jwt.Token) (any, error) { return keyB64(t, v1Key), nil }
	tests := []struct {
		name    string
		token   string
		keyfunc jwt.Keyfunc
		opts    []jwt.ParserOption
		wantErr error // nil means valid
	}{
		{"V1 before exp", v1Token, v1Keyfunc,
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuer("joe"), clock(1300819000)}, nil},
		{"V1 one second before exp", v1Token, v1Keyfunc,
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), clock(tokRFCExp - 1)}, nil},
		// simplejwt's check_exp: exp == now is expired; golang-jwt agrees (valid iff now < exp+leeway).
		{"V1 at exp", v1Token, v1Keyfunc,
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), clock(tokRFCExp)}, jwt.ErrTokenExpired},
		{"V1 at exp with 1s leeway", v1Token, v1Keyfunc,
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(time.Second), clock(tokRFCExp)}, nil},
		{"V1 real clock", v1Token, v1Keyfunc, []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"})}, jwt.ErrTokenExpired},
		{"V1 wrong issuer", v1Token, v1Keyfunc,
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("jane"), clock(1300819000)}, jwt.ErrTokenInvalidIssuer},
		{"V1 HS384 only", v1Token, v1Keyfunc, []jwt.ParserOption{jwt.WithValidMethods([]string{"HS384"}), clock(1300819000)}, jwt.ErrTokenSignatureInvalid},
		{"V2 RS256", v2Token, func(*jwt.Token) (any, error) { return keyRSAPublic(t, rfc7515A2N, "AQAB"), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), clock(1300819000)}, nil},
		{"V2 as HS256 with the RSA modulus as HMAC key", v2Token, func(*jwt.Token) (any, error) { return keyB64(t, rfc7515A2N), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), clock(1300819000)}, jwt.ErrTokenSignatureInvalid},
		{"V3 ES256", v3Token, func(*jwt.Token) (any, error) { return keyECPublic(t, elliptic.P256(), rfc7515A3X, rfc7515A3Y), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(), clock(1300819000)}, nil},
		{"V4 non-JSON payload", v4Token, func(*jwt.Token) (any, error) { return keyECPublic(t, elliptic.P521(), v4X, v4Y), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"ES512"})}, jwt.ErrTokenMalformed},
		{"V5 alg none", v5Token, v1Keyfunc, []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), clock(1300819000)}, jwt.ErrTokenSignatureInvalid},
		{"V5 alg none without an allow-list", v5Token, v1Keyfunc, []jwt.ParserOption{clock(1300819000)}, jwt.ErrTokenSignatureInvalid},
		{"V6 non-JSON payload", v6Token, func(*jwt.Token) (any, error) { return ed25519.PublicKey(keyB64(t, rfc8037X)), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"EdDSA"})}, jwt.ErrTokenMalformed},
		{"V10 simplejwt token before exp", v10bTok, func(*jwt.Token) (any, error) { return []byte("not_secret"), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), clock(946684799)}, nil},
		{"V11 no exp", v11Token, func(*jwt.Token) (any, error) { return []byte("your-256-bit-secret"), nil },
			[]jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()}, jwt.ErrTokenRequiredClaimMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := jwt.NewParser(tt.opts...).Parse(tt.token, tt.keyfunc)
			if tt.wantErr == nil {
				if err != nil || !tok.Valid {
					t.Fatalf("Parse = %v (valid %v), want a valid token", err, tok != nil && tok.Valid)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse = %v, want %v", err, tt.wantErr)
			}
			if tok != nil && tok.Valid {
				t.Fatal("Parse returned an error and a valid token")
			}
		})
	}
}

// tokWithHMACKey returns a copy of tk that verifies with key bytes the key policy
// would refuse (the vectors' keys), for Parse-level vector tests only.
func tokWithHMACKey(tk *Tokens, key []byte) *Tokens {
	c := *tk
	c.hmacKey, c.signKey = key, key
	c.keyfunc = c.lookupKey
	return &c
}

func TestParseVectors(t *testing.T) {
	hs := tokHS256(t, TokenConfig{})
	es := tokMust(t, TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256.pem")})
	ed := tokMust(t, TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")})
	y2000 := time.Unix(946684800, 0)
	tests := []struct {
		name  string
		tk    *Tokens
		token string
		now   time.Time
		want  error
	}{
		{"V1 right key, right time: no jti, token_type, user_id", tokWithHMACKey(hs, keyB64(t, v1Key)), v1Token, time.Unix(1300819000, 0), ErrTokenNoType},
		{"V1 right key, after exp", tokWithHMACKey(hs, keyB64(t, v1Key)), v1Token, time.Unix(tokRFCExp, 0), ErrTokenExpired},
		{"V1 wrong key", hs, v1Token, time.Unix(1300819000, 0), ErrTokenInvalid},
		{"V3 ES256 token without kid", es, v3Token, time.Unix(1300819000, 0), ErrTokenInvalid},
		{"V5 alg none", hs, v5Token, time.Unix(1300819000, 0), ErrTokenInvalid},
		{"V5 alg none with the V1 key", tokWithHMACKey(hs, keyB64(t, v1Key)), v5Token, time.Unix(1300819000, 0), ErrTokenInvalid},
		{"V6 EdDSA non-JSON payload", ed, v6Token, tokNow, ErrTokenInvalid},
		{"V8 HS256 kid, non-JSON payload", tokWithHMACKey(hs, keyB64(t, v8Key)), v8Token, tokNow, ErrTokenInvalid},
		{"V10 simplejwt token before exp: no jti, token_type, user_id", tokWithHMACKey(hs, []byte("not_secret")), v10bTok, y2000.Add(-time.Second), ErrTokenNoType},
		{"V10 simplejwt token at exp", tokWithHMACKey(hs, []byte("not_secret")), v10aTok, y2000, ErrTokenExpired},
		{"V10 simplejwt token, our key", hs, v10bTok, y2000.Add(-time.Second), ErrTokenInvalid},
		{"V11 right key: no exp", tokWithHMACKey(hs, []byte("your-256-bit-secret")), v11Token, tokNow, ErrTokenNoExp},
		{"V12 Wycheproof tc1 non-JSON payload", tokWithHMACKey(hs, keyB64(t, wpKey)), wpTC1, tokNow, ErrTokenInvalid},
		{"V12 Wycheproof tc31 HS256 at an ES256 verifier", es, wpTC31, tokNow, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, want := range []string{"", "access"} {
				_, err := tt.tk.Parse(tt.token, want, tt.now)
				if err != tt.want {
					t.Errorf("Parse(%s, %q) = %s, want %s", tokShort(tt.token), want, tokErrName(err), tokErrName(tt.want))
				}
			}
		})
	}
	if err := CheckSecretKey("HS256", "your-256-bit-secret"); err == nil {
		t.Error(`CheckSecretKey("HS256", "your-256-bit-secret") = nil, want an error (V11's key)`)
	}
	if err := CheckSecretKey("HS256", "not_secret"); err == nil {
		t.Error(`CheckSecretKey("HS256", "not_secret") = nil, want an error (V10's key)`)
	}
}

// --- An independent HS256 JWT (crypto/hmac, base64url, encoding/json) ---

// tokIndieSign is HS256 JWS written from RFC 7515 without golang-jwt.
func tokIndieSign(key, header, payload []byte) string {
	input := tokB64.EncodeToString(header) + "." + tokB64.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + tokB64.EncodeToString(mac.Sum(nil))
}

// tokIndieVerify checks an HS256 JWS without golang-jwt and returns its
// decoded header and payload.
func tokIndieVerify(key []byte, raw string) (header, payload []byte, ok bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := tokB64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, nil, false
	}
	header, err1 := tokB64.DecodeString(parts[0])
	payload, err2 := tokB64.DecodeString(parts[1])
	return header, payload, err1 == nil && err2 == nil
}

// tokPyJWTPayload is what simplejwt's TokenBackend.encode writes for our
// claims: json.dumps(payload, separators=(",", ":")) in insertion order.
func tokPyJWTPayload(typ string, exp, iat int64, jti, userIDJSON string) []byte {
	return fmt.Appendf(nil, `{"token_type":%q,"exp":%d,"iat":%d,"jti":%q,"user_id":%s}`, typ, exp, iat, jti, userIDJSON)
}

func TestTokenInteropSimplejwt(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	key := []byte(keySecret256)
	header := []byte(`{"alg":"HS256","typ":"JWT"}`)
	iat := tokNow.Add(-time.Minute).Unix()

	t.Run("simplejwt to Remuda", func(t *testing.T) {
		tests := []struct {
			name, typ, want, userIDJSON, wantUserID string
		}{
			{"access token", "access", "access", `"42"`, "42"},
			{"refresh token", "refresh", "refresh", `"42"`, "42"},
			{"integer user_id of older simplejwt", "access", "access", `42`, "42"},
			{"integer user_id beyond 2^53", "access", "access", `12345678901234567890`, "12345678901234567890"},
			{"UUID user_id", "access", "access", `"8b3e9c1a-5f0d-4c2b-9a7e-1d2c3b4a5f60"`, "8b3e9c1a-5f0d-4c2b-9a7e-1d2c3b4a5f60"},
			{"any type at verify", "sliding", "", `"42"`, "42"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				raw := tokIndieSign(key, header, tokPyJWTPayload(tt.typ, iat+300, iat, "4c0ad5b3a6f94be7bb5d0e1f2a3b4c5d", tt.userIDJSON))
				c, err := tk.Parse(raw, tt.want, tokNow)
				if err != nil {
					t.Fatalf("Parse(%s) = %s, want nil", raw, tokErrName(err))
				}
				want := Claims{TokenType: tt.typ, ExpiresAt: time.Unix(iat+300, 0).UTC(), IssuedAt: time.Unix(iat, 0).UTC(),
					JTI: "4c0ad5b3a6f94be7bb5d0e1f2a3b4c5d", UserID: tt.wantUserID}
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("Parse(%s) = %+v, want %+v", raw, c, want)
				}
			})
		}
	})

	t.Run("Remuda to simplejwt", func(t *testing.T) {
		for _, typ := range []string{"access", "refresh"} {
			t.Run(typ, func(t *testing.T) {
				now := tokNow.Add(123456789 * time.Nanosecond) // simplejwt's epochs drop the fraction
				raw, c, err := tk.Issue(typ, "42", now)
				if err != nil {
					t.Fatal(err)
				}
				gotHeader, payload, ok := tokIndieVerify(key, raw)
				if !ok {
					t.Fatalf("independent HS256 does not verify %s", raw)
				}
				if !bytes.Equal(gotHeader, header) {
					t.Errorf("header = %s, want %s (PyJWT's sorted header)", gotHeader, header)
				}
				life := map[string]time.Duration{"access": DefaultAccessLifetime, "refresh": DefaultRefreshLifetime}[typ]
				wantExp, wantIat := tokNow.Add(life).Unix(), tokNow.Unix()
				if !regexp.MustCompile(`^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$`).MatchString(c.JTI) {
					t.Errorf("jti = %q, want a uuid4 as 32 hex digits", c.JTI)
				}
				want := tokPyJWTPayload(typ, wantExp, wantIat, c.JTI, `"42"`)
				if !bytes.Equal(payload, want) {
					t.Errorf("payload = %s, want %s", payload, want)
				}
				// The same, read by a JSON decoder: exactly 5 claims, in order, integer epochs.
				dec := json.NewDecoder(bytes.NewReader(payload))
				dec.UseNumber()
				var names []string
				if _, err := dec.Token(); err != nil { // {
					t.Fatal(err)
				}
				values := map[string]any{}
				for dec.More() {
					name, err := dec.Token()
					if err != nil {
						t.Fatal(err)
					}
					var v any
					if err := dec.Decode(&v); err != nil {
						t.Fatal(err)
					}
					names = append(names, name.(string))
					values[name.(string)] = v
				}
				if got, want := strings.Join(names, ","), "token_type,exp,iat,jti,user_id"; got != want {
					t.Errorf("claims = %s, want %s", got, want)
				}
				for _, name := range []string{"exp", "iat"} {
					n, ok := values[name].(json.Number)
					if _, err := strconv.ParseInt(string(n), 10, 64); !ok || err != nil {
						t.Errorf("%s = %v, want an integer", name, values[name])
					}
				}
				wantClaims := Claims{TokenType: typ, ExpiresAt: time.Unix(wantExp, 0).UTC(), IssuedAt: time.Unix(wantIat, 0).UTC(), JTI: c.JTI, UserID: "42"}
				if !reflect.DeepEqual(c, wantClaims) {
					t.Errorf("Issue claims = %+v, want %+v", c, wantClaims)
				}
			})
		}
	})
}

// --- Issue ---

func TestTokenIssue(t *testing.T) {
	tk := tokHS256(t, TokenConfig{AccessLifetime: 10 * time.Minute, RefreshLifetime: 48 * time.Hour})
	seen := map[string]bool{}
	for _, typ := range []string{"access", "refresh", "access", "refresh"} {
		raw, c, err := tk.Issue(typ, "u-7", tokNow)
		if err != nil {
			t.Fatalf("Issue(%q) = %v", typ, err)
		}
		if seen[c.JTI] {
			t.Errorf("Issue(%q) repeated jti %s", typ, c.JTI)
		}
		seen[c.JTI] = true
		life := map[string]time.Duration{"access": 10 * time.Minute, "refresh": 48 * time.Hour}[typ]
		if !c.ExpiresAt.Equal(tokNow.Add(life)) || !c.IssuedAt.Equal(tokNow) {
			t.Errorf("Issue(%q) exp, iat = %v, %v, want %v, %v", typ, c.ExpiresAt, c.IssuedAt, tokNow.Add(life), tokNow)
		}
		got, err := tk.Parse(raw, typ, tokNow)
		if err != nil {
			t.Fatalf("Parse(Issue(%q)) = %s", typ, tokErrName(err))
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("Parse(Issue(%q)) = %+v, want %+v", typ, got, c)
		}
	}
	for _, tt := range []struct{ typ, user string }{{"sliding", "1"}, {"", "1"}, {"Access", "1"}, {"access", ""}} {
		if raw, _, err := tk.Issue(tt.typ, tt.user, tokNow); err == nil {
			t.Errorf("Issue(%q, %q) = %s, nil; want an error", tt.typ, tt.user, raw)
		}
	}
}

func TestTokenIssueHeader(t *testing.T) {
	tests := []struct {
		cfg  TokenConfig
		want string // %s is the kid
	}{
		{TokenConfig{Algorithm: "HS256", SecretKey: keySecret256}, `{"alg":"HS256","typ":"JWT"}`},
		{TokenConfig{Algorithm: "HS384", SecretKey: keySecret384}, `{"alg":"HS384","typ":"JWT"}`},
		{TokenConfig{Algorithm: "HS512", SecretKey: keySecret512}, `{"alg":"HS512","typ":"JWT"}`},
		{TokenConfig{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem")}, `{"alg":"RS256","kid":"%s","typ":"JWT"}`},
		{TokenConfig{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256.pem")}, `{"alg":"ES256","kid":"%s","typ":"JWT"}`},
		{TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")}, `{"alg":"EdDSA","kid":"%s","typ":"JWT"}`},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.Algorithm, func(t *testing.T) {
			tk := tokMust(t, tt.cfg)
			raw, _, err := tk.Issue("access", "1", tokNow)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if strings.Contains(want, "%s") {
				if len(tk.kid) != 43 {
					t.Errorf("kid = %q, want 43 base64url characters (SHA-256)", tk.kid)
				}
				want = fmt.Sprintf(want, tk.kid)
			}
			header := keyB64(t, raw[:strings.IndexByte(raw, '.')])
			if string(header) != want {
				t.Fatalf("header = %s, want %s", header, want)
			}
		})
	}
}

func TestTokenIssuerAudience(t *testing.T) {
	const iss, aud = "https://remuda.example", "remuda-api"
	tk := tokHS256(t, TokenConfig{Issuer: iss, Audience: aud})
	raw, c, err := tk.Issue("access", "9", tokNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != iss || c.Audience != aud {
		t.Errorf("Issue claims iss, aud = %q, %q, want %q, %q", c.Issuer, c.Audience, iss, aud)
	}
	payload := keyB64(t, strings.Split(raw, ".")[1])
	want := fmt.Sprintf(`{"token_type":"access","exp":%d,"iat":%d,"jti":%q,"user_id":"9","aud":%q,"iss":%q}`,
		tokNow.Unix()+300, tokNow.Unix(), c.JTI, aud, iss)
	if string(payload) != want {
		t.Errorf("payload = %s, want %s (simplejwt appends aud, then iss)", payload, want)
	}
	if got, err := tk.Parse(raw, "access", tokNow); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("Parse(Issue) = %+v, %s; want %+v, nil", got, tokErrName(err), c)
	}

	plain := tokHS256(t, TokenConfig{})
	tests := []struct {
		name   string
		tk     *Tokens
		change map[string]any
		want   error
	}{
		{"both right", tk, map[string]any{"iss": iss, "aud": aud}, nil},
		{"aud list holding ours", tk, map[string]any{"iss": iss, "aud": []string{"other", aud}}, nil},
		{"wrong iss", tk, map[string]any{"iss": "https://evil.example", "aud": aud}, ErrTokenInvalid},
		{"no iss", tk, map[string]any{"aud": aud}, ErrTokenInvalid},
		{"iss not a string", tk, map[string]any{"iss": 7, "aud": aud}, ErrTokenInvalid},
		{"wrong aud", tk, map[string]any{"iss": iss, "aud": "other-api"}, ErrTokenInvalid},
		{"aud list without ours", tk, map[string]any{"iss": iss, "aud": []string{"a", "b"}}, ErrTokenInvalid},
		{"no aud", tk, map[string]any{"iss": iss}, ErrTokenInvalid},
		{"aud not a string", tk, map[string]any{"iss": iss, "aud": 5}, ErrTokenInvalid},
		{"none configured: iss is tolerated", plain, map[string]any{"iss": "anyone"}, nil},
		{"none configured: aud is refused (PyJWT)", plain, map[string]any{"aud": aud}, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tokSignHS(t, nil, tokClaims(tokNow, tt.change))
			if _, err := tt.tk.Parse(raw, "access", tokNow); err != tt.want {
				t.Fatalf("Parse = %s, want %s", tokErrName(err), tokErrName(tt.want))
			}
		})
	}
}

// --- Parse: everything it must refuse ---

func TestParseRefusals(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	now := tokNow
	good := tokClaims(now, nil)
	noneBody := tokB64.EncodeToString([]byte(`{"token_type":"access","exp":` + strconv.FormatInt(now.Unix()+300, 10) + `,"iat":1,"jti":"a","user_id":"1"}`))
	goodRaw := tokSignHS(t, nil, good)
	parts := strings.Split(goodRaw, ".")

	tests := []struct {
		name string
		raw  string
		want string // token_type wanted
		err  error
	}{
		{"good token", goodRaw, "access", nil},
		{"good token, any type", goodRaw, "", nil},
		{"V5 alg none", v5Token, "access", ErrTokenInvalid},
		{"alg none, our claims", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + noneBody + ".", "access", ErrTokenInvalid},
		{"alg None", tokUnsigned(`{"alg":"None","typ":"JWT"}`, string(keyB64(t, noneBody))), "access", ErrTokenInvalid},
		{"alg NONE", tokUnsigned(`{"alg":"NONE","typ":"JWT"}`, string(keyB64(t, noneBody))), "access", ErrTokenInvalid},
		{"alg nOnE", tokUnsigned(`{"alg":"nOnE"}`, string(keyB64(t, noneBody))), "access", ErrTokenInvalid},
		{"alg none with our signature", tokB64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2], "access", ErrTokenInvalid},
		{"no alg", tokSignHS(t, map[string]any{"alg": nil}, good), "access", ErrTokenInvalid},
		{"alg not a string", tokSignHS(t, map[string]any{"alg": 256}, good), "access", ErrTokenInvalid},
		{"HS512 token, same key", tokSign(t, jwt.SigningMethodHS512, []byte(keySecret256), nil, good), "access", ErrTokenInvalid},
		{"HS384 token, same key", tokSign(t, jwt.SigningMethodHS384, []byte(keySecret256), nil, good), "access", ErrTokenInvalid},
		{"HS512 header, HS256 signature", tokSign(t, jwt.SigningMethodHS256, []byte(keySecret256), map[string]any{"alg": "HS512"}, good), "access", ErrTokenInvalid},
		{"wrong key", tokSign(t, jwt.SigningMethodHS256, []byte(keySecret384), nil, good), "access", ErrTokenInvalid},
		{"no signature", parts[0] + "." + parts[1] + ".", "access", ErrTokenInvalid},
		{"payload of another token", parts[0] + "." + strings.Split(tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": "1"})), ".")[1] + "." + parts[2], "access", ErrTokenInvalid},
		{"expired", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix() - 1})), "access", ErrTokenExpired},
		{"exp == now", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix()})), "access", ErrTokenExpired},
		{"exp == now + 1s", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix() + 1})), "access", nil},
		{"exp now + 0.5s: truncated to now (as PyJWT's int(exp))", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": float64(now.Unix()) + 0.5})), "access", ErrTokenExpired},
		{"exp now + 1.5s", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": float64(now.Unix()) + 1.5})), "access", nil},
		{"exp 0", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": 0})), "access", ErrTokenExpired},
		{"expired and wrong type: expired first (simplejwt)", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix() - 1, "token_type": "refresh"})), "access", ErrTokenExpired},
		{"expired and no jti: expired first (simplejwt)", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix() - 1, "jti": nil})), "access", ErrTokenExpired},
		{"expired and future iat", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": now.Unix() - 1, "iat": now.Unix() + 60})), "access", ErrTokenInvalid},
		{"no exp", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": nil})), "access", ErrTokenNoExp},
		{"exp null", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": json.RawMessage("null")})), "access", ErrTokenInvalid},
		{"exp a string", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": strconv.FormatInt(now.Unix()+300, 10)})), "access", ErrTokenInvalid},
		{"exp beyond year 9999", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": json.RawMessage("1e300")})), "access", ErrTokenInvalid},
		{"exp year 10000", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": 253402300800})), "access", ErrTokenInvalid},
		{"exp negative", tokSignHS(t, nil, tokClaims(now, map[string]any{"exp": -1})), "access", ErrTokenInvalid},
		{"no jti", tokSignHS(t, nil, tokClaims(now, map[string]any{"jti": nil})), "access", ErrTokenNoID},
		{"empty jti", tokSignHS(t, nil, tokClaims(now, map[string]any{"jti": ""})), "access", ErrTokenInvalid},
		{"jti a number", tokSignHS(t, nil, tokClaims(now, map[string]any{"jti": 12})), "access", ErrTokenInvalid},
		{"no token_type", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": nil})), "access", ErrTokenNoType},
		{"no token_type, any type", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": nil})), "", ErrTokenNoType},
		{"empty token_type", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": ""})), "", ErrTokenInvalid},
		{"token_type a number", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": 1})), "", ErrTokenInvalid},
		{"TOKEN_TYPE is not token_type", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": nil, "TOKEN_TYPE": "access"})), "access", ErrTokenNoType},
		{"no user_id", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": nil})), "access", ErrTokenInvalid},
		{"empty user_id", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": ""})), "access", ErrTokenInvalid},
		{"user_id true", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": true})), "access", ErrTokenInvalid},
		{"user_id 1.5", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": 1.5})), "access", ErrTokenInvalid},
		{"user_id 1e3", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": json.RawMessage("1e3")})), "access", ErrTokenInvalid},
		{"user_id object", tokSignHS(t, nil, tokClaims(now, map[string]any{"user_id": map[string]int{"id": 1}})), "access", ErrTokenInvalid},
		{"future iat", tokSignHS(t, nil, tokClaims(now, map[string]any{"iat": now.Unix() + 1})), "access", ErrTokenInvalid},
		{"iat a string", tokSignHS(t, nil, tokClaims(now, map[string]any{"iat": "yesterday"})), "access", ErrTokenInvalid},
		{"no iat (simplejwt < 4.7)", tokSignHS(t, nil, tokClaims(now, map[string]any{"iat": nil})), "access", nil},
		{"future nbf", tokSignHS(t, nil, tokClaims(now, map[string]any{"nbf": now.Unix() + 1})), "access", ErrTokenInvalid},
		{"past nbf", tokSignHS(t, nil, tokClaims(now, map[string]any{"nbf": now.Unix()})), "access", nil},
		{"refresh as access", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": "refresh"})), "access", ErrTokenWrongType},
		{"access as refresh", goodRaw, "refresh", ErrTokenWrongType},
		{"sliding as access", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": "sliding"})), "access", ErrTokenWrongType},
		{"Access as access", tokSignHS(t, nil, tokClaims(now, map[string]any{"token_type": "Access"})), "access", ErrTokenWrongType},
		{"not.a.token", "not.a.token", "access", ErrTokenInvalid},
		{"empty", "", "access", ErrTokenInvalid},
		{"one dot", parts[0] + "." + parts[1], "access", ErrTokenInvalid},
		{"three dots", goodRaw + ".", "access", ErrTokenInvalid},
		{"four segments", goodRaw + "." + parts[2], "access", ErrTokenInvalid},
		{"two dots only", "..", "access", ErrTokenInvalid},
		{"padding", parts[0] + "." + parts[1] + "." + parts[2] + "=", "access", ErrTokenInvalid},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(goodRaw) + "+/", "access", ErrTokenInvalid},
		{"Bearer prefix", "Bearer " + goodRaw, "access", ErrTokenInvalid},
		{"trailing newline", goodRaw + "\n", "access", ErrTokenInvalid},
		{"leading space", " " + goodRaw, "access", ErrTokenInvalid},
		{"NUL byte", goodRaw[:10] + "\x00" + goodRaw[10:], "access", ErrTokenInvalid},
		{"20 kB token", parts[0] + "." + strings.Repeat("A", 20<<10) + "." + parts[2], "access", ErrTokenInvalid},
		{"MaxTokenBytes + 1", goodRaw + strings.Repeat("A", MaxTokenBytes+1-len(goodRaw)), "access", ErrTokenInvalid},
		{"1 MiB of dots", strings.Repeat(".", 1<<20), "access", ErrTokenInvalid},
		{"JSON serialisation", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, "access", ErrTokenInvalid},
		{"flattened JSON serialisation with signatures", `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`, "access", ErrTokenInvalid},
		{"header not JSON", tokB64.EncodeToString([]byte("HS256")) + "." + parts[1] + "." + parts[2], "access", ErrTokenInvalid},
		{"payload not JSON", tokSignHSRaw(t, `{"alg":"HS256","typ":"JWT"}`, `Payload`), "access", ErrTokenInvalid},
		{"payload a JSON array", tokSignHSRaw(t, `{"alg":"HS256","typ":"JWT"}`, `[1,2]`), "access", ErrTokenInvalid},
		{"payload null (decodes as no claims)", tokSignHSRaw(t, `{"alg":"HS256","typ":"JWT"}`, `null`), "access", ErrTokenNoExp},
		{"header jku", tokSignHS(t, map[string]any{"jku": "https://evil.example/jwks.json"}, good), "access", ErrTokenInvalid},
		{"header x5u", tokSignHS(t, map[string]any{"x5u": "https://evil.example/cert.pem"}, good), "access", ErrTokenInvalid},
		{"header jwk", tokSignHS(t, map[string]any{"jwk": map[string]string{"kty": "oct", "k": "AAAA"}}, good), "access", ErrTokenInvalid},
		{"header x5c", tokSignHS(t, map[string]any{"x5c": []string{"MIIB"}}, good), "access", ErrTokenInvalid},
		{"header jku null", tokSignHS(t, map[string]any{"jku": json.RawMessage("null")}, good), "access", ErrTokenInvalid},
		{"header crit", tokSignHS(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, good), "access", ErrTokenInvalid},
		{"HS: kid is ignored (as simplejwt)", tokSignHS(t, map[string]any{"kid": "../../etc/passwd"}, good), "access", nil},
		{"no typ header (PyJWT may omit it)", tokSignHS(t, map[string]any{"typ": nil}, good), "access", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tk.Parse(tt.raw, tt.want, now)
			if err != tt.err {
				t.Fatalf("Parse(%q, %q) = %s, want %s", tokShort(tt.raw), tt.want, tokErrName(err), tokErrName(tt.err))
			}
			if err != nil && !reflect.DeepEqual(c, Claims{}) {
				t.Fatalf("Parse(%q, %q) = %+v with an error, want zero Claims", tokShort(tt.raw), tt.want, c)
			}
			if err == nil && (c.JTI == "" || c.UserID == "" || c.TokenType == "" || !c.ExpiresAt.After(now)) {
				t.Fatalf("Parse(%q, %q) = %+v, want every required claim", tokShort(tt.raw), tt.want, c)
			}
		})
	}
}

// tokSignHSRaw signs exact header and payload bytes with the test secret.
func tokSignHSRaw(t *testing.T, header, payload string) string {
	t.Helper()
	return tokIndieSign([]byte(keySecret256), []byte(header), []byte(payload))
}

func TestParseUserIDNumber(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	tests := []struct{ json, want string }{
		{`42`, "42"},
		{`0`, "0"},
		{`-3`, "-3"},
		{`9007199254740993`, "9007199254740993"}, // 2^53 + 1: not a float64
		{`"42"`, "42"},
		{`"abc"`, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			raw := tokSignHS(t, nil, tokClaims(tokNow, map[string]any{"user_id": json.RawMessage(tt.json)}))
			c, err := tk.Parse(raw, "access", tokNow)
			if err != nil || c.UserID != tt.want {
				t.Fatalf("Parse(user_id %s) = %q, %s; want %q, nil", tt.json, c.UserID, tokErrName(err), tt.want)
			}
		})
	}
}

func TestParseLeeway(t *testing.T) {
	tk := tokHS256(t, TokenConfig{Leeway: 30 * time.Second})
	now := tokNow.Unix()
	tests := []struct {
		name   string
		change map[string]any
		err    error
	}{
		{"exp 20s ago", map[string]any{"exp": now - 20}, nil},
		{"exp 29s ago", map[string]any{"exp": now - 29}, nil},
		{"exp 30s ago (exp + leeway == now)", map[string]any{"exp": now - 30}, ErrTokenExpired},
		{"exp 40s ago", map[string]any{"exp": now - 40}, ErrTokenExpired},
		{"iat 20s ahead", map[string]any{"iat": now + 20}, nil},
		{"iat 40s ahead", map[string]any{"iat": now + 40}, ErrTokenInvalid},
		{"nbf 20s ahead", map[string]any{"nbf": now + 20}, nil},
		{"nbf 40s ahead", map[string]any{"nbf": now + 40}, ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tokSignHS(t, nil, tokClaims(tokNow, tt.change))
			if _, err := tk.Parse(raw, "access", tokNow); err != tt.err {
				t.Fatalf("Parse = %s, want %s", tokErrName(err), tokErrName(tt.err))
			}
		})
	}
	// Without leeway, the same token 20s late is expired.
	raw := tokSignHS(t, nil, tokClaims(tokNow, map[string]any{"exp": now - 20}))
	if _, err := tokHS256(t, TokenConfig{}).Parse(raw, "access", tokNow); err != ErrTokenExpired {
		t.Fatalf("Parse without leeway = %s, want ErrTokenExpired", tokErrName(err))
	}
}

func TestParseExpiryBoundary(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	raw, c, err := tk.Issue("access", "1", tokNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at  time.Time
		err error
	}{
		{c.ExpiresAt.Add(-time.Second), nil},
		{c.ExpiresAt.Add(-time.Nanosecond), nil},
		{c.ExpiresAt, ErrTokenExpired}, // simplejwt: exp <= now is expired
		{c.ExpiresAt.Add(time.Nanosecond), ErrTokenExpired},
		{c.ExpiresAt.Add(time.Hour), ErrTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.at.Sub(c.ExpiresAt).String(), func(t *testing.T) {
			if _, err := tk.Parse(raw, "access", tt.at); err != tt.err {
				t.Fatalf("Parse at exp%+v = %s, want %s", tt.at.Sub(c.ExpiresAt), tokErrName(err), tokErrName(tt.err))
			}
		})
	}
}

// tokAsymmetric are the asymmetric configurations, with their rotated-out keys.
var tokAsymmetric = []struct {
	alg, private, oldPrivate, oldPublic string
	method                              jwt.SigningMethod
}{
	{"RS256", "rsa2048.pem", "rsa2048-old.pem", "rsa2048-old.pub.pem", jwt.SigningMethodRS256},
	{"ES256", "ec-p256.pem", "ec-p256-old.pem", "ec-p256-old.pub.pem", jwt.SigningMethodES256},
	{"EdDSA", "ed25519.pem", "ed25519-old.pem", "ed25519-old.pub.pem", jwt.SigningMethodEdDSA},
}

func TestTokenSingleByteChanges(t *testing.T) {
	configs := []TokenConfig{{Algorithm: "HS256", SecretKey: keySecret256}}
	for _, a := range tokAsymmetric {
		configs = append(configs, TokenConfig{Algorithm: a.alg, PrivateKeyFile: keyTestFile(a.private)})
	}
	for _, cfg := range configs {
		t.Run(cfg.Algorithm, func(t *testing.T) {
			tk := tokMust(t, cfg)
			raw, _, err := tk.Issue("access", "42", tokNow)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tk.Parse(raw, "access", tokNow); err != nil {
				t.Fatalf("Parse(unchanged) = %s", tokErrName(err))
			}
			segment := 0
			for i := 0; i < len(raw); i++ {
				if raw[i] == '.' {
					segment++
					continue
				}
				// Another base64url character, and the last one of the alphabet
				// (which also tests the unused low bits of a final character).
				for _, r := range []byte{'A', '_'} {
					if raw[i] == r {
						r = 'B'
					}
					changed := raw[:i] + string(r) + raw[i+1:]
					if _, err := tk.Parse(changed, "", tokNow); err != ErrTokenInvalid {
						t.Fatalf("Parse(token with %s byte %d changed to %c) = %s, want ErrTokenInvalid",
							[]string{"header", "payload", "signature"}[segment], i, r, tokErrName(err))
					}
				}
			}
		})
	}
}

func TestTokenAsymmetric(t *testing.T) {
	for _, a := range tokAsymmetric {
		t.Run(a.alg, func(t *testing.T) {
			tk := tokMust(t, TokenConfig{Algorithm: a.alg, PrivateKeyFile: keyTestFile(a.private)})
			old := tokMust(t, TokenConfig{Algorithm: a.alg, PrivateKeyFile: keyTestFile(a.oldPrivate)})
			rotated := tokMust(t, TokenConfig{Algorithm: a.alg, PrivateKeyFile: keyTestFile(a.private), PublicKeyFiles: []string{keyTestFile(a.oldPublic)}})
			priv := tk.signKey
			good := tokClaims(tokNow, nil)

			t.Run("round trip", func(t *testing.T) {
				for _, typ := range []string{"access", "refresh"} {
					raw, c, err := tk.Issue(typ, "42", tokNow)
					if err != nil {
						t.Fatal(err)
					}
					got, err := tk.Parse(raw, typ, tokNow)
					if err != nil || !reflect.DeepEqual(got, c) {
						t.Fatalf("Parse(Issue(%q)) = %+v, %s; want %+v, nil", typ, got, tokErrName(err), c)
					}
					if _, err := tk.Parse(raw, map[string]string{"access": "refresh", "refresh": "access"}[typ], tokNow); err != ErrTokenWrongType {
						t.Fatalf("Parse(%s token as the other type) = %s, want ErrTokenWrongType", typ, tokErrName(err))
					}
				}
			})

			t.Run("rotation", func(t *testing.T) {
				oldRaw, oldClaims, err := old.Issue("access", "42", tokNow)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := rotated.Parse(oldRaw, "access", tokNow); err != nil || !reflect.DeepEqual(got, oldClaims) {
					t.Fatalf("rotated.Parse(old key's token) = %+v, %s; want %+v, nil", got, tokErrName(err), oldClaims)
				}
				if _, err := tk.Parse(oldRaw, "access", tokNow); err != ErrTokenInvalid {
					t.Fatalf("Parse(old key's token) without the old public key = %s, want ErrTokenInvalid", tokErrName(err))
				}
				newRaw, _, err := rotated.Issue("access", "42", tokNow)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tk.Parse(newRaw, "access", tokNow); err != nil {
					t.Fatalf("Parse(rotated signer's token) = %s, want nil: the signing key is the new one", tokErrName(err))
				}
				if _, err := old.Parse(newRaw, "access", tokNow); err != ErrTokenInvalid {
					t.Fatalf("old.Parse(new key's token) = %s, want ErrTokenInvalid", tokErrName(err))
				}
				// The old key signing under the new key's kid fails too.
				forged := tokSign(t, a.method, old.signKey, map[string]any{"kid": tk.kid}, good)
				if _, err := rotated.Parse(forged, "access", tokNow); err != ErrTokenInvalid {
					t.Fatalf("Parse(old key's signature under the new kid) = %s, want ErrTokenInvalid", tokErrName(err))
				}
			})

			pubDER, err := x509.MarshalPKIXPublicKey(tk.verify[tk.kid])
			if err != nil {
				t.Fatal(err)
			}
			pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
			fileBytes, err := os.ReadFile(keyTestFile(a.oldPublic))
			if err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name string
				raw  string
				err  error
			}{
				{"good", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid}, good), nil},
				{"no kid", tokSign(t, a.method, priv, nil, good), ErrTokenInvalid},
				{"empty kid", tokSign(t, a.method, priv, map[string]any{"kid": ""}, good), ErrTokenInvalid},
				{"kid a number", tokSign(t, a.method, priv, map[string]any{"kid": 1}, good), ErrTokenInvalid},
				{"kid null", tokSign(t, a.method, priv, map[string]any{"kid": json.RawMessage("null")}, good), ErrTokenInvalid},
				{"unknown kid", tokSign(t, a.method, priv, map[string]any{"kid": strings.Repeat("A", 43)}, good), ErrTokenInvalid},
				{"kid of the other key", tokSign(t, a.method, priv, map[string]any{"kid": old.kid}, good), ErrTokenInvalid},
				{"kid 129 bytes", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid + strings.Repeat("A", 86)}, good), ErrTokenInvalid},
				{"kid 4 KiB", tokSign(t, a.method, priv, map[string]any{"kid": strings.Repeat("k", 4<<10)}, good), ErrTokenInvalid},
				{"kid path traversal", tokSign(t, a.method, priv, map[string]any{"kid": "../../etc/passwd"}, good), ErrTokenInvalid},
				{"kid /dev/null", tokSign(t, a.method, priv, map[string]any{"kid": "../../../../dev/null"}, good), ErrTokenInvalid},
				{"kid SQL", tokSign(t, a.method, priv, map[string]any{"kid": "' OR '1'='1"}, good), ErrTokenInvalid},
				{"kid with a NUL", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid + "\x00"}, good), ErrTokenInvalid},
				{"header jku", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid, "jku": "https://evil.example/jwks.json"}, good), ErrTokenInvalid},
				{"header x5u", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid, "x5u": "https://evil.example/c.pem"}, good), ErrTokenInvalid},
				{"header jwk", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid, "jwk": map[string]string{"kty": "OKP"}}, good), ErrTokenInvalid},
				{"header x5c", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid, "x5c": []string{"MIIB"}}, good), ErrTokenInvalid},
				{"HS256 MAC'd with the public key PEM", tokSign(t, jwt.SigningMethodHS256, pubPEM, map[string]any{"kid": tk.kid}, good), ErrTokenInvalid},
				{"HS256 MAC'd with the public key DER", tokSign(t, jwt.SigningMethodHS256, pubDER, map[string]any{"kid": tk.kid}, good), ErrTokenInvalid},
				{"HS256 MAC'd with the public key file", tokSign(t, jwt.SigningMethodHS256, fileBytes, map[string]any{"kid": old.kid}, good), ErrTokenInvalid},
				{"alg none with kid", tokUnsigned(`{"alg":"none","kid":"`+tk.kid+`"}`, `{"token_type":"access","exp":9999999999,"jti":"a","user_id":"1"}`), ErrTokenInvalid},
				{"expired", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid}, tokClaims(tokNow, map[string]any{"exp": tokNow.Unix()})), ErrTokenExpired},
				{"no jti", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid}, tokClaims(tokNow, map[string]any{"jti": nil})), ErrTokenNoID},
				{"refresh as access", tokSign(t, a.method, priv, map[string]any{"kid": tk.kid}, tokClaims(tokNow, map[string]any{"token_type": "refresh"})), ErrTokenWrongType},
			}
			for _, other := range tokAsymmetric {
				if other.alg == a.alg {
					continue
				}
				otherTk := tokMust(t, TokenConfig{Algorithm: other.alg, PrivateKeyFile: keyTestFile(other.private)})
				raw, _, err := otherTk.Issue("access", "42", tokNow)
				if err != nil {
					t.Fatal(err)
				}
				tests = append(tests, struct {
					name string
					raw  string
					err  error
				}{other.alg + " token", raw, ErrTokenInvalid})
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if _, err := rotated.Parse(tt.raw, "access", tokNow); err != tt.err {
						t.Fatalf("Parse(%s) = %s, want %s", tokShort(tt.raw), tokErrName(err), tokErrName(tt.err))
					}
				})
			}
		})
	}
}

func TestParseDotFlood(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	inputs := map[string]string{
		"1 MiB of dots":                strings.Repeat(".", 1<<20),
		"1 MiB of A with two dots":     "A." + strings.Repeat("A", 1<<20) + ".A",
		"MaxTokenBytes of dots":        strings.Repeat(".", MaxTokenBytes),
		"MaxTokenBytes of a dot flood": "A" + strings.Repeat(".A", MaxTokenBytes/2-1),
	}
	for name, raw := range inputs {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			allocs := testing.AllocsPerRun(20, func() {
				if _, err := tk.Parse(raw, "access", tokNow); err != ErrTokenInvalid {
					t.Fatalf("Parse = %s, want ErrTokenInvalid", tokErrName(err))
				}
			})
			if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
				t.Errorf("21 Parse calls took %v, want well under 500ms", elapsed)
			}
			if allocs > 0 {
				t.Errorf("Parse allocated %v times per call, want 0", allocs)
			}
		})
	}
}

func TestTokensConcurrent(t *testing.T) {
	tk := tokMust(t, TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				raw, c, err := tk.Issue("refresh", strconv.Itoa(g), tokNow)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := tk.Parse(raw, "refresh", tokNow); err != nil || !reflect.DeepEqual(got, c) {
					t.Errorf("Parse = %+v, %s; want %+v, nil", got, tokErrName(err), c)
					return
				}
				_ = tk.JWKS()
			}
		}()
	}
	wg.Wait()
}

func TestTokenErrors(t *testing.T) {
	tests := []struct {
		err  *TokenError
		want string
	}{
		{ErrTokenInvalid, "Token is invalid"},
		{ErrTokenExpired, "Token is expired"},
		{ErrTokenWrongType, "Token has wrong type"},
		{ErrTokenBlacklisted, "Token is blacklisted"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if tt.err.Message != tt.want {
				t.Errorf("Message = %q, want %q (simplejwt's text)", tt.err.Message, tt.want)
			}
			if got := tt.err.Error(); got != "auth: "+tt.want {
				t.Errorf("Error() = %q, want %q", got, "auth: "+tt.want)
			}
			var te *TokenError
			if wrapped := fmt.Errorf("refresh: %w", tt.err); !errors.As(wrapped, &te) || te != tt.err || !errors.Is(wrapped, tt.err) {
				t.Errorf("errors.As/Is through a wrap: got %v, want %v", te, tt.err)
			}
		})
	}
}

// --- Fuzzing ---

// tokFuzzNow is the clock of FuzzParse; the seeds in testdata/fuzz/FuzzParse
// were issued a minute before it.
var tokFuzzNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func FuzzParse(f *testing.F) {
	hs := tokMust(f, TokenConfig{Algorithm: "HS256", SecretKey: keySecret256})
	ed := tokMust(f, TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")})
	for _, tk := range []*Tokens{hs, ed} {
		for _, typ := range []string{"access", "refresh"} {
			raw, _, err := tk.Issue(typ, "42", tokFuzzNow.Add(-time.Minute))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(raw)
		}
	}
	for _, v := range []string{v1Token, v2Token, v3Token, v4Token, v5Token, v6Token, v8Token, v9Token, v10aTok, v10bTok, v11Token, wpTC1, wpTC31} {
		f.Add(v)
	}
	f.Add("not.a.token")
	f.Add("..")
	f.Add(strings.Repeat(".", 64))
	f.Add(`{"payload":"e30","signatures":[]}`)

	f.Fuzz(func(t *testing.T, raw string) {
		for _, tk := range []*Tokens{hs, ed} {
			for _, want := range []string{"", "access", "refresh"} {
				c, err := tk.Parse(raw, want, tokFuzzNow)
				if err != nil {
					if err != ErrTokenInvalid && err != ErrTokenExpired && err != ErrTokenWrongType {
						t.Fatalf("%s Parse(%q, %q) = %v, want one of the three sentinels", tk.alg, raw, want, err)
					}
					if !reflect.DeepEqual(c, Claims{}) {
						t.Fatalf("%s Parse(%q, %q) = %+v with an error, want zero Claims", tk.alg, raw, want, c)
					}
					continue
				}
				switch {
				case len(raw) > MaxTokenBytes || strings.Count(raw, ".") != 2:
					t.Fatalf("%s Parse accepted %d bytes with %d dots", tk.alg, len(raw), strings.Count(raw, "."))
				case c.JTI == "" || c.UserID == "" || c.TokenType == "":
					t.Fatalf("%s Parse(%q, %q) = %+v, want jti, user_id and token_type", tk.alg, raw, want, c)
				case want != "" && c.TokenType != want:
					t.Fatalf("%s Parse(%q, %q) = type %q, want %q", tk.alg, raw, want, c.TokenType, want)
				case !c.ExpiresAt.After(tokFuzzNow):
					t.Fatalf("%s Parse(%q, %q) accepted exp %v at %v", tk.alg, raw, want, c.ExpiresAt, tokFuzzNow)
				case c.IssuedAt.After(tokFuzzNow):
					t.Fatalf("%s Parse(%q, %q) accepted iat %v at %v", tk.alg, raw, want, c.IssuedAt, tokFuzzNow)
				}
				for i, seg := range strings.Split(raw, ".")[:2] {
					b, err := tokB64.DecodeString(seg)
					if err != nil || !utf8.Valid(b) || !json.Valid(b) {
						t.Fatalf("%s Parse(%q, %q) accepted segment %d %q, not one JSON value of valid UTF-8", tk.alg, raw, want, i, b)
					}
				}
			}
		}
	})
}

// --- Benchmarks ---

func BenchmarkIssue(b *testing.B) {
	for _, cfg := range tokBenchConfigs() {
		b.Run(cfg.Algorithm, func(b *testing.B) {
			tk := tokMust(b, cfg)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := tk.Issue("access", "42", tokNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, cfg := range tokBenchConfigs() {
		b.Run(cfg.Algorithm, func(b *testing.B) {
			tk := tokMust(b, cfg)
			raw, _, err := tk.Issue("access", "42", tokNow)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tk.Parse(raw, "access", tokNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("HS256/refused-dot-flood", func(b *testing.B) {
		tk := tokMust(b, tokBenchConfigs()[0])
		raw := strings.Repeat(".", 1<<20)
		b.ReportAllocs()
		for b.Loop() {
			tk.Parse(raw, "access", tokNow)
		}
	})
}

// tokBenchConfigs are the configurations benchmarked, HS256 first.
func tokBenchConfigs() []TokenConfig {
	return []TokenConfig{
		{Algorithm: "HS256", SecretKey: keySecret256},
		{Algorithm: "RS256", PrivateKeyFile: keyTestFile("rsa2048.pem")},
		{Algorithm: "ES256", PrivateKeyFile: keyTestFile("ec-p256.pem")},
		{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")},
	}
}

// TestParseFuzzCorpus keeps the valid seeds of testdata/fuzz/FuzzParse
// valid, so that the fuzzer starts from tokens that reach every check.
func TestParseFuzzCorpus(t *testing.T) {
	hs := tokMust(t, TokenConfig{Algorithm: "HS256", SecretKey: keySecret256})
	ed := tokMust(t, TokenConfig{Algorithm: "EdDSA", PrivateKeyFile: keyTestFile("ed25519.pem")})
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "valid-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid seeds: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "string(") {
				t.Fatalf("%s is not a one-string fuzz corpus file", file)
			}
			raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			tk := hs
			if strings.Contains(file, "eddsa") {
				tk = ed
			}
			if _, err := tk.Parse(raw, "", tokFuzzNow); err != nil {
				t.Fatalf("Parse(seed) = %s, want nil", tokErrName(err))
			}
		})
	}
	// The strict-* seeds are good tokens but for their JSON: refused.
	strict, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "strict-*"))
	if err != nil || len(strict) == 0 {
		t.Fatalf("no strict seeds: %v", err)
	}
	for _, file := range strict {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[len(lines)-1], "string("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := hs.Parse(raw, "", tokFuzzNow); err != ErrTokenInvalid {
				t.Fatalf("Parse(seed) = %s, want ErrTokenInvalid", tokErrName(err))
			}
		})
	}
}

// TestParseStrictJSON checks that a token whose header or payload is not
// exactly one JSON value of valid UTF-8 is invalid, though its signature
// verifies, as PyJWT's json.loads refuses it ("Extra data", a
// UnicodeDecodeError): golang-jwt alone stops after the payload's first
// value and reads invalid UTF-8 as U+FFFD.
func TestParseStrictJSON(t *testing.T) {
	tk := tokHS256(t, TokenConfig{})
	header := `{"alg":"HS256","typ":"JWT"}`
	payload := fmt.Sprintf(`{"token_type":"access","exp":%d,"iat":%d,"jti":"0f8fad5bd9cb469fa16570867728950e","user_id":"42"}`, tokNow.Unix()+300, tokNow.Unix())
	expired := fmt.Sprintf(`{"token_type":"access","exp":%d,"iat":%d,"jti":"0f8fad5bd9cb469fa16570867728950e","user_id":"42"}`, tokNow.Unix()-1, tokNow.Unix()-300)
	tests := []struct {
		name, header, payload string
		want                  error
	}{
		{"good", header, payload, nil},
		{"white space after both", header + " \r\n\t", payload + "\n", nil},
		{"payload, then a brace", header, payload + "}", ErrTokenInvalid},
		{"payload, then a bracket", header, payload + "]", ErrTokenInvalid},
		{"payload, then another object", header, payload + `{"user_id":"1"}`, ErrTokenInvalid},
		{"payload, then a word", header, payload + " x", ErrTokenInvalid},
		{"expired payload, then a brace", header, expired + "}", ErrTokenInvalid},
		{"header, then a brace", header + "}", payload, ErrTokenInvalid},
		{"header, then another object", header + `{"alg":"none"}`, payload, ErrTokenInvalid},
		{"invalid UTF-8 in a payload string", header, strings.Replace(payload, `"42"`, "\"4\xff2\"", 1), ErrTokenInvalid},
		{"invalid UTF-8 in a custom claim", header, strings.TrimSuffix(payload, "}") + ",\"name\":\"al\xc0\x80ice\"}", ErrTokenInvalid},
		{"a surrogate in UTF-8", header, strings.TrimSuffix(payload, "}") + ",\"name\":\"\xed\xa0\x80\"}", ErrTokenInvalid},
		{"invalid UTF-8 after the payload", header, payload + "\xff", ErrTokenInvalid},
		{"invalid UTF-8 in the header", "{\"alg\":\"HS256\",\"typ\":\"JW\xffT\"}", payload, ErrTokenInvalid},
		{"a byte order mark", header, "\ufeff" + payload, ErrTokenInvalid},
		{"valid UTF-8 beyond ASCII", header, strings.TrimSuffix(payload, "}") + `,"name":"ålice 😀"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tokSignHSRaw(t, tt.header, tt.payload)
			if _, err := tk.Parse(raw, "access", tokNow); err != tt.want {
				t.Errorf("Parse(%q.%q) = %s, want %s", tt.header, tt.payload, tokErrName(err), tokErrName(tt.want))
			}
		})
	}
}

// TestIssueCustomClaims checks the custom claims of a token: after
// user_id, sorted by name, before aud and iss; read back by Parse in
// Custom (numbers as json.Number); and the claims Issue writes or Parse
// checks cannot be set.
func TestIssueCustomClaims(t *testing.T) {
	tk := tokHS256(t, TokenConfig{Issuer: "https://remuda.example", Audience: "api"})
	custom := map[string]any{"username": "alice", "roles": []string{"admin", "ops"}, "level": 3, "html": "<b>&</b>"}
	raw, c, err := tk.issue("access", "7", custom, tokNow)
	if err != nil {
		t.Fatal(err)
	}
	payload := keyB64(t, strings.Split(raw, ".")[1])
	want := fmt.Sprintf(`{"token_type":"access","exp":%d,"iat":%d,"jti":%q,"user_id":"7","html":"\u003cb\u003e\u0026\u003c/b\u003e","level":3,"roles":["admin","ops"],"username":"alice","aud":"api","iss":"https://remuda.example"}`,
		tokNow.Unix()+300, tokNow.Unix(), c.JTI)
	if string(payload) != want {
		t.Errorf("payload = %s\nwant      %s", payload, want)
	}
	got, err := tk.Parse(raw, "access", tokNow)
	if err != nil {
		t.Fatalf("Parse = %s", tokErrName(err))
	}
	wantCustom := map[string]any{"username": "alice", "roles": []any{"admin", "ops"}, "level": json.Number("3"), "html": "<b>&</b>"}
	if !reflect.DeepEqual(got.Custom, wantCustom) {
		t.Errorf("Parse Custom = %#v, want %#v", got.Custom, wantCustom)
	}
	if !reflect.DeepEqual(c.Custom, custom) {
		t.Errorf("issue Claims.Custom = %#v, want the claims given", c.Custom)
	}
	// Round trip: the parsed claims issue the same payload again.
	raw2, c2, err := tk.issue("access", "7", got.Custom, tokNow)
	if err != nil {
		t.Fatal(err)
	}
	if p2 := keyB64(t, strings.Split(raw2, ".")[1]); string(p2) != strings.Replace(want, c.JTI, c2.JTI, 1) {
		t.Errorf("re-issued payload = %s, want %s", p2, want)
	}

	plain, _, err := tk.Issue("access", "7", tokNow)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := tk.Parse(plain, "access", tokNow); c.Custom != nil {
		t.Errorf("a token without custom claims: Custom = %#v, want nil", c.Custom)
	}

	for _, name := range []string{"token_type", "exp", "iat", "jti", "user_id", "iss", "aud", "nbf"} {
		if raw, _, err := tk.issue("access", "7", map[string]any{"roles": "x", name: 1}, tokNow); !errors.Is(err, ErrReservedClaim) || !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("issue with custom claim %q = %q, %v; want ErrReservedClaim naming it", name, raw, err)
		}
	}
	if _, _, err := tk.issue("access", "7", map[string]any{"big": strings.Repeat("x", MaxTokenBytes)}, tokNow); err == nil {
		t.Error("issue with claims over MaxTokenBytes: nil error, want one")
	}
	if _, _, err := tk.issue("access", "7", map[string]any{"f": func() {}}, tokNow); err == nil {
		t.Error("issue with a claim JSON cannot encode: nil error, want one")
	}
}
