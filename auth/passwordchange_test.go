package auth

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestIssuedBeforeChange(t *testing.T) {
	change := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		changed time.Time
		iat     time.Time
		want    bool
	}{
		{"never changed", time.Time{}, change, false},
		{"issued a second before", change, change.Add(-time.Second), true},
		{"issued in the second of the change", change, change, true},
		{"issued in the second of a change stamped to the microsecond (PostgreSQL)", change.Add(700 * time.Millisecond), change, true},
		{"issued the second after", change, change.Add(time.Second), false},
		{"issued the second after a change late in its second", change.Add(999 * time.Millisecond), change.Add(time.Second), false},
		{"no iat", change, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := issuedBeforeChange(User{PasswordChangedAt: tt.changed}, tt.iat); got != tt.want {
				t.Errorf("issuedBeforeChange(changed %v, iat %v) = %v, want %v", tt.changed, tt.iat, got, tt.want)
			}
		})
	}
}

// loginPair logs in and returns the pair.
func loginPair(t *testing.T, h http.Handler, username, password string) (access, refresh string) {
	t.Helper()
	w := post(h, "/api/token/", `{"username":"`+username+`","password":"`+password+`"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("login %s: %d %s", username, w.Code, w.Body)
	}
	m := decodeBody(t, w.Body.Bytes())
	return m["access"].(string), m["refresh"].(string)
}

// untilNextSecond sleeps until just after the start of the next second.
func untilNextSecond() {
	now := time.Now()
	time.Sleep(time.Unix(now.Unix()+1, 0).Add(5 * time.Millisecond).Sub(now))
}

// TestChangePasswordSameSecond is `server changepassword` right after a
// login, in the same second: the login's access and refresh tokens are
// refused at once, though their iat is the change's second, and a login
// once ChangePassword has returned gets tokens that work.
func TestChangePasswordSameSecond(t *testing.T) {
	const changed = `{"detail":"The user's password has been changed.","code":"password_changed"}`
	a, mux := mountTest(t, Config{RotateRefreshTokens: true, BlacklistAfterRotation: true})
	if _, err := CreateUser(t.Context(), a.store, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	password := "correct horse"
	var access, refresh string
	var sameSecond bool
	for try := 0; try < 5 && !sameSecond; try++ {
		untilNextSecond()
		access, refresh = loginPair(t, mux, "alice", password)
		password = "new horse " + strings.Repeat("!", try)
		if err := ChangePassword(t.Context(), a.store, "alice", password); err != nil {
			t.Fatal(err)
		}
		u, err := a.store.UserByUsername(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		iat := int64(payloadOf(t, access)["iat"].(float64))
		sameSecond = iat == u.PasswordChangedAt.Unix()
		if returned := time.Now(); returned.Before(nextSecond(u.PasswordChangedAt)) {
			t.Errorf("ChangePassword returned at %v, in the second of its change %v", returned, u.PasswordChangedAt)
		}
	}
	if !sameSecond {
		t.Skip("five tries could not log in and change the password within one second")
	}

	if w := hello(mux, "Bearer "+access); w.Code != http.StatusUnauthorized || strings.TrimSpace(w.Body.String()) != changed {
		t.Errorf("/hello/ with the access token of the change's second: %d %s, want 401 %s", w.Code, w.Body, changed)
	}
	if w := post(mux, "/api/token/refresh/", `{"refresh":"`+refresh+`"}`); w.Code != http.StatusUnauthorized || strings.TrimSpace(w.Body.String()) != `{"detail":"The user's password has been changed."}` {
		t.Errorf("refresh with the refresh token of the change's second: %d %s, want 401 password changed", w.Code, w.Body)
	}
	// The store blacklisted the refresh token as well (Store.ChangePassword).
	c, err := a.tokens.Parse(refresh, "refresh", a.cfg.Now())
	if err != nil {
		t.Fatal(err)
	}
	if state, err := a.store.RefreshState(t.Context(), c.JTI); err != nil || state != ConsumeRevoked {
		t.Errorf("the store's state of the old refresh token: %v, %v; want ConsumeRevoked", state, err)
	}
	if w := post(mux, "/api/token/verify/", `{"token":"`+refresh+`"}`); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Token is blacklisted") {
		t.Errorf("verify the old refresh token: %d %s, want 401 Token is blacklisted", w.Code, w.Body)
	}

	// ChangePassword has returned: a new login's tokens work at once.
	access, refresh = loginPair(t, mux, "alice", password)
	if w := hello(mux, "Bearer "+access); w.Code != http.StatusOK {
		t.Errorf("/hello/ with a token of a login after the change: %d %s, want 200", w.Code, w.Body)
	}
	if w := post(mux, "/api/token/refresh/", `{"refresh":"`+refresh+`"}`); w.Code != http.StatusOK {
		t.Errorf("refresh with a token of a login after the change: %d %s, want 200", w.Code, w.Body)
	}
}

// TestLoginInTheSecondOfAChange is a login in the very second of a
// password change made elsewhere (the store's write, without
// ChangePassword's wait): the login waits for the next second, so that its
// tokens are not refused as issued in the change's second.
func TestLoginInTheSecondOfAChange(t *testing.T) {
	a, mux := mountTest(t, Config{})
	u, err := CreateUser(t.Context(), a.store, "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := HashPassword("new horse")
	if err != nil {
		t.Fatal(err)
	}
	untilNextSecond()
	at := time.Now()
	if err := a.store.ChangePassword(t.Context(), u.ID, hash, at); err != nil {
		t.Fatal(err)
	}
	access, refresh := loginPair(t, mux, "alice", "new horse")
	if iat := int64(payloadOf(t, access)["iat"].(float64)); iat <= at.Unix() {
		t.Errorf("a login in the second of the change %v issued iat %d, want a later second", at, iat)
	}
	if w := hello(mux, "Bearer "+access); w.Code != http.StatusOK {
		t.Errorf("/hello/ with the token of a login in the change's second: %d %s, want 200", w.Code, w.Body)
	}
	if w := post(mux, "/api/token/refresh/", `{"refresh":"`+refresh+`"}`); w.Code != http.StatusOK {
		t.Errorf("refresh with the token of a login in the change's second: %d %s, want 200", w.Code, w.Body)
	}
}
