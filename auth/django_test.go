package auth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

const djangoDump = `[
{"model": "auth.user", "pk": 1, "fields": {"password": "pbkdf2_sha256$260000$seasalt$aGFzaA==", "last_login": "2026-11-20T09:30:00.123Z", "is_superuser": true, "username": "alice", "first_name": "", "last_name": "", "email": "a@example.com", "is_staff": true, "is_active": true, "date_joined": "2025-01-02T03:04:05Z", "groups": [], "user_permissions": []}},
{"model": "auth.user", "pk": 2, "fields": {"password": "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA", "last_login": null, "is_superuser": false, "username": "bob", "is_active": true, "date_joined": "2025-01-02T03:04:05Z"}},
{"model": "auth.user", "pk": 5, "fields": {"password": "!unusable", "last_login": null, "username": "carol", "is_active": false, "date_joined": "2025-01-02T03:04:05Z"}}
]`

func TestParseDjangoUsers(t *testing.T) {
	users, err := ParseDjangoUsers(strings.NewReader(djangoDump))
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 3 {
		t.Fatalf("got %d users, want 3", len(users))
	}
	a := users[0]
	if a.ID != "1" || a.Username != "alice" || !a.Active || !strings.HasPrefix(a.PasswordHash, "pbkdf2_sha256$") ||
		!a.LastLogin.Equal(time.Date(2026, 11, 20, 9, 30, 0, 123e6, time.UTC)) {
		t.Errorf("alice: %+v", a)
	}
	if c := users[2]; c.ID != "5" || c.Active || !c.LastLogin.IsZero() {
		t.Errorf("carol: %+v", c)
	}
}

func TestParseDjangoUsersRefuses(t *testing.T) {
	rec := func(pk, fields string) string {
		return `[{"model":"auth.user","pk":1,"fields":{"password":"pbkdf2_sha256$1$s$h","username":"ok","is_active":true,"date_joined":"2025-01-02T03:04:05Z"}},` +
			`{"model":"auth.user","pk":` + pk + `,"fields":` + fields + `}]`
	}
	for _, tt := range []struct{ name, in, want string }{
		{"not an array", `{"model":"auth.user"}`, "not a dumpdata JSON array"},
		{"another model", `[{"model":"auth.group","pk":1,"fields":{}}]`, `record 1 (pk 1): model "auth.group"`},
		{"pk not a number", rec(`"x"`, `{}`), "record 2 (pk \"x\")"},
		{"no username", rec("2", `{"password":"pbkdf2_sha256$1$s$h","is_active":true}`), "record 2 (pk 2): no username"},
		{"bcrypt hash", rec("2", `{"username":"eve","password":"bcrypt$$2b$12$abc","is_active":true}`), `username "eve": password hash`},
		{"no is_active", rec("2", `{"username":"eve","password":"pbkdf2_sha256$1$s$h"}`), "no is_active"},
		{"bad time", rec("2", `{"username":"eve","password":"pbkdf2_sha256$1$s$h","is_active":true,"last_login":"yesterday"}`), `time "yesterday"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDjangoUsers(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// djangoTokenDump is `manage.py dumpdata auth.user token_blacklist` of a
// simplejwt deployment: alice, four outstanding tokens (one rotated out,
// one logged out, one of a user since deleted whose token names user 7,
// one of a deleted user with no readable token), and their blacklisting.
var djangoTokenDump = `[
{"model": "auth.user", "pk": 1, "fields": {"password": "pbkdf2_sha256$260000$seasalt$aGFzaA==", "last_login": null, "username": "alice", "is_active": true, "date_joined": "2025-01-02T03:04:05Z"}},
{"model": "token_blacklist.outstandingtoken", "pk": 1, "fields": {"user": 1, "jti": "aaa", "token": "x.y.z", "created_at": "2026-11-20T09:30:00.123Z", "expires_at": "2026-11-21T09:30:00Z"}},
{"model": "token_blacklist.outstandingtoken", "pk": 2, "fields": {"user": 1, "jti": "bbb", "token": "x.y.z", "created_at": null, "expires_at": "2026-11-21T10:00:00Z"}},
{"model": "token_blacklist.blacklistedtoken", "pk": 1, "fields": {"token": 2, "blacklisted_at": "2026-11-20T10:05:00.5Z"}},
{"model": "token_blacklist.outstandingtoken", "pk": 3, "fields": {"user": null, "jti": "ccc", "token": "` + unsignedToken(`{"token_type":"refresh","user_id":7,"jti":"ccc"}`) + `", "created_at": null, "expires_at": "2026-11-21T11:00:00Z"}},
{"model": "token_blacklist.outstandingtoken", "pk": 4, "fields": {"user": null, "jti": "ddd", "token": "garbage", "created_at": null, "expires_at": "2026-11-21T11:00:00Z"}},
{"model": "token_blacklist.blacklistedtoken", "pk": 2, "fields": {"token": 4, "blacklisted_at": "2026-11-20T10:06:00Z"}},
{"model": "token_blacklist.blacklistedtoken", "pk": 3, "fields": {"token": 3, "blacklisted_at": "2026-11-20T10:07:00Z"}}
]`

// unsignedToken is a JWT-shaped string with payload as its claims.
func unsignedToken(payload string) string {
	return "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestParseDjangoDump(t *testing.T) {
	d, err := ParseDjangoDump(strings.NewReader(djangoTokenDump))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Users) != 1 || d.Users[0].Username != "alice" || d.Users[0].ID != "1" {
		t.Errorf("users: %+v, want alice (1)", d.Users)
	}
	want := []ImportedToken{
		{JTI: "aaa", UserID: "1", CreatedAt: time.Date(2026, 11, 20, 9, 30, 0, 123e6, time.UTC), ExpiresAt: time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)},
		{JTI: "bbb", UserID: "1", ExpiresAt: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), BlacklistedAt: time.Date(2026, 11, 20, 10, 5, 0, 5e8, time.UTC)},
		{JTI: "ccc", UserID: "7", ExpiresAt: time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC), BlacklistedAt: time.Date(2026, 11, 20, 10, 7, 0, 0, time.UTC)},
	}
	if len(d.Tokens) != len(want) {
		t.Fatalf("got %d tokens %+v, want %d", len(d.Tokens), d.Tokens, len(want))
	}
	for i, w := range want {
		g := d.Tokens[i]
		if g.JTI != w.JTI || g.UserID != w.UserID || !g.CreatedAt.Equal(w.CreatedAt) || !g.ExpiresAt.Equal(w.ExpiresAt) || !g.BlacklistedAt.Equal(w.BlacklistedAt) {
			t.Errorf("token %d: got %+v, want %+v", i, g, w)
		}
	}
	if d.Orphans != 1 {
		t.Errorf("got %d orphans, want 1 (ddd: no user, no readable token)", d.Orphans)
	}
	// The users-only dump of before still reads, with no tokens.
	if d, err := ParseDjangoDump(strings.NewReader(djangoDump)); err != nil || len(d.Users) != 3 || len(d.Tokens) != 0 {
		t.Errorf("users-only dump: %d users, %d tokens, %v; want 3, 0", len(d.Users), len(d.Tokens), err)
	}
}

func TestParseDjangoDumpRefuses(t *testing.T) {
	out := func(pk, fields string) string {
		return `{"model":"token_blacklist.outstandingtoken","pk":` + pk + `,"fields":` + fields + `}`
	}
	ok := out("1", `{"user":1,"jti":"aaa","token":"x","created_at":null,"expires_at":"2026-11-21T09:30:00Z"}`)
	for _, tt := range []struct{ name, in, want string }{
		{"another model", `[{"model":"auth.group","pk":1,"fields":{}}]`,
			`record 1 (pk 1): model "auth.group", want one of auth.user, token_blacklist.outstandingtoken, token_blacklist.blacklistedtoken`},
		{"no jti", `[` + out("1", `{"user":1,"expires_at":"2026-11-21T09:30:00Z"}`) + `]`, "record 1 (pk 1): want a jti"},
		{"jti twice", `[` + ok + `,` + strings.Replace(ok, `"pk":1`, `"pk":2`, 1) + `]`, `record 2 (pk 2): jti "aaa" found twice`},
		{"no expires_at", `[` + out("1", `{"user":1,"jti":"aaa"}`) + `]`, `jti "aaa": no expires_at`},
		{"naive time", `[` + out("1", `{"user":1,"jti":"aaa","expires_at":"2026-11-21T09:30:00"}`) + `]`, `time "2026-11-21T09:30:00"`},
		{"user not an id", `[` + out("1", `{"user":"alice","jti":"aaa","expires_at":"2026-11-21T09:30:00Z"}`) + `]`, `user "alice": want a positive integer or null`},
		{"blacklisted, no such outstanding token", `[` + ok + `,{"model":"token_blacklist.blacklistedtoken","pk":1,"fields":{"token":9,"blacklisted_at":"2026-11-20T10:05:00Z"}}]`,
			"record 2 (pk 1): blacklists outstanding token 9, which is not in the dump"},
		{"blacklisted, no time", `[` + ok + `,{"model":"token_blacklist.blacklistedtoken","pk":1,"fields":{"token":1}}]`, "record 2 (pk 1): want the fields token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDjangoDump(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// ParseDjangoUsers reads users only, as before.
	if _, err := ParseDjangoUsers(strings.NewReader(djangoTokenDump)); err == nil || !strings.Contains(err.Error(), `record 2 (pk 1): model "token_blacklist.outstandingtoken", want auth.user`) {
		t.Errorf("ParseDjangoUsers of a dump with tokens: %v, want the token record refused", err)
	}
}
