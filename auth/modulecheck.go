package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/module"
)

// Check is the module's part of the deploy checklist of `server check`:
// the database (SQLite's directory and mode; for PostgreSQL, the driver,
// E006 without one, and the driver's Check: the connection budget), the
// signing keys and the token settings.
func (m *Module) Check(env module.Env) []module.Finding {
	s, err := settingsOf(env)
	if err != nil {
		return []module.Finding{{ID: "E005", Err: true, Msg: err.Error()}}
	}
	var fs []module.Finding
	warn := func(id, format string, args ...any) {
		fs = append(fs, module.Finding{ID: id, Msg: fmt.Sprintf(format, args...)})
	}
	fail := func(id, format string, args ...any) {
		fs = append(fs, module.Finding{ID: id, Err: true, Msg: fmt.Sprintf(format, args...)})
	}
	if !env.Prod {
		return nil // the dev server makes up a key, and its database
	}
	if path, ok := strings.CutPrefix(s.Database, "sqlite:"); ok {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
			fail("E003", "database %s has mode %v: other users can read password hashes and token records; chmod o-rwx %s.", path, fi.Mode().Perm(), path)
		}
		if msg := sqliteDirProblem(s, env, path); msg != "" {
			fail("E004", "%s", msg)
		}
	} else if msg := m.driverProblem(s, env); msg != "" {
		fail("E006", "%s", msg)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs = append(fs, m.Postgres.Check(ctx, s.Database, s.Workers)...)
		cancel()
	}
	if id, msg := keyProblem(s, env); id != "" {
		fail(id, "%s", msg)
	}
	if strings.HasPrefix(s.JWTAlgorithm, "HS") && strings.HasPrefix(env.From("secret_key"), "flag") {
		warn("W013", "secret_key comes from a flag: every user of the host sees it in ps; set SERVER_SECRET_KEY or put it in the config file.")
	}
	if !s.RotateRefreshTokens || !s.BlacklistAfterRotation {
		warn("W014", "rotate_refresh_tokens = %t, blacklist_after_rotation = %t: a stolen refresh token stays usable until it expires; turn both on.", s.RotateRefreshTokens, s.BlacklistAfterRotation)
	}
	if s.AccessTokenLifetime > 15*time.Minute {
		warn("W015", "access_token_lifetime = %s: an access token cannot be revoked before it expires; keep it short, such as 5m.", env.Shown("access_token_lifetime"))
	}
	return fs
}

// keyProblem says why s cannot sign tokens, where the key came from and
// what to do, with the checklist's ID (E001 no secret key in prod, E002 a
// weak one, E005 another key or token setting refused), or "" for sound
// settings. Check reports it as a finding; Validate refuses to start with
// it. Dev makes a random key when there is none: no E001 there.
func keyProblem(s settings, env module.Env) (id, msg string) {
	hs := strings.HasPrefix(s.JWTAlgorithm, "HS")
	fix := "set SERVER_SECRET_KEY to a random key of at least 32 bytes (openssl rand -base64 48)"
	switch s.JWTAlgorithm { // CheckSecretKey's minimums: the hash's size
	case "HS384":
		fix = "set SERVER_SECRET_KEY to a random key of at least 48 bytes (openssl rand -base64 48)"
	case "HS512":
		fix = "set SERVER_SECRET_KEY to a random key of at least 64 bytes (openssl rand -base64 64)"
	}
	if hs && s.SecretKey == "" && s.JWTPrivateKey == "" && s.JWTPublicKeys == "" {
		if !env.Prod {
			return "", ""
		}
		return "E001", fmt.Sprintf("secret_key is not set: the production server needs one to sign tokens (%s); %s.", s.JWTAlgorithm, fix)
	}
	_, err := NewTokens(s.config(zap.NewNop(), nil).Tokens)
	if err == nil {
		return "", ""
	}
	why := strings.TrimPrefix(err.Error(), "auth: ")
	if hs && s.SecretKey != "" && CheckSecretKey(s.JWTAlgorithm, s.SecretKey) != nil {
		return "E002", fmt.Sprintf("secret_key%s is refused: %s; %s.", from(env, "secret_key"), why, fix)
	}
	var given []string
	for _, key := range []string{"jwt_algorithm", "jwt_private_key", "jwt_public_keys", "access_token_lifetime", "refresh_token_lifetime"} {
		if src := env.From(key); src != "" && src != "default" {
			given = append(given, key+" from "+src)
		}
	}
	where := ""
	if len(given) > 0 {
		where = " (" + strings.Join(given, ", ") + ")"
	}
	fix = ""
	if !hs {
		fix = "; give the PEM key files with --jwt-private-key and --jwt-public-keys (SERVER_JWT_PRIVATE_KEY, SERVER_JWT_PUBLIC_KEYS), or sign with the secret key (HS256)"
	}
	return "E005", fmt.Sprintf("tokens cannot be signed or checked with these settings%s: %s%s.", where, why, fix)
}

// from is " (source)" of the setting key, or "" when unknown.
func from(env module.Env, key string) string {
	if src := env.From(key); src != "" {
		return " (" + src + ")"
	}
	return ""
}

// sqliteDirProblem says why the SQLite database at path cannot be created
// or opened for its directory, and what to do, or "". The prod master
// creates a missing database file as it starts, but not its directory.
func sqliteDirProblem(s settings, env module.Env, path string) string {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	setting := "database = " + env.Shown("database") + from(env, "database")
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("%s: directory %s does not exist, and the server creates the database file, not its directory; create it, writable by the user the server runs as (mkdir -p %s; systemd: StateDirectory=, see systemd/README.md).",
			setting, dir, dir)
	case err != nil:
		return fmt.Sprintf("%s: directory %s: %v.", setting, dir, err)
	case !fi.IsDir():
		return fmt.Sprintf("%s: %s is not a directory.", setting, dir)
	}
	return ""
}
