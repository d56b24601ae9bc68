// Package storetest is the conformance suite of auth.Store, run by the
// tests of every implementation: auth's SQLite, auth/postgres's
// PostgreSQL. Its helpers (Now, Add, Consume, State, …) serve those
// tests too.
package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/internal/testkit"
)

// Run is the conformance suite of an auth.Store: every implementation
// (SQLite, PostgreSQL, ...) runs it. open returns a new, empty store for
// one subtest and closes it in t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) auth.Store) {
	t.Run("CreateUser", func(t *testing.T) { testCreateUser(t, open(t)) })
	t.Run("UserNotFound", func(t *testing.T) { testUserNotFound(t, open(t)) })
	t.Run("UpdateUser", func(t *testing.T) { testUpdateUser(t, open(t)) })
	t.Run("ChangePassword", func(t *testing.T) { testChangePassword(t, open(t)) })
	t.Run("ImportUsers", func(t *testing.T) { testImportUsers(t, open(t)) })
	t.Run("AddRefreshIdempotent", func(t *testing.T) { testAddRefreshIdempotent(t, open(t)) })
	t.Run("ConsumeOKThenReused", func(t *testing.T) { testConsumeOKThenReused(t, open(t)) })
	t.Run("ConsumeUnknown", func(t *testing.T) { testConsumeUnknown(t, open(t)) })
	t.Run("Blacklist", func(t *testing.T) { testBlacklist(t, open(t)) })
	t.Run("RevokeFamily", func(t *testing.T) { testRevokeFamily(t, open(t)) })
	t.Run("RefreshState", func(t *testing.T) { testRefreshState(t, open(t)) })
	t.Run("FlushExpired", func(t *testing.T) { testFlushExpired(t, open(t)) })
	t.Run("LoginFailures", func(t *testing.T) { testLoginFailures(t, open(t)) })
	t.Run("ReserveLogin", func(t *testing.T) { testReserveLogin(t, open(t)) })
	t.Run("ReserveLoginConcurrent", func(t *testing.T) { testReserveLoginConcurrent(t, open(t)) })
	t.Run("RecordLogin", func(t *testing.T) { testRecordLogin(t, open(t), nil) })
	t.Run("RotateRefresh", func(t *testing.T) { testRotateRefresh(t, open(t)) })
	t.Run("RotateRefreshConcurrent", func(t *testing.T) { testRotateRefreshConcurrent(t, open(t)) })
	t.Run("ConcurrentConsume", func(t *testing.T) { testConcurrentConsume(t, open(t)) })
}

// Now is the "now" of the suite's token and login-failure tests: a
// whole second, as stores keep times to the second.
var Now = time.Unix(1_800_000_000, 0)

// Add records a refresh token of user 1 expiring an hour after
// Now.
func Add(t *testing.T, s auth.Store, jti, family string) auth.RefreshToken {
	t.Helper()
	rt := auth.RefreshToken{JTI: jti, Family: family, UserID: "1", ExpiresAt: Now.Add(time.Hour)}
	if err := s.AddRefresh(t.Context(), rt); err != nil {
		t.Fatalf("AddRefresh(%q): %v", jti, err)
	}
	return rt
}

// Consume consumes jti at Now and checks the result.
func Consume(t *testing.T, s auth.Store, jti string, want auth.ConsumeResult) auth.RefreshToken {
	t.Helper()
	got, rt, err := s.ConsumeRefresh(t.Context(), jti, Now)
	if err != nil {
		t.Fatalf("ConsumeRefresh(%q): %v", jti, err)
	}
	if got != want {
		t.Fatalf("ConsumeRefresh(%q) = %s, want %s", jti, got, want)
	}
	return rt
}

// State checks the RefreshState of jti.
func State(t *testing.T, s auth.Store, jti string, want auth.ConsumeResult) {
	t.Helper()
	got, err := s.RefreshState(t.Context(), jti)
	if err != nil {
		t.Fatalf("RefreshState(%q): %v", jti, err)
	}
	if got != want {
		t.Errorf("RefreshState(%q) = %s, want %s", jti, got, want)
	}
}

// SameToken checks a returned token record against the one added.
func SameToken(t *testing.T, what string, got, want auth.RefreshToken) {
	t.Helper()
	if got.JTI != want.JTI || got.Family != want.Family || got.UserID != want.UserID || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("%s: got token %+v, want %+v", what, got, want)
	}
}

func testCreateUser(t *testing.T, s auth.Store) {
	ctx := t.Context()
	before := time.Now().Truncate(time.Second)
	u, err := s.CreateUser(ctx, "alice", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", true)
	after := time.Now()
	if err != nil {
		t.Fatalf("CreateUser(alice): %v", err)
	}
	if _, err := strconv.ParseUint(u.ID, 10, 64); err != nil {
		t.Errorf("CreateUser(alice): got ID %q, want a decimal id", u.ID)
	}
	if u.Username != "alice" || u.PasswordHash != "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA" || !u.Active {
		t.Errorf("CreateUser(alice): got %+v", u)
	}
	if !u.LastLogin.IsZero() {
		t.Errorf("CreateUser(alice): got LastLogin %v, want zero", u.LastLogin)
	}
	if u.DateJoined.Before(before) || u.DateJoined.After(after) {
		t.Errorf("CreateUser(alice): got DateJoined %v, want between %v and %v", u.DateJoined, before, after)
	}

	byName, err := s.UserByUsername(ctx, "alice")
	if err != nil {
		t.Fatalf("UserByUsername(alice): %v", err)
	}
	byID, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatalf("UserByID(%s): %v", u.ID, err)
	}
	for what, got := range map[string]auth.User{"UserByUsername": byName, "UserByID": byID} {
		if got.ID != u.ID || got.Username != u.Username || got.PasswordHash != u.PasswordHash ||
			got.Active != u.Active || !got.LastLogin.IsZero() || !got.DateJoined.Equal(u.DateJoined) {
			t.Errorf("%s: got %+v, want %+v", what, got, u)
		}
	}

	if _, err := s.CreateUser(ctx, "alice", "other", false); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("CreateUser(alice) again: got error %v, want auth.ErrUserExists", err)
	}
	bob, err := s.CreateUser(ctx, "bob", "hash", false)
	if err != nil {
		t.Fatalf("CreateUser(bob): %v", err)
	}
	if bob.ID == u.ID || bob.Active {
		t.Errorf("CreateUser(bob): got %+v, want an inactive user with an id other than alice's %s", bob, u.ID)
	}
	if got, err := s.UserByUsername(ctx, "alice"); err != nil || got.PasswordHash != u.PasswordHash {
		t.Errorf("UserByUsername(alice) after a duplicate CreateUser: got %+v, %v; want the first alice", got, err)
	}
}

func testUserNotFound(t *testing.T, s auth.Store) {
	ctx := t.Context()
	u, err := s.CreateUser(ctx, "alice", "hash", true)
	if err != nil {
		t.Fatalf("CreateUser(alice): %v", err)
	}
	n, _ := strconv.ParseUint(u.ID, 10, 64)
	missing := strconv.FormatUint(n+1000, 10)
	tests := []struct {
		name string
		call func() error
	}{
		{"UserByUsername unknown", func() error { _, err := s.UserByUsername(ctx, "nobody"); return err }},
		{"UserByUsername other case", func() error { _, err := s.UserByUsername(ctx, "Alice"); return err }},
		{"UserByID unknown", func() error { _, err := s.UserByID(ctx, missing); return err }},
		{"UserByID non-numeric", func() error { _, err := s.UserByID(ctx, "alice"); return err }},
		{"UserByID empty", func() error { _, err := s.UserByID(ctx, ""); return err }},
		{"UserByID negative", func() error { _, err := s.UserByID(ctx, "-"+u.ID); return err }},
		{"UserByID leading zero", func() error { _, err := s.UserByID(ctx, "0"+u.ID); return err }},
		{"UserByID numeric prefix", func() error { _, err := s.UserByID(ctx, u.ID+"x"); return err }},
		{"SetPassword unknown", func() error { return s.SetPassword(ctx, missing, "hash") }},
		{"SetPassword non-numeric", func() error { return s.SetPassword(ctx, "alice", "hash") }},
		{"SetActive unknown", func() error { return s.SetActive(ctx, missing, false) }},
		{"RecordLogin unknown", func() error { return s.RecordLogin(ctx, auth.Login{UserID: missing, At: Now}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, auth.ErrNotFound) {
				t.Errorf("got error %v, want auth.ErrNotFound", err)
			}
		})
	}
}

func testUpdateUser(t *testing.T, s auth.Store) {
	ctx := t.Context()
	u, err := s.CreateUser(ctx, "alice", "pbkdf2_sha256$600000$salt$hash", true)
	if err != nil {
		t.Fatalf("CreateUser(alice): %v", err)
	}
	other, err := s.CreateUser(ctx, "bob", "bob-hash", true)
	if err != nil {
		t.Fatalf("CreateUser(bob): %v", err)
	}
	login := Now.Add(1500 * time.Millisecond) // kept to the second
	if err := s.SetPassword(ctx, u.ID, "$argon2id$new"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if err := s.SetActive(ctx, u.ID, false); err != nil {
		t.Fatalf("SetActive(false): %v", err)
	}
	if err := s.RecordLogin(ctx, auth.Login{UserID: u.ID, At: login}); err != nil {
		t.Fatalf("RecordLogin: %v", err)
	}
	got, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatalf("UserByID: %v", err)
	}
	if got.PasswordHash != "$argon2id$new" || got.Active || !got.LastLogin.Equal(login.Truncate(time.Second)) ||
		got.Username != "alice" || !got.DateJoined.Equal(u.DateJoined) {
		t.Errorf("after updates: got %+v, want hash $argon2id$new, inactive, LastLogin %v", got, login.Truncate(time.Second))
	}
	if err := s.SetActive(ctx, u.ID, true); err != nil {
		t.Fatalf("SetActive(true): %v", err)
	}
	if got, err := s.UserByUsername(ctx, "alice"); err != nil || !got.Active {
		t.Errorf("after SetActive(true): got %+v, %v; want active", got, err)
	}
	if got, err := s.UserByID(ctx, other.ID); err != nil || got.PasswordHash != "bob-hash" || !got.Active || !got.LastLogin.IsZero() {
		t.Errorf("bob after alice's updates: got %+v, %v; want bob unchanged", got, err)
	}
}

func testAddRefreshIdempotent(t *testing.T, s auth.Store) {
	ctx := t.Context()
	rt := Add(t, s, "jti-1", "jti-1")
	again := auth.RefreshToken{JTI: "jti-1", Family: "jti-1", UserID: "1", ExpiresAt: rt.ExpiresAt}
	if err := s.AddRefresh(ctx, again); err != nil {
		t.Fatalf("AddRefresh(jti-1) again: %v", err)
	}
	got := Consume(t, s, "jti-1", auth.ConsumeOK)
	SameToken(t, "ConsumeRefresh(jti-1)", got, rt)

	// Adding a consumed token again leaves it consumed, and its record as
	// first added.
	other := auth.RefreshToken{JTI: "jti-1", Family: "other", UserID: "2", ExpiresAt: Now.Add(2 * time.Hour)}
	if err := s.AddRefresh(ctx, other); err != nil {
		t.Fatalf("AddRefresh(jti-1) after consumption: %v", err)
	}
	got = Consume(t, s, "jti-1", auth.ConsumeReused)
	SameToken(t, "ConsumeRefresh(jti-1) after a second AddRefresh", got, rt)
}

func testConsumeOKThenReused(t *testing.T, s auth.Store) {
	first := Add(t, s, "jti-a", "jti-a")
	second := Add(t, s, "jti-b", "jti-a") // the rotation of jti-a
	got := Consume(t, s, "jti-a", auth.ConsumeOK)
	SameToken(t, "first ConsumeRefresh(jti-a)", got, first)
	got = Consume(t, s, "jti-a", auth.ConsumeReused)
	SameToken(t, "second ConsumeRefresh(jti-a)", got, first)
	if got.Family != "jti-a" {
		t.Errorf("replay of jti-a: got family %q, want jti-a", got.Family)
	}
	// Consuming one token leaves its family's others alone.
	got = Consume(t, s, "jti-b", auth.ConsumeOK)
	SameToken(t, "ConsumeRefresh(jti-b)", got, second)
}

func testConsumeUnknown(t *testing.T, s auth.Store) {
	Add(t, s, "known", "known")
	got, rt, err := s.ConsumeRefresh(t.Context(), "unknown", Now)
	if err != nil {
		t.Fatalf("ConsumeRefresh(unknown): %v", err)
	}
	if got != auth.ConsumeUnknown || rt != (auth.RefreshToken{}) {
		t.Errorf("ConsumeRefresh(unknown) = %s, %+v; want auth.ConsumeUnknown, zero token", got, rt)
	}
	State(t, s, "unknown", auth.ConsumeUnknown)
	State(t, s, "known", auth.ConsumeOK)
}

func testBlacklist(t *testing.T, s auth.Store) {
	ctx := t.Context()
	rt := Add(t, s, "bl", "fam")
	Add(t, s, "sibling", "fam")
	if err := s.Blacklist(ctx, "bl", Now); err != nil {
		t.Fatalf("Blacklist(bl): %v", err)
	}
	if err := s.Blacklist(ctx, "bl", Now.Add(time.Minute)); err != nil {
		t.Errorf("Blacklist(bl) again: %v", err)
	}
	got := Consume(t, s, "bl", auth.ConsumeRevoked)
	SameToken(t, "ConsumeRefresh(blacklisted)", got, rt)
	Consume(t, s, "bl", auth.ConsumeRevoked)
	// Blacklisting one token leaves its family's others alone.
	Consume(t, s, "sibling", auth.ConsumeOK)
	// A consumed token blacklisted afterwards (logout with an old token)
	// reads as revoked.
	if err := s.Blacklist(ctx, "sibling", Now); err != nil {
		t.Fatalf("Blacklist(consumed sibling): %v", err)
	}
	Consume(t, s, "sibling", auth.ConsumeRevoked)

	if err := s.Blacklist(ctx, "unknown", Now); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("Blacklist(unknown): got error %v, want auth.ErrNotFound", err)
	}
	State(t, s, "unknown", auth.ConsumeUnknown)
}

func testRevokeFamily(t *testing.T, s auth.Store) {
	ctx := t.Context()
	f1 := Add(t, s, "f1", "fam")
	Add(t, s, "f2", "fam")
	Add(t, s, "f3", "fam")
	Add(t, s, "g1", "other")
	Consume(t, s, "f1", auth.ConsumeOK)
	for i := range 2 { // idempotent
		if err := s.RevokeFamily(ctx, "fam", Now); err != nil {
			t.Fatalf("RevokeFamily(fam) #%d: %v", i+1, err)
		}
	}
	for _, jti := range []string{"f1", "f2", "f3"} {
		State(t, s, jti, auth.ConsumeRevoked)
		got := Consume(t, s, jti, auth.ConsumeRevoked)
		if got.Family != "fam" || got.JTI != jti {
			t.Errorf("ConsumeRefresh(%s): got token %+v, want jti %s of family fam", jti, got, jti)
		}
	}
	got := Consume(t, s, "f1", auth.ConsumeRevoked)
	SameToken(t, "ConsumeRefresh(f1) after revocation", got, f1)
	Consume(t, s, "g1", auth.ConsumeOK)
	// A family may be revoked before any of its tokens is known.
	if err := s.RevokeFamily(ctx, "later", Now); err != nil {
		t.Fatalf("RevokeFamily(later): %v", err)
	}
	Add(t, s, "l1", "later")
	Consume(t, s, "l1", auth.ConsumeRevoked)
}

func testRefreshState(t *testing.T, s auth.Store) {
	ctx := t.Context()
	Add(t, s, "outstanding", "f-out")
	Add(t, s, "consumed", "f-con")
	Add(t, s, "blacklisted", "f-bl")
	Add(t, s, "revoked", "f-rev")
	Add(t, s, "consumed-blacklisted", "f-conbl")
	Add(t, s, "consumed-revoked", "f-conrev")
	Consume(t, s, "consumed", auth.ConsumeOK)
	Consume(t, s, "consumed-blacklisted", auth.ConsumeOK)
	Consume(t, s, "consumed-revoked", auth.ConsumeOK)
	for _, jti := range []string{"blacklisted", "consumed-blacklisted"} {
		if err := s.Blacklist(ctx, jti, Now); err != nil {
			t.Fatalf("Blacklist(%s): %v", jti, err)
		}
	}
	for _, fam := range []string{"f-rev", "f-conrev"} {
		if err := s.RevokeFamily(ctx, fam, Now); err != nil {
			t.Fatalf("RevokeFamily(%s): %v", fam, err)
		}
	}
	tests := []struct {
		jti  string
		want auth.ConsumeResult
	}{
		{"unknown", auth.ConsumeUnknown},
		{"outstanding", auth.ConsumeOK},
		{"consumed", auth.ConsumeReused},
		{"blacklisted", auth.ConsumeRevoked},
		{"revoked", auth.ConsumeRevoked},
		{"consumed-blacklisted", auth.ConsumeRevoked},
		{"consumed-revoked", auth.ConsumeRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.jti, func(t *testing.T) {
			State(t, s, tt.jti, tt.want)
			State(t, s, tt.jti, tt.want) // changed nothing
		})
	}
	// RefreshState consumed nothing.
	Consume(t, s, "outstanding", auth.ConsumeOK)
}

func testFlushExpired(t *testing.T, s auth.Store) {
	ctx := t.Context()
	// simplejwt's flushexpiredtokens test: 6 outstanding, 4 blacklisted;
	// the 2 expired (both blacklisted) go, leaving 4 and 2.
	tokens := []struct {
		jti         string
		expires     time.Duration // from Now
		blacklisted bool
		expired     bool
	}{
		{"expired-hour", -time.Hour, true, true},
		{"expired-second", -time.Second, true, true},
		{"expires-now", 0, true, false}, // not expired *before* now
		{"blacklisted-live", time.Hour, true, false},
		{"live", time.Hour, false, false},
		{"live-day", 24 * time.Hour, false, false},
	}
	for _, tok := range tokens {
		rt := auth.RefreshToken{JTI: tok.jti, Family: "fam-" + tok.jti, UserID: "1", ExpiresAt: Now.Add(tok.expires)}
		if err := s.AddRefresh(ctx, rt); err != nil {
			t.Fatalf("AddRefresh(%s): %v", tok.jti, err)
		}
		if tok.blacklisted {
			if err := s.Blacklist(ctx, tok.jti, Now.Add(-2*time.Hour)); err != nil {
				t.Fatalf("Blacklist(%s): %v", tok.jti, err)
			}
		}
	}
	// A revoked family with an expired and a live token stays revoked.
	Add(t, s, "revoked-live", "fam-revoked")
	if err := s.AddRefresh(ctx, auth.RefreshToken{JTI: "revoked-expired", Family: "fam-revoked", UserID: "1", ExpiresAt: Now.Add(-time.Minute)}); err != nil {
		t.Fatalf("AddRefresh(revoked-expired): %v", err)
	}
	if err := s.RevokeFamily(ctx, "fam-revoked", Now.Add(-time.Hour)); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
	// Failed logins: those older than LoginFailureRetention go.
	failures := []time.Duration{-auth.LoginFailureRetention - time.Hour, -auth.LoginFailureRetention - time.Second, -auth.LoginFailureRetention, -time.Hour}
	for _, ago := range failures {
		Fail(t, s, "alice", "192.0.2.1", Now.Add(ago))
	}

	n, err := s.FlushExpired(ctx, Now)
	if err != nil {
		t.Fatalf("FlushExpired: %v", err)
	}
	if n != 3 {
		t.Errorf("FlushExpired: got %d tokens flushed, want 3", n)
	}
	outstanding, blacklisted := 0, 0
	for _, tok := range tokens {
		want := auth.ConsumeOK
		switch {
		case tok.expired:
			want = auth.ConsumeUnknown
		case tok.blacklisted:
			want = auth.ConsumeRevoked
		}
		State(t, s, tok.jti, want)
		if !tok.expired {
			outstanding++
			if tok.blacklisted {
				blacklisted++
			}
		}
	}
	if outstanding != 4 || blacklisted != 2 {
		t.Fatalf("fixture: %d outstanding and %d blacklisted left, want 4 and 2", outstanding, blacklisted)
	}
	State(t, s, "revoked-live", auth.ConsumeRevoked)
	State(t, s, "revoked-expired", auth.ConsumeUnknown)

	gotN, oldest, err := s.LoginFailures(ctx, "alice", "192.0.2.1", Now.Add(-10*auth.LoginFailureRetention))
	if err != nil {
		t.Fatalf("LoginFailures: %v", err)
	}
	if want := Now.Add(-auth.LoginFailureRetention); gotN != 2 || !oldest.Equal(want) {
		t.Errorf("LoginFailures after flush: got %d, oldest %v; want 2, oldest %v", gotN, oldest, want)
	}

	if n, err := s.FlushExpired(ctx, Now); err != nil || n != 0 {
		t.Errorf("FlushExpired again: got %d, %v; want 0, nil", n, err)
	}
	if n, err := s.FlushExpired(ctx, Now.Add(2*time.Hour)); err != nil || n != 4 {
		t.Errorf("FlushExpired(now+2h): got %d, %v; want 4 (expires-now, blacklisted-live, live, revoked-live), nil", n, err)
	}
	State(t, s, "live-day", auth.ConsumeOK)
}

func testLoginFailures(t *testing.T, s auth.Store) {
	ctx := t.Context()
	const addr, other = "192.0.2.1", "2001:db8::1"
	record := []struct {
		user, addr string
		ago        time.Duration
	}{
		{"alice", addr, 10 * time.Minute},
		{"alice", addr, 5 * time.Minute},
		{"alice", addr, time.Minute},
		{"alice", other, 2 * time.Minute},
		{"bob", addr, 3 * time.Minute},
	}
	for _, r := range record {
		Fail(t, s, r.user, r.addr, Now.Add(-r.ago))
	}
	tests := []struct {
		name       string
		user, addr string
		since      time.Duration // before Now
		wantN      int
		wantOldest time.Duration // before Now; -1: zero Time
	}{
		{"all", "alice", addr, time.Hour, 3, 10 * time.Minute},
		{"window", "alice", addr, 6 * time.Minute, 2, 5 * time.Minute},
		{"since is inclusive", "alice", addr, 5 * time.Minute, 2, 5 * time.Minute},
		{"none in window", "alice", addr, 30 * time.Second, 0, -1},
		{"other addr", "alice", other, time.Hour, 1, 2 * time.Minute},
		{"other user", "bob", addr, time.Hour, 1, 3 * time.Minute},
		{"unknown user", "carol", addr, time.Hour, 0, -1},
	}
	check := func(t *testing.T, user, addr string, since time.Duration, wantN int, wantOldest time.Duration) {
		t.Helper()
		n, oldest, err := s.LoginFailures(ctx, user, addr, Now.Add(-since))
		if err != nil {
			t.Fatalf("LoginFailures(%s, %s, now-%v): %v", user, addr, since, err)
		}
		want := time.Time{}
		if wantOldest >= 0 {
			want = Now.Add(-wantOldest)
		}
		if n != wantN || !oldest.Equal(want) {
			t.Errorf("LoginFailures(%s, %s, now-%v) = %d, %v; want %d, %v", user, addr, since, n, oldest, wantN, want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.user, tt.addr, tt.since, tt.wantN, tt.wantOldest) })
	}
	t.Run("release", func(t *testing.T) {
		id := Fail(t, s, "alice", addr, Now)
		check(t, "alice", addr, time.Hour, 4, 10*time.Minute)
		for i := range 2 { // forgetting again is no error
			if err := s.ReleaseLogin(ctx, id); err != nil {
				t.Fatalf("ReleaseLogin #%d: %v", i+1, err)
			}
		}
		check(t, "alice", addr, time.Hour, 3, 10*time.Minute)
		check(t, "alice", other, time.Hour, 1, 2*time.Minute)
	})
}

// Fail counts a failed login attempt at at, whatever the limit, and
// returns its id.
func Fail(t *testing.T, s auth.Store, user, addr string, at time.Time) int64 {
	t.Helper()
	id, _, err := s.ReserveLogin(t.Context(), user, addr, at, time.Time{}, 1<<30)
	if err != nil || id <= 0 {
		t.Fatalf("ReserveLogin(%s, %s, %v) without limit: got id %d, %v; want an id", user, addr, at, id, err)
	}
	return id
}

// testReserveLogin checks the limit, the window and the ids.
func testReserveLogin(t *testing.T, s auth.Store) {
	ctx := t.Context()
	const addr, limit = "192.0.2.1", 3
	since := Now.Add(-15 * time.Minute)
	Fail(t, s, "alice", addr, since.Add(-time.Second)) // out of the window
	var last int64
	for i := range limit {
		at := Now.Add(time.Duration(i-limit) * time.Minute)
		id, oldest, err := s.ReserveLogin(ctx, "alice", addr, at, since, limit)
		if err != nil || id <= last || !oldest.IsZero() {
			t.Fatalf("ReserveLogin #%d: got id %d, oldest %v, %v; want an id above %d, zero oldest", i+1, id, oldest, err, last)
		}
		last = id
	}
	for i := range 2 { // a refused attempt is not counted
		id, oldest, err := s.ReserveLogin(ctx, "alice", addr, Now, since, limit)
		if want := Now.Add(-limit * time.Minute); err != nil || id != 0 || !oldest.Equal(want) {
			t.Errorf("ReserveLogin past the limit #%d: got id %d, oldest %v, %v; want 0, oldest %v", i+1, id, oldest, err, want)
		}
	}
	if n, _, err := s.LoginFailures(ctx, "alice", addr, since); err != nil || n != limit {
		t.Errorf("LoginFailures after refusals: got %d, %v; want %d", n, err, limit)
	}
	for _, other := range []struct{ user, addr string }{{"bob", addr}, {"alice", "192.0.2.2"}} {
		if id, _, err := s.ReserveLogin(ctx, other.user, other.addr, Now, since, limit); err != nil || id <= last {
			t.Errorf("ReserveLogin(%s, %s) while alice from %s is at the limit: got id %d, %v; want an id above %d",
				other.user, other.addr, addr, id, err, last)
		}
	}
	// Once the oldest leaves the window, one more gets in.
	later := Now.Add(-limit*time.Minute + 15*time.Minute + time.Second)
	if id, _, err := s.ReserveLogin(ctx, "alice", addr, later, later.Add(-15*time.Minute), limit); err != nil || id == 0 {
		t.Errorf("ReserveLogin once the oldest left the window: got id %d, %v; want an id", id, err)
	}
}

// testReserveLoginConcurrent races 16 attempts for one username and
// address against a limit of 5: exactly 5 are counted.
func testReserveLoginConcurrent(t *testing.T, s auth.Store) {
	const n, limit = 16, 5
	ids := make([]int64, n)
	errs := testkit.Race(n, func(i int) (err error) {
		ids[i], _, err = s.ReserveLogin(t.Context(), "alice", "192.0.2.1", Now, Now.Add(-time.Hour), limit)
		return err
	})
	counted := map[int64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("ReserveLogin #%d: %v", i, err)
		}
		if ids[i] != 0 {
			counted[ids[i]] = true
		}
	}
	if len(counted) != limit {
		t.Errorf("%d concurrent ReserveLogin with limit %d: got %d distinct ids (%v), want %d", n, limit, len(counted), ids, limit)
	}
	if got, _, err := s.LoginFailures(t.Context(), "alice", "192.0.2.1", Now.Add(-time.Hour)); err != nil || got != limit {
		t.Errorf("LoginFailures after the race: got %d, %v; want %d", got, err, limit)
	}
}

// testRecordLogin checks that a success writes everything and forgets
// the attempts up to its own, and that a failed one writes nothing.
func testRecordLogin(t *testing.T, s auth.Store, faults Faults) {
	ctx := t.Context()
	const addr = "192.0.2.1"
	u, err := s.CreateUser(ctx, "alice", "old-hash", true)
	if err != nil {
		t.Fatal(err)
	}
	failed := Fail(t, s, "alice", addr, Now.Add(-time.Minute))
	Fail(t, s, "alice", "192.0.2.9", Now.Add(-time.Minute))
	success := Fail(t, s, "alice", addr, Now)
	later := Fail(t, s, "alice", addr, Now) // still being checked
	if !(failed < success && success < later) {
		t.Fatalf("attempt ids %d, %d, %d: want them increasing", failed, success, later)
	}
	login := auth.Login{
		UserID: u.ID, At: Now, Username: "alice", Addr: addr, Attempt: success, PasswordHash: "new-hash",
		Refresh: auth.RefreshToken{JTI: "login-jti", Family: "login-jti", UserID: u.ID, ExpiresAt: Now.Add(time.Hour)},
	}

	if faults != nil {
		faults.FailRefreshInsert(t, "login-jti")
		if err := s.RecordLogin(ctx, login); err == nil {
			t.Fatal("RecordLogin with the refresh token's insert failing: got no error")
		}
		got, _ := s.UserByID(ctx, u.ID)
		if got.PasswordHash != "old-hash" || !got.LastLogin.IsZero() {
			t.Errorf("after a failed RecordLogin: hash %q, last login %v; want old-hash, never (nothing written)", got.PasswordHash, got.LastLogin)
		}
		if n, _, _ := s.LoginFailures(ctx, "alice", addr, Now.Add(-time.Hour)); n != 3 {
			t.Errorf("after a failed RecordLogin: %d attempts counted, want 3 (none forgotten)", n)
		}
		State(t, s, "login-jti", auth.ConsumeUnknown)
		faults.Heal(t)
	}

	if err := s.RecordLogin(ctx, login); err != nil {
		t.Fatalf("RecordLogin: %v", err)
	}
	got, err := s.UserByID(ctx, u.ID)
	if err != nil || got.PasswordHash != "new-hash" || !got.LastLogin.Equal(Now) {
		t.Errorf("after RecordLogin: got %+v, %v; want hash new-hash, last login %v", got, err, Now)
	}
	n, oldest, err := s.LoginFailures(ctx, "alice", addr, Now.Add(-time.Hour))
	if err != nil || n != 1 || !oldest.Equal(Now) {
		t.Errorf("attempts from %s after the success: got %d (oldest %v), %v; want 1, the attempt counted after it", addr, n, oldest, err)
	}
	if n, _, _ := s.LoginFailures(ctx, "alice", "192.0.2.9", Now.Add(-time.Hour)); n != 1 {
		t.Errorf("attempts from another address after the success: got %d, want 1", n)
	}
	Consume(t, s, "login-jti", auth.ConsumeOK)

	// Without a hash, a token or an attempt, only the last login changes.
	if err := s.RecordLogin(ctx, auth.Login{UserID: u.ID, At: Now.Add(time.Hour)}); err != nil {
		t.Fatalf("RecordLogin of the last login only: %v", err)
	}
	if got, _ := s.UserByID(ctx, u.ID); got.PasswordHash != "new-hash" || !got.LastLogin.Equal(Now.Add(time.Hour)) {
		t.Errorf("after RecordLogin of the last login only: got %+v", got)
	}
	if n, _, _ := s.LoginFailures(ctx, "alice", addr, Now.Add(-time.Hour)); n != 1 {
		t.Errorf("attempts after RecordLogin without an attempt: got %d, want 1", n)
	}

	// A user who is gone: nothing written.
	gone := auth.Login{UserID: "999999", At: Now, Username: "alice", Addr: addr, Attempt: later,
		Refresh: auth.RefreshToken{JTI: "gone-jti", Family: "gone-jti", UserID: "999999", ExpiresAt: Now.Add(time.Hour)}}
	if err := s.RecordLogin(ctx, gone); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("RecordLogin of no user: got %v, want auth.ErrNotFound", err)
	}
	State(t, s, "gone-jti", auth.ConsumeUnknown)
	if n, _, _ := s.LoginFailures(ctx, "alice", addr, Now.Add(-time.Hour)); n != 1 {
		t.Errorf("attempts after RecordLogin of no user: got %d, want 1", n)
	}
}

// testRotateRefresh checks rotation: the successor joins the family,
// a replay or a revoked token records nothing, an unknown token is
// adopted.
func testRotateRefresh(t *testing.T, s auth.Store) {
	ctx := t.Context()
	presented := Add(t, s, "r1", "fam")
	next := func(jti string) auth.RefreshToken {
		return auth.RefreshToken{JTI: jti, Family: "ignored", UserID: "1", ExpiresAt: Now.Add(2 * time.Hour)}
	}
	rotate := func(p auth.RefreshToken, jti string, want auth.ConsumeResult) auth.RefreshToken {
		t.Helper()
		got, rec, err := s.RotateRefresh(ctx, p, next(jti), Now)
		if err != nil {
			t.Fatalf("RotateRefresh(%s → %s): %v", p.JTI, jti, err)
		}
		if got != want {
			t.Fatalf("RotateRefresh(%s → %s) = %s, want %s", p.JTI, jti, got, want)
		}
		return rec
	}
	rec := rotate(presented, "r2", auth.ConsumeOK)
	SameToken(t, "RotateRefresh(r1)", rec, presented)
	State(t, s, "r1", auth.ConsumeReused)
	State(t, s, "r2", auth.ConsumeOK)
	// The successor is of r1's family: revoking it revokes r2.
	rec = rotate(presented, "r2-replay", auth.ConsumeReused)
	if rec.Family != "fam" {
		t.Errorf("replay of r1: got family %q, want fam", rec.Family)
	}
	State(t, s, "r2-replay", auth.ConsumeUnknown)
	r3 := rotate(auth.RefreshToken{JTI: "r2", Family: "r2", UserID: "1", ExpiresAt: Now.Add(2 * time.Hour)}, "r3", auth.ConsumeOK)
	if r3.Family != "fam" || !r3.ExpiresAt.Equal(Now.Add(2*time.Hour)) {
		t.Errorf("RotateRefresh(r2): got record %+v, want family fam (the successor's) and its expiry", r3)
	}
	if err := s.RevokeFamily(ctx, "fam", Now); err != nil {
		t.Fatal(err)
	}
	State(t, s, "r3", auth.ConsumeRevoked)
	rotate(auth.RefreshToken{JTI: "r3", Family: "r3", UserID: "1", ExpiresAt: Now.Add(time.Hour)}, "r4", auth.ConsumeRevoked)
	State(t, s, "r4", auth.ConsumeUnknown)

	// A blacklisted token is refused, its successor not recorded.
	bl := Add(t, s, "bl", "bl")
	if err := s.Blacklist(ctx, "bl", Now); err != nil {
		t.Fatal(err)
	}
	rotate(bl, "bl-next", auth.ConsumeRevoked)
	State(t, s, "bl-next", auth.ConsumeUnknown)

	// An unknown token is adopted as the first of its family, and rotated.
	adopted := auth.RefreshToken{JTI: "theirs", Family: "theirs", UserID: "1", ExpiresAt: Now.Add(time.Hour)}
	rec = rotate(adopted, "ours", auth.ConsumeOK)
	SameToken(t, "RotateRefresh(adopted)", rec, adopted)
	State(t, s, "theirs", auth.ConsumeReused)
	if got := Consume(t, s, "ours", auth.ConsumeOK); got.Family != "theirs" {
		t.Errorf("successor of an adopted token: family %q, want theirs", got.Family)
	}
}

// testRotateRefreshConcurrent races 16 rotations of one token, each
// with its own successor: one wins, and only its successor is recorded.
func testRotateRefreshConcurrent(t *testing.T, s auth.Store) {
	const n = 16
	presented := auth.RefreshToken{JTI: "race", Family: "race", UserID: "1", ExpiresAt: Now.Add(time.Hour)}
	results := make([]auth.ConsumeResult, n)
	errs := testkit.Race(n, func(i int) (err error) {
		next := auth.RefreshToken{JTI: fmt.Sprint("next-", i), UserID: "1", ExpiresAt: Now.Add(time.Hour)}
		results[i], _, err = s.RotateRefresh(t.Context(), presented, next, Now)
		return err
	})
	count := map[auth.ConsumeResult]int{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("RotateRefresh #%d: %v", i, err)
		}
		count[results[i]]++
	}
	if count[auth.ConsumeOK] != 1 || count[auth.ConsumeReused] != n-1 {
		t.Errorf("%d concurrent RotateRefresh of an unknown token: got %v, want 1 auth.ConsumeOK and %d auth.ConsumeReused", n, count, n-1)
	}
	for i, res := range results {
		want := auth.ConsumeUnknown
		if res == auth.ConsumeOK {
			want = auth.ConsumeOK
		}
		State(t, s, fmt.Sprint("next-", i), want)
	}
}

// testRotateRefreshFails makes the successor's insert fail: the
// rotation writes nothing, the presented token stays usable, and a retry
// rotates it.
func testRotateRefreshFails(t *testing.T, s auth.Store, faults Faults) {
	presented := Add(t, s, "p", "fam")
	next := auth.RefreshToken{JTI: "n", UserID: "1", ExpiresAt: Now.Add(time.Hour)}
	faults.FailRefreshInsert(t, "n")
	res, _, err := s.RotateRefresh(t.Context(), presented, next, Now)
	if err == nil {
		t.Fatalf("RotateRefresh with the successor's insert failing: got %s, no error", res)
	}
	t.Logf("RotateRefresh with the successor's insert failing: %v", err)
	State(t, s, "p", auth.ConsumeOK) // not consumed
	State(t, s, "n", auth.ConsumeUnknown)
	faults.Heal(t)
	res, rec, err := s.RotateRefresh(t.Context(), presented, next, Now)
	if err != nil || res != auth.ConsumeOK || rec.Family != "fam" {
		t.Fatalf("RotateRefresh retried: got %s, %+v, %v; want auth.ConsumeOK of family fam", res, rec, err)
	}
	State(t, s, "p", auth.ConsumeReused)
	State(t, s, "n", auth.ConsumeOK)
}

// Faults makes a store's writes fail, for the tests that check that
// a failed operation writes nothing.
type Faults interface {
	// FailRefreshInsert makes every insert of the refresh token jti fail,
	// as a full disk or a broken connection would.
	FailRefreshInsert(t *testing.T, jti string)
	// Heal undoes FailRefreshInsert.
	Heal(t *testing.T)
}

// RunFaults runs the suite's fault tests; open returns a new, empty
// store and a way to make its writes fail.
func RunFaults(t *testing.T, open func(t *testing.T) (auth.Store, Faults)) {
	t.Run("RecordLoginAllOrNothing", func(t *testing.T) { s, f := open(t); testRecordLogin(t, s, f) })
	t.Run("RotateRefreshAllOrNothing", func(t *testing.T) { s, f := open(t); testRotateRefreshFails(t, s, f) })
}

// testConcurrentConsume races 16 goroutines adding one token (an
// adopted token arriving in parallel requests), then 16 consuming it.
func testConcurrentConsume(t *testing.T, s auth.Store) {
	const n = 16
	ctx := t.Context()
	rt := auth.RefreshToken{JTI: "race", Family: "race-family", UserID: "1", ExpiresAt: Now.Add(time.Hour)}
	race := func(f func(i int) error) []error { return testkit.Race(n, f) }
	for i, err := range race(func(int) error { return s.AddRefresh(ctx, rt) }) {
		if err != nil {
			t.Errorf("AddRefresh #%d: %v", i, err)
		}
	}
	results := make([]auth.ConsumeResult, n)
	errs := race(func(i int) error {
		res, got, err := s.ConsumeRefresh(ctx, "race", Now)
		if err != nil {
			return err
		}
		results[i] = res
		if got.Family != "race-family" {
			return fmt.Errorf("got family %q, want race-family", got.Family)
		}
		return nil
	})
	count := map[auth.ConsumeResult]int{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("ConsumeRefresh #%d: %v", i, err)
			continue
		}
		count[results[i]]++
	}
	if count[auth.ConsumeOK] != 1 || count[auth.ConsumeReused] != n-1 {
		t.Errorf("%d concurrent ConsumeRefresh: got %d auth.ConsumeOK and %d auth.ConsumeReused (of %v), want 1 and %d",
			n, count[auth.ConsumeOK], count[auth.ConsumeReused], count, n-1)
	}
}

func testChangePassword(t *testing.T, s auth.Store) {
	ctx := t.Context()
	u, err := s.CreateUser(ctx, "alice", "old-hash", true)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := s.CreateUser(ctx, "bob", "bob-hash", true)
	for _, tok := range []auth.RefreshToken{
		{JTI: "a1", Family: "fa", UserID: u.ID, ExpiresAt: Now.Add(time.Hour)},
		{JTI: "a2", Family: "fb", UserID: u.ID, ExpiresAt: Now.Add(time.Hour)},
		{JTI: "b1", Family: "fc", UserID: other.ID, ExpiresAt: Now.Add(time.Hour)},
	} {
		if err := s.AddRefresh(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ChangePassword(ctx, u.ID, "new-hash", Now); err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	got, _ := s.UserByID(ctx, u.ID)
	if got.PasswordHash != "new-hash" || !got.PasswordChangedAt.Equal(Now) {
		t.Errorf("after ChangePassword: hash %q, changed at %v; want new-hash at %v", got.PasswordHash, got.PasswordChangedAt, Now)
	}
	for jti, want := range map[string]auth.ConsumeResult{"a1": auth.ConsumeRevoked, "a2": auth.ConsumeRevoked, "b1": auth.ConsumeOK} {
		if state, err := s.RefreshState(ctx, jti); err != nil || state != want {
			t.Errorf("RefreshState(%s) after alice's password change: %v, %v; want %v", jti, state, err, want)
		}
	}
	if b, _ := s.UserByID(ctx, other.ID); !b.PasswordChangedAt.IsZero() {
		t.Errorf("bob's password changed at %v, want never", b.PasswordChangedAt)
	}
	if err := s.ChangePassword(ctx, "999", "x", Now); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("ChangePassword of no user: %v, want auth.ErrNotFound", err)
	}
}

func testImportUsers(t *testing.T, s auth.Store) {
	ctx := t.Context()
	joined := time.Unix(1_700_000_000, 0).UTC()
	users := []auth.User{
		{ID: "7", Username: "alice", PasswordHash: "pbkdf2_sha256$1$s$h", Active: true, LastLogin: joined.Add(time.Hour), DateJoined: joined},
		{ID: "9", Username: "carol", PasswordHash: "pbkdf2_sha256$1$s$h", Active: false, DateJoined: joined},
	}
	created, updated, err := s.ImportUsers(ctx, users)
	if err != nil || created != 2 || updated != 0 {
		t.Fatalf("ImportUsers: %d created, %d updated, %v; want 2, 0", created, updated, err)
	}
	a, err := s.UserByID(ctx, "7")
	if err != nil || a.Username != "alice" || !a.Active || !a.LastLogin.Equal(joined.Add(time.Hour)) || !a.DateJoined.Equal(joined) {
		t.Errorf("imported alice: %+v, %v", a, err)
	}
	if c, _ := s.UserByID(ctx, "9"); c.Active {
		t.Error("imported carol is active, want inactive")
	}
	// Again, with a change: updated, not duplicated.
	users[1].Active = true
	if created, updated, err = s.ImportUsers(ctx, users); err != nil || created != 0 || updated != 2 {
		t.Errorf("ImportUsers again: %d created, %d updated, %v; want 0, 2", created, updated, err)
	}
	if c, _ := s.UserByID(ctx, "9"); !c.Active {
		t.Error("re-import did not update carol")
	}
	// A username another id holds fails the whole import.
	bad := []auth.User{{ID: "20", Username: "dave", PasswordHash: "x", Active: true}, {ID: "21", Username: "alice", PasswordHash: "x", Active: true}}
	if _, _, err := s.ImportUsers(ctx, bad); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("ImportUsers with alice under another id: %v, want auth.ErrUserExists", err)
	}
	if _, err := s.UserByID(ctx, "20"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("dave after a failed import: %v, want auth.ErrNotFound (nothing half-imported)", err)
	}
	// A user created afterwards gets an id above the imported ones.
	if u, err := s.CreateUser(ctx, "erin", "x", true); err != nil || u.ID == "7" || u.ID == "9" {
		t.Errorf("CreateUser after an import: %+v, %v", u, err)
	}
}
