package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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
// position and pk. A record of another model is refused: ParseDjangoDump
// takes simplejwt's token_blacklist records too.
func ParseDjangoUsers(r io.Reader) ([]User, error) {
	d, err := parseDjango(r, "auth: django users", false)
	return d.Users, err
}

// DjangoDump is what ParseDjangoDump reads: Django's users and
// simplejwt's record of the refresh tokens it issued.
type DjangoDump struct {
	Users []User
	// Tokens are simplejwt's outstanding tokens (OutstandingToken: every
	// refresh token it issued through a login while its token_blacklist
	// app was installed), each with the time it was blacklisted
	// (BlacklistedToken: rotated out under BLACKLIST_AFTER_ROTATION, or
	// logged out through /blacklist/), if it was.
	Tokens []ImportedToken
	// Orphans counts the outstanding tokens left out: of a user Django
	// deleted (user null) whose token text names no user either. No such
	// token can be refreshed here: its user is unknown.
	Orphans int
}

// ImportedToken is a refresh token another deployment issued with the same
// signing key, as a store records it: by jti, never the token itself.
// Imported, it begins a family of its own (its jti), as a token adopted on
// first sight does.
type ImportedToken struct {
	JTI           string
	UserID        string    // decimal
	CreatedAt     time.Time // zero if unknown
	ExpiresAt     time.Time
	BlacklistedAt time.Time // zero if not blacklisted
}

// ParseDjangoDump reads the output of `manage.py dumpdata auth.user
// token_blacklist`: the users, as ParseDjangoUsers reads them, and the
// records of simplejwt's token_blacklist app (models
// token_blacklist.outstandingtoken and token_blacklist.blacklistedtoken),
// in any order. A token's user is its record's; for a token whose user
// Django deleted (null), the user_id claim of the token's text, read
// without checking its signature. A record of any other model is refused,
// as is a blacklisted token that names no outstanding token of the dump,
// and a jti found twice. The first bad record stops it, named by its
// position and pk.
func ParseDjangoDump(r io.Reader) (DjangoDump, error) {
	return parseDjango(r, "auth: django dump", true)
}

// djangoRecord is one record of a dumpdata file.
type djangoRecord struct {
	Model  string          `json:"model"`
	PK     json.RawMessage `json:"pk"`
	Fields json.RawMessage `json:"fields"`
}

func parseDjango(r io.Reader, what string, tokens bool) (DjangoDump, error) {
	var records []djangoRecord
	if err := json.NewDecoder(r).Decode(&records); err != nil {
		return DjangoDump{}, fmt.Errorf("%s: not a dumpdata JSON array: %w", what, err)
	}
	var (
		d           DjangoDump
		outstanding = map[int64]int{}   // OutstandingToken pk -> index in d.Tokens, -1 for an orphan
		jtis        = map[string]bool{} // seen
		blacklisted []djangoBlacklisted // in the dump's order
	)
	for i, rec := range records {
		where := fmt.Sprintf("%s: record %d (pk %s)", what, i+1, rec.PK)
		if rec.Model != "auth.user" && (!tokens || !slices.Contains(djangoModels, rec.Model)) {
			return DjangoDump{}, modelError(where, rec.Model, tokens)
		}
		pk, err := strconv.ParseInt(string(rec.PK), 10, 64)
		if err != nil || pk <= 0 {
			return DjangoDump{}, fmt.Errorf("%s: want a positive integer pk", where)
		}
		switch rec.Model {
		case "auth.user":
			u, err := djangoUser(rec.Fields, pk)
			if err != nil {
				return DjangoDump{}, fmt.Errorf("%s: %w", where, err)
			}
			d.Users = append(d.Users, u)
		case "token_blacklist.outstandingtoken":
			t, ok, err := djangoOutstanding(rec.Fields)
			switch {
			case err != nil:
				return DjangoDump{}, fmt.Errorf("%s: %w", where, err)
			case jtis[t.JTI]:
				return DjangoDump{}, fmt.Errorf("%s: jti %q found twice", where, t.JTI)
			case !ok:
				d.Orphans++
				outstanding[pk] = -1
				continue
			}
			jtis[t.JTI] = true
			outstanding[pk] = len(d.Tokens)
			d.Tokens = append(d.Tokens, t)
		case "token_blacklist.blacklistedtoken":
			var f struct {
				Token         *int64  `json:"token"`
				BlacklistedAt *string `json:"blacklisted_at"`
			}
			if err := json.Unmarshal(rec.Fields, &f); err != nil || f.Token == nil || f.BlacklistedAt == nil {
				return DjangoDump{}, fmt.Errorf("%s: want the fields token (an outstanding token's pk) and blacklisted_at", where)
			}
			at, err := djangoTime(f.BlacklistedAt)
			if err != nil {
				return DjangoDump{}, fmt.Errorf("%s: %w", where, err)
			}
			blacklisted = append(blacklisted, djangoBlacklisted{where, *f.Token, at})
		}
	}
	for _, b := range blacklisted {
		i, ok := outstanding[b.token]
		switch {
		case !ok:
			return DjangoDump{}, fmt.Errorf("%s: blacklists outstanding token %d, which is not in the dump", b.where, b.token)
		case i < 0: // an orphan, left out
		case d.Tokens[i].BlacklistedAt.IsZero() || b.at.Before(d.Tokens[i].BlacklistedAt):
			d.Tokens[i].BlacklistedAt = b.at
		}
	}
	return d, nil
}

// djangoBlacklisted is a token_blacklist.blacklistedtoken record: the pk
// of the outstanding token it blacklists, and when.
type djangoBlacklisted struct {
	where string
	token int64
	at    time.Time
}

// djangoModels are the models ParseDjangoDump reads.
var djangoModels = []string{"auth.user", "token_blacklist.outstandingtoken", "token_blacklist.blacklistedtoken"}

func modelError(where, model string, tokens bool) error {
	if !tokens {
		return fmt.Errorf("%s: model %q, want auth.user", where, model)
	}
	return fmt.Errorf("%s: model %q, want one of %s", where, model, strings.Join(djangoModels, ", "))
}

// djangoUser reads the fields of an auth.user record.
func djangoUser(fields json.RawMessage, pk int64) (User, error) {
	var f struct {
		Username   *string `json:"username"`
		Password   *string `json:"password"`
		IsActive   *bool   `json:"is_active"`
		LastLogin  *string `json:"last_login"`
		DateJoined *string `json:"date_joined"`
	}
	if err := json.Unmarshal(fields, &f); err != nil {
		return User{}, fmt.Errorf("fields: %w", err)
	}
	switch {
	case f.Username == nil || *f.Username == "":
		return User{}, errors.New("no username")
	case f.Password == nil || !importableHash(*f.Password):
		return User{}, fmt.Errorf("username %q: password hash missing or of a format that cannot be verified here (want pbkdf2_sha256$, argon2$ or $argon2id$)", *f.Username)
	case f.IsActive == nil:
		return User{}, fmt.Errorf("username %q: no is_active", *f.Username)
	}
	u := User{ID: strconv.FormatInt(pk, 10), Username: *f.Username, PasswordHash: *f.Password, Active: *f.IsActive}
	var err error
	if u.LastLogin, err = djangoTime(f.LastLogin); err == nil {
		u.DateJoined, err = djangoTime(f.DateJoined)
	}
	if err != nil {
		return User{}, fmt.Errorf("username %q: %w", u.Username, err)
	}
	return u, nil
}

// maxJTIBytes is OutstandingToken.jti's max_length.
const maxJTIBytes = 255

// djangoOutstanding reads the fields of a token_blacklist.outstandingtoken
// record. ok is false for a token of no known user (see DjangoDump.Orphans).
func djangoOutstanding(fields json.RawMessage) (t ImportedToken, ok bool, err error) {
	var f struct {
		User      json.RawMessage `json:"user"`
		JTI       *string         `json:"jti"`
		Token     *string         `json:"token"`
		CreatedAt *string         `json:"created_at"`
		ExpiresAt *string         `json:"expires_at"`
	}
	if err := json.Unmarshal(fields, &f); err != nil {
		return t, false, fmt.Errorf("fields: %w", err)
	}
	if f.JTI == nil || *f.JTI == "" || len(*f.JTI) > maxJTIBytes {
		return t, false, fmt.Errorf("want a jti of 1 to %d bytes", maxJTIBytes)
	}
	t.JTI = *f.JTI
	if f.ExpiresAt == nil {
		return t, false, fmt.Errorf("jti %q: no expires_at", t.JTI)
	}
	if t.ExpiresAt, err = djangoTime(f.ExpiresAt); err == nil {
		t.CreatedAt, err = djangoTime(f.CreatedAt)
	}
	if err != nil {
		return t, false, fmt.Errorf("jti %q: %w", t.JTI, err)
	}
	switch user := string(f.User); user {
	case "", "null":
		if f.Token != nil {
			t.UserID, ok = tokenUserID(*f.Token)
		}
		return t, ok, nil
	default:
		if t.UserID, ok = decimalID(user); !ok {
			return t, false, fmt.Errorf("jti %q: user %s: want a positive integer or null", t.JTI, user)
		}
		return t, true, nil
	}
}

// tokenUserID reads the user_id claim of a JWT's payload, unverified: the
// dump is the operator's own.
func tokenUserID(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", false
	}
	var c struct {
		UserID json.RawMessage `json:"user_id"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", false
	}
	id := string(c.UserID)
	if s, err := strconv.Unquote(id); err == nil {
		id = s
	}
	return decimalID(id)
}

// decimalID is s if it is a user id: the decimal form of a positive
// integer, without sign or leading zeros.
func decimalID(s string) (string, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != s {
		return "", false
	}
	return s, true
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
