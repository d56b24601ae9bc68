package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// payloadOf decodes a token's claims.
func payloadOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", raw, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeBody decodes a JSON response body.
func decodeBody(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return m
}

// TestCustomClaims logs in through the demo's endpoints with a Claims
// hook, as simplejwt's get_token adds claims: they appear in both tokens,
// a protected handler reads them, and a refresh (rotating, as the server
// does by default) carries them into the new access and refresh tokens,
// and again at the next refresh, without calling the hook again.
func TestCustomClaims(t *testing.T) {
	calls := 0
	a, mux := mountTest(t, Config{
		RotateRefreshTokens:    true,
		BlacklistAfterRotation: true,
		Claims: func(ctx context.Context, u User) (map[string]any, error) {
			calls++
			if u.ID != "1" || u.Username != "alice" || u.PasswordHash != "" {
				t.Errorf("Claims got user %+v, want alice (id 1) without her password hash", u)
			}
			return map[string]any{"username": u.Username, "roles": []string{"admin"}}, nil
		},
	})
	if _, err := CreateUser(t.Context(), a.store, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	w := post(mux, "/api/token/", `{"username":"alice","password":"correct horse"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	pair := decodeBody(t, w.Body.Bytes())
	want := map[string]any{"username": "alice", "roles": []any{"admin"}}
	check := func(what, raw string, typ string) {
		t.Helper()
		p := payloadOf(t, raw)
		if p["token_type"] != typ || p["user_id"] != "1" {
			t.Errorf("%s: token_type, user_id = %v, %v; want %s, 1", what, p["token_type"], p["user_id"], typ)
		}
		for k, v := range want {
			if !reflect.DeepEqual(p[k], v) {
				t.Errorf("%s: claim %s = %#v, want %#v", what, k, p[k], v)
			}
		}
	}
	check("login's access token", pair["access"].(string), "access")
	check("login's refresh token", pair["refresh"].(string), "refresh")

	w = hello(mux, "Bearer "+pair["access"].(string))
	if w.Code != http.StatusOK {
		t.Fatalf("/hello/: %d %s", w.Code, w.Body)
	}
	if got := decodeBody(t, w.Body.Bytes())["claims"]; !reflect.DeepEqual(got, want) {
		t.Errorf("CustomClaims in the protected handler = %#v, want %#v", got, want)
	}

	refresh := pair["refresh"].(string)
	for i := range 2 {
		w = post(mux, "/api/token/refresh/", `{"refresh":"`+refresh+`"}`)
		if w.Code != http.StatusOK {
			t.Fatalf("refresh %d: %d %s", i, w.Code, w.Body)
		}
		got := decodeBody(t, w.Body.Bytes())
		check("refresh's access token", got["access"].(string), "access")
		check("refresh's rotated refresh token", got["refresh"].(string), "refresh")
		refresh = got["refresh"].(string)
	}
	if calls != 1 {
		t.Errorf("Claims called %d times for one login and two refreshes, want 1", calls)
	}

	// Without a hook, tokens have no custom claims and handlers none.
	b, plain := mountTest(t, Config{})
	if _, err := CreateUser(t.Context(), b.store, "bob", "correct horse"); err != nil {
		t.Fatal(err)
	}
	w = post(plain, "/api/token/", `{"username":"bob","password":"correct horse"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("login without a hook: %d %s", w.Code, w.Body)
	}
	access := decodeBody(t, w.Body.Bytes())["access"].(string)
	if p := payloadOf(t, access); len(p) != 5 {
		t.Errorf("access token without a hook has claims %v, want simplejwt's five", p)
	}
	w = hello(plain, "Bearer "+access)
	if got := decodeBody(t, w.Body.Bytes())["claims"]; w.Code != http.StatusOK || got != nil {
		t.Errorf("/hello/ without custom claims: %d, claims %#v; want 200, nil", w.Code, got)
	}
}

// TestCustomClaimsRefreshWithoutRotation checks the access token a
// refresh mints without rotation: it keeps the refresh token's custom
// claims too.
func TestCustomClaimsRefreshWithoutRotation(t *testing.T) {
	a, mux := mountTest(t, Config{})
	raw, _, err := a.tokens.issue(refreshType, "1", map[string]any{"tenant": "acme"}, a.cfg.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateUser(t.Context(), a.store, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	w := post(mux, "/api/token/refresh/", `{"refresh":"`+raw+`"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	body := decodeBody(t, w.Body.Bytes())
	if _, rotated := body["refresh"]; rotated {
		t.Errorf("refresh without rotation answered a refresh token: %s", w.Body)
	}
	if got := payloadOf(t, body["access"].(string))["tenant"]; got != "acme" {
		t.Errorf("access token's tenant = %v, want acme", got)
	}
}

// TestCustomClaimsRefused checks a Claims hook that names a claim Remuda
// sets or checks, or fails: the login gets the 500 of a server error, no
// token, and OnError the reason (ErrReservedClaim naming the claim).
func TestCustomClaimsRefused(t *testing.T) {
	boom := errors.New("roles service down")
	tests := []struct {
		name    string
		claims  map[string]any
		err     error
		wantErr error
		wantMsg string
	}{
		{"exp", map[string]any{"exp": 4102444800}, nil, ErrReservedClaim, `"exp"`},
		{"user_id", map[string]any{"user_id": "2", "roles": []string{"admin"}}, nil, ErrReservedClaim, `"user_id"`},
		{"token_type", map[string]any{"token_type": "refresh"}, nil, ErrReservedClaim, `"token_type"`},
		{"aud, not configured", map[string]any{"aud": "other"}, nil, ErrReservedClaim, `"aud"`},
		{"an error", nil, boom, boom, "roles service down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var reported []error
			a, mux := mountTest(t, Config{
				Claims: func(context.Context, User) (map[string]any, error) { return tt.claims, tt.err },
				OnError: func(_ *http.Request, err error) {
					mu.Lock()
					reported = append(reported, err)
					mu.Unlock()
				},
			})
			if _, err := CreateUser(t.Context(), a.store, "alice", "correct horse"); err != nil {
				t.Fatal(err)
			}
			w := post(mux, "/api/token/", `{"username":"alice","password":"correct horse"}`)
			if body := strings.TrimSpace(w.Body.String()); w.Code != http.StatusInternalServerError || body != `{"detail":"A server error occurred."}` {
				t.Errorf("login: got %d %s, want 500 A server error occurred.", w.Code, body)
			}
			if len(reported) != 1 || !errors.Is(reported[0], tt.wantErr) || !strings.Contains(reported[0].Error(), tt.wantMsg) {
				t.Errorf("OnError got %v, want one error matching %v and naming %s", reported, tt.wantErr, tt.wantMsg)
			}
		})
	}
}
