package auth

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ParseDjangoUsers reads the output of Django's `manage.py dumpdata
// auth.user` (a JSON array of {"model","pk","fields"} records) and returns
// the users with their ids (so that a simplejwt user_id claim still names
// the same user), usernames, active flags, last logins, join dates and
// password hashes. A hash must be one CheckPassword verifies
// (pbkdf2_sha256$, argon2$, $argon2id$) or Django's unusable password
// ("!…", which never logs in). The first bad record stops it, named by its
// position and pk.
func ParseDjangoUsers(r io.Reader) ([]User, error) {
	var records []struct {
		Model  string          `json:"model"`
		PK     json.RawMessage `json:"pk"`
		Fields struct {
			Username   *string `json:"username"`
			Password   *string `json:"password"`
			IsActive   *bool   `json:"is_active"`
			LastLogin  *string `json:"last_login"`
			DateJoined *string `json:"date_joined"`
		} `json:"fields"`
	}
	if err := json.NewDecoder(r).Decode(&records); err != nil {
		return nil, fmt.Errorf("auth: django users: not a dumpdata JSON array: %w", err)
	}
	users := make([]User, 0, len(records))
	for i, rec := range records {
		where := fmt.Sprintf("auth: django users: record %d (pk %s)", i+1, rec.PK)
		f := rec.Fields
		id, err := strconv.ParseInt(string(rec.PK), 10, 64)
		switch {
		case rec.Model != "auth.user":
			return nil, fmt.Errorf("%s: model %q, want auth.user", where, rec.Model)
		case err != nil || id <= 0:
			return nil, fmt.Errorf("%s: want a positive integer pk", where)
		case f.Username == nil || *f.Username == "":
			return nil, fmt.Errorf("%s: no username", where)
		case f.Password == nil || !importableHash(*f.Password):
			return nil, fmt.Errorf("%s: username %q: password hash missing or of a format that cannot be verified here (want pbkdf2_sha256$, argon2$ or $argon2id$)", where, *f.Username)
		case f.IsActive == nil:
			return nil, fmt.Errorf("%s: username %q: no is_active", where, *f.Username)
		}
		u := User{ID: strconv.FormatInt(id, 10), Username: *f.Username, PasswordHash: *f.Password, Active: *f.IsActive}
		if u.LastLogin, err = djangoTime(f.LastLogin); err == nil {
			u.DateJoined, err = djangoTime(f.DateJoined)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: username %q: %w", where, u.Username, err)
		}
		users = append(users, u)
	}
	return users, nil
}

func importableHash(h string) bool {
	for _, prefix := range []string{"pbkdf2_sha256$", "argon2$", "$argon2id$", "!"} {
		if strings.HasPrefix(h, prefix) {
			return true
		}
	}
	return false
}

// djangoTime parses dumpdata's ISO 8601 times ("2026-11-23T12:00:00.123Z");
// null is the zero time.
func djangoTime(s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want ISO 8601 with a zone", *s)
	}
	return t.UTC(), nil
}
