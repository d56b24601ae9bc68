package auth

import (
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
