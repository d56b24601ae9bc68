package storetest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/internal/testkit"
)

// RefreshAfterFailedWrite serves the token endpoints from st and makes its
// writes fail (fail, given the presented refresh token's jti) during a
// refresh: the refresh is answered 503, the presented token stays valid,
// and the client's retry, after heal, gets a new pair; no family is
// revoked.
func RefreshAfterFailedWrite(t *testing.T, st auth.Store, fail func(presentedJTI string), heal func()) {
	var reused []string
	a, err := auth.New(auth.Config{
		Tokens:                 auth.TokenConfig{SecretKey: "login-test-key-0123456789-abcdefghijklmn"},
		RotateRefreshTokens:    true,
		BlacklistAfterRotation: true,
		OnTokenReuse:           func(_ *http.Request, _, family string) { reused = append(reused, family) },
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if _, err := auth.CreateUser(t.Context(), st, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	r := testkit.Post(t, srv.URL+"/api/token/", map[string]string{"username": "alice", "password": "correct horse"})
	var pair map[string]string
	if r.StatusCode != 200 || json.Unmarshal([]byte(r.Body), &pair) != nil {
		t.Fatalf("login: %d %s", r.StatusCode, r.Body)
	}
	jti := tokenJTI(t, pair["refresh"])

	fail(jti)
	r = testkit.Post(t, srv.URL+"/api/token/refresh/", map[string]string{"refresh": pair["refresh"]})
	if r.StatusCode != 503 || r.Header.Get("Retry-After") != strconv.Itoa(auth.UnavailableRetryAfter) {
		t.Errorf("refresh with the write failing: got %d, Retry-After %q, %s; want 503, %d",
			r.StatusCode, r.Header.Get("Retry-After"), r.Body, auth.UnavailableRetryAfter)
	}
	heal()
	if state, err := st.RefreshState(t.Context(), jti); err != nil || state != auth.ConsumeOK {
		t.Errorf("the presented token after the failed refresh: %s, %v; want ConsumeOK (not consumed)", state, err)
	}
	r = testkit.Post(t, srv.URL+"/api/token/refresh/", map[string]string{"refresh": pair["refresh"]})
	var next map[string]string
	if r.StatusCode != 200 || json.Unmarshal([]byte(r.Body), &next) != nil || next["refresh"] == "" {
		t.Fatalf("the client's retry: got %d %s, want 200 and a new pair", r.StatusCode, r.Body)
	}
	if len(reused) > 0 {
		t.Errorf("families revoked: %v, want none", reused)
	}
	r = testkit.Post(t, srv.URL+"/api/token/refresh/", map[string]string{"refresh": next["refresh"]})
	if r.StatusCode != 200 {
		t.Errorf("refresh with the new token: got %d %s, want 200", r.StatusCode, r.Body)
	}
}

// tokenJTI is the jti claim of a JWT, read without checking it.
func tokenJTI(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	var claims struct {
		JTI string `json:"jti"`
	}
	if len(parts) != 3 {
		t.Fatalf("token %q: want three parts", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.JTI == "" {
		t.Fatalf("token %q: no jti (%v)", token, err)
	}
	return claims.JTI
}
