package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/workers"
)

// MountAuth serves simplejwt's token endpoints under prefix (the default
// binary uses "/api/token": /api/token/, /api/token/refresh/, /verify/,
// /blacklist/) and the JWKS at /.well-known/jwks.json, and makes
// auth.Required work in every serving process. The store and keys come
// from the Config at boot. In prod the app then needs a secret key (HS*)
// or a signing key file, checked before any worker starts.
func (a *App) MountAuth(prefix string) {
	a.authPrefix = prefix
}

// AuthClaims sets the hook that adds claims to the tokens MountAuth's
// endpoints issue at login, as overriding simplejwt's
// TokenObtainPairSerializer.get_token does (a username, roles): see
// auth.Config.Claims. A refresh carries them into the new tokens; a
// protected handler reads them with auth.CustomClaims.
func (a *App) AuthClaims(claims func(ctx context.Context, u auth.User) (map[string]any, error)) {
	a.authClaims = claims
}

// authConfig is the auth part of cfg, with log lines for its hooks; logins
// are counted on counts, if non-nil (a prod worker's metrics). What a
// client chose (the username, the path) is clipped in those lines
// (serve.Clipped), so that no request makes the log grow by more than that.
func authConfig(cfg Config, log *zap.Logger, counts *workers.Counters) auth.Config {
	var public []string
	for f := range strings.SplitSeq(cfg.JWTPublicKeys, ",") {
		if f = strings.TrimSpace(f); f != "" {
			public = append(public, f)
		}
	}
	return auth.Config{
		Tokens: auth.TokenConfig{
			Algorithm:       cfg.JWTAlgorithm,
			SecretKey:       cfg.SecretKey,
			PrivateKeyFile:  cfg.JWTPrivateKey,
			PublicKeyFiles:  public,
			Issuer:          cfg.JWTIssuer,
			Audience:        cfg.JWTAudience,
			Leeway:          cfg.JWTLeeway,
			AccessLifetime:  cfg.AccessTokenLifetime,
			RefreshLifetime: cfg.RefreshTokenLifetime,
		},
		RotateRefreshTokens:    cfg.RotateRefreshTokens,
		BlacklistAfterRotation: cfg.BlacklistAfterRotation,
		OnLogin: func(r *http.Request, username string, outcome auth.LoginOutcome) {
			if counts != nil {
				counts.Login(string(outcome))
			}
			if outcome == auth.LoginFailed {
				log.Info("login failed", serve.Clipped("username", username), serve.Clipped("remote_addr", r.RemoteAddr))
			}
		},
		OnTokenReuse: func(r *http.Request, userID, family string) {
			log.Warn("refresh token reused: family revoked",
				serve.Clipped("user_id", userID), serve.Clipped("family", family), serve.Clipped("remote_addr", r.RemoteAddr))
		},
		OnError: func(r *http.Request, err error) {
			log.Error("auth", serve.Clipped("path", r.URL.Path), zap.Error(err))
		},
	}
}

// checkAuth tells, before anything serves, whether cfg can sign tokens:
// prod needs a secret key of at least 32 bytes for HS*, or good key files.
// Its error says what `server check` says (keyProblem).
func checkAuth(cfg Config) error {
	if _, msg := keyProblem(cfg); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// devSecretKey fills in a random key for a dev server started without one.
func devSecretKey(cfg *Config, log *zap.Logger) {
	if cfg.SecretKey != "" || !strings.HasPrefix(cfg.JWTAlgorithm, "HS") {
		return
	}
	b := make([]byte, 48)
	rand.Read(b)
	cfg.SecretKey = base64.RawURLEncoding.EncodeToString(b)
	log.Warn("no secret key given: using a random one, so every token dies with this process; set SERVER_SECRET_KEY to keep them")
}

// openStore opens the store named by cfg.Database: SQLite, or PostgreSQL
// for any other URL (the config allows only postgres:// URLs). It is the
// commands' (createuser, importusers, …): a missing SQLite file is
// created. Opening a PostgreSQL store connects and migrates: a worker that
// boots while the database is down fails its boot, and the master retries
// it with backoff.
func openStore(cfg Config) (auth.Store, error) {
	if path, ok := strings.CutPrefix(cfg.Database, "sqlite:"); ok {
		return auth.OpenSQLite(path)
	}
	return auth.OpenPostgres(context.Background(), cfg.Database)
}

// createDatabase is the prod master's, once at its start: it runs this
// binary's `migrate --database` in a child process, which creates the
// SQLite database if it is missing and brings its schema to this build's
// version, and logs when it created one. A child, so that the master does
// not keep SQLite's memory for the rest of its life (3.3 MiB of RSS). A
// PostgreSQL database is left to the workers, which migrate it as they
// open it.
func createDatabase(cfg Config, log *zap.Logger) error {
	path, ok := strings.CutPrefix(cfg.Database, "sqlite:")
	if !ok {
		return nil
	}
	_, err := os.Stat(path)
	missing := errors.Is(err, os.ErrNotExist)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	out, err := exec.Command(exe, "migrate", "--database", cfg.Database).CombinedOutput()
	if err != nil {
		return fmt.Errorf("migrate %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	if missing {
		log.Warn("database created", zap.String("path", path))
	}
	return nil
}

// openServingStore opens the store of a serving process. A prod worker
// never creates an SQLite database: the file must exist and hold the
// schema (the master makes it as it starts, see createDatabase; `server
// migrate` too), so that a database removed under a running server is not
// replaced by an empty one at the next HUP or by a replaced worker; the
// dev server creates it. The SQLite store checks that its path still names
// the file it opened, and log hears at once when it does not (see
// auth.SQLite): the auth endpoints then answer 503.
func openServingStore(cfg Config, log *zap.Logger) (auth.Store, error) {
	path, ok := strings.CutPrefix(cfg.Database, "sqlite:")
	if !ok {
		return openStore(cfg)
	}
	st, err := auth.OpenSQLiteConfig(auth.SQLiteConfig{
		Path:      path,
		MustExist: cfg.Prod,
		OnFileChange: func(err error) {
			if err != nil {
				// Until a new process opens what path names: a HUP's
				// workers, or a restart.
				log.Error("database file removed or replaced", zap.String("path", path), zap.Error(err))
				return
			}
			log.Warn("database file back", zap.String("path", path))
		},
	})
	if errors.Is(err, auth.ErrNoDatabase) {
		return nil, fmt.Errorf("%w; a running production server does not create its database: restore it, or create an empty one with `server migrate --database %s`, then HUP", err, cfg.Database)
	}
	return st, err
}

// bootAuth opens the store, mounts the endpoints on app and installs the
// Auth for auth.Required. The caller closes the store.
func bootAuth(app *App, cfg Config, log *zap.Logger, counts *workers.Counters) (auth.Store, error) {
	store, err := openServingStore(cfg, log)
	if err != nil {
		return nil, err
	}
	ac := authConfig(cfg, log, counts)
	ac.Claims = app.authClaims
	a, err := auth.New(ac, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	a.Mount(app, app.authPrefix)
	a.Install()
	return store, nil
}

// migrate is `server migrate [flags]`: it creates the database named by
// --database if it is an SQLite file that does not exist, and brings its
// schema to this build's version (PostgreSQL: the database must exist).
// It is idempotent. The prod master does the same as it starts
// (createDatabase); systemd units may run it as ExecStartPre= too.
func migrate(inv *invocation) int {
	what := "the PostgreSQL database"
	if path, ok := strings.CutPrefix(inv.cfg.Database, "sqlite:"); ok {
		what = path
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			what = path + " (created)"
		}
	}
	st, err := openStore(inv.cfg)
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	if err := st.Close(); err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintf(inv.stdout, "migrated %s\n", what)
	return ExitOK
}

// createUser is `server createuser --username NAME [--password-stdin]`.
func createUser(inv *invocation) int {
	return userCommand(inv, func(st auth.Store, username, password string) (string, error) {
		u, err := auth.CreateUser(context.Background(), st, username, password)
		return fmt.Sprintf("created user %q with id %s", u.Username, u.ID), err
	})
}

// changePassword is `server changepassword --username NAME
// [--password-stdin]`: the user's tokens stop working.
func changePassword(inv *invocation) int {
	return userCommand(inv, func(st auth.Store, username, password string) (string, error) {
		err := auth.ChangePassword(context.Background(), st, username, password)
		return fmt.Sprintf("changed the password of %q; the tokens issued before are revoked", username), err
	})
}

// userCommand runs a command that sets a user's password (--username,
// --password-stdin): it reads the password and calls do with the store.
func userCommand(inv *invocation, do func(st auth.Store, username, password string) (string, error)) int {
	username := inv.own["username"]
	if username == "" {
		inv.errorf("--username is required")
		fmt.Fprintf(inv.stderr, "Run %q for usage.\n", inv.prog+" "+inv.cmd.name+" --help")
		return ExitUsage
	}
	fromStdin := false
	if v, ok := inv.own["password-stdin"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			inv.errorf("--password-stdin=%s: want true or false", v)
			return ExitUsage
		}
		fromStdin = b
	}
	password, err := readPassword(inv.stdin, fromStdin, inv.stderr)
	if err != nil {
		inv.errorf("%v", err)
		return ExitUsage
	}
	st, err := openStore(inv.cfg)
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	defer st.Close()
	done, err := do(st, username, password)
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintln(inv.stdout, done)
	return ExitOK
}

// readPassword reads the new password: from stdin with --password-stdin
// (one line, only its line ending removed), else at a no-echo prompt on a
// terminal, twice.
func readPassword(stdin *os.File, fromStdin bool, prompt io.Writer) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	fd := int(stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("standard input is not a terminal: give the password with --password-stdin")
	}
	fmt.Fprint(prompt, "Password: ")
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(prompt, "Password (again): ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(first) != string(again) {
		return "", errors.New("the passwords differ")
	}
	return string(first), nil
}

// flushExpiredTokens is `server flushexpiredtokens`.
func flushExpiredTokens(inv *invocation) int {
	store, err := openStore(inv.cfg)
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	defer store.Close()
	n, err := store.FlushExpired(context.Background(), time.Now())
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintf(inv.stdout, "flushed %d expired tokens\n", n)
	return ExitOK
}
