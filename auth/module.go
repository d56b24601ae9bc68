package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/module"
)

// Module is auth as a module of a Remuda app (see package module): an app
// registers it (App.Register), mounts its endpoints and guards routes with
// it, and the server does the rest. In each serving process it opens the
// store named by the database setting and signs with the key settings
// (secret_key, jwt_*); it checks those keys before the server starts,
// makes the prod master create a missing SQLite database, adds its items
// to `server check`, and adds the commands migrate, createuser,
// changepassword, importusers and flushexpiredtokens. Its zero value is
// ready to use with SQLite:
//
//	users := new(auth.Module)
//	app.Register(users)
//	users.Mount(app, "/api/token")
//	app.Handle("GET /me/", users.Required(http.HandlerFunc(me)))
//
// A binary that may serve from PostgreSQL gives it the driver of package
// auth/postgres, which only such a binary links (with pgx):
//
//	users := &auth.Module{Postgres: postgres.Driver{}}
//
// Until a process has booted the module its endpoints and protected
// routes answer 500 "Authentication is not configured."; under
// net/http/httptest, where nothing boots, build an Auth with New instead:
// it has the same Mount, Handler and Required.
//
// The module logs through the server's logger (failed logins, reused
// refresh tokens, store errors), the rest of package auth does not log.
type Module struct {
	// Claims, if non-nil, is Config.Claims of the Auth the module boots:
	// claims added to the tokens at login.
	Claims func(ctx context.Context, u User) (map[string]any, error)

	// Postgres opens a database setting that is a postgres:// URL, and
	// checks it for `server check`: postgres.Driver{} of package
	// auth/postgres. If nil, such a setting is refused (Validate, Check
	// and the commands say to set this field) and the binary does not
	// link PostgreSQL's client.
	Postgres Driver

	// auth is what Boot built: set once before the process serves, read by
	// every request after.
	auth *Auth
}

// Driver is a database for Module that package auth does not link
// itself: package auth/postgres's Driver, so that only the binaries that
// set Module.Postgres link pgx. SQLite, the embedded default, is auth's
// own (OpenSQLite).
type Driver interface {
	// Open connects to the database at url, migrates its schema to this
	// build's version, and returns the store; an unreachable database
	// gives an error matching ErrUnavailable.
	Open(ctx context.Context, url string) (Store, error)
	// Check is the database's part of the deploy checklist of `server
	// check`, for a host that runs workers processes, each of which opens
	// the store at url; nil if nothing is wrong.
	Check(ctx context.Context, url string, workers int) []module.Finding
}

var (
	_ module.Validator = (*Module)(nil)
	_ module.Starter   = (*Module)(nil)
	_ module.Checker   = (*Module)(nil)
	_ module.Commander = (*Module)(nil)
)

// Name is "auth".
func (m *Module) Name() string { return "auth" }

// Mount registers the token endpoints under prefix and the JWKS, as
// Auth.Mount does, for the Auth the module boots.
func (m *Module) Mount(mux interface{ Handle(string, http.Handler) }, prefix string) {
	mountAt(mux, prefix, m.Handler(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := m.booted(w); a != nil {
			a.serveJWKS(w, r)
		}
	}))
}

// Handler serves the token endpoints at paths relative to where it is
// mounted, as Auth.Handler does, for the Auth the module boots.
func (m *Module) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := m.booted(w); a != nil {
			a.serveEndpoint(w, r)
		}
	})
}

// Required protects h as Auth.Required does, with the Auth the module
// boots.
func (m *Module) Required(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := m.booted(w); a != nil {
			a.serveProtected(h, w, r)
		}
	})
}

// booted returns the module's Auth, or answers 500 and returns nil before
// Boot.
func (m *Module) booted(w http.ResponseWriter) *Auth {
	if m.auth == nil {
		writeJSON(w, http.StatusInternalServerError, detail{Detail: "Authentication is not configured."})
	}
	return m.auth
}

// Validate refuses settings that cannot sign tokens (see keyProblem), and
// a PostgreSQL database without a driver (see driverProblem).
func (m *Module) Validate(env module.Env) error {
	s, err := settingsOf(env)
	if err != nil {
		return err
	}
	if msg := m.driverProblem(s, env); msg != "" {
		return errors.New(msg)
	}
	if _, msg := keyProblem(s, env); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// driverProblem says why the database setting of s cannot be opened for
// want of a driver, where it came from and what to do, or "". It names
// the setting, never its value: a database URL may hold a password.
func (m *Module) driverProblem(s settings, env module.Env) string {
	if strings.HasPrefix(s.Database, "sqlite:") || m.Postgres != nil {
		return ""
	}
	return fmt.Sprintf("database%s is a PostgreSQL URL, and this binary's auth module has no PostgreSQL driver; register it as users := &auth.Module{Postgres: postgres.Driver{}} (package github.com/remuda/remuda/auth/postgres), as the server command does, or use an SQLite database (sqlite:PATH).",
		from(env, "database"))
}

// Start creates the SQLite database if it is missing: it runs this
// binary's `migrate --database` in a child process, which creates the
// file and brings its schema to this build's version, and logs when it
// created one. A child, so that the master does not keep SQLite's memory
// for the rest of its life (3.3 MiB of RSS). A PostgreSQL database is left
// to the workers, which migrate it as they open it.
func (m *Module) Start(env module.Env) error {
	s, err := settingsOf(env)
	if err != nil {
		return err
	}
	path, ok := strings.CutPrefix(s.Database, "sqlite:")
	if !ok {
		return nil
	}
	_, err = os.Stat(path)
	missing := errors.Is(err, os.ErrNotExist)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	out, err := exec.Command(exe, "migrate", "--database", s.Database).CombinedOutput()
	if err != nil {
		return fmt.Errorf("migrate %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	if missing {
		env.Logger.Warn("database created", zap.String("path", path))
	}
	return nil
}

// Boot opens the store and builds the Auth the module serves with. A dev
// server started without a secret key makes up a random one, which it
// keeps in SERVER_SECRET_KEY so that a code reload (an exec of the rebuilt
// binary) keeps the tokens issued before it. close closes the store:
// PostgreSQL then sees its connections end.
func (m *Module) Boot(env module.Env) (close func() error, err error) {
	s, err := settingsOf(env)
	if err != nil {
		return nil, err
	}
	if !env.Prod && s.SecretKey == "" && strings.HasPrefix(s.JWTAlgorithm, "HS") {
		b := make([]byte, 48)
		rand.Read(b)
		s.SecretKey = base64.RawURLEncoding.EncodeToString(b)
		os.Setenv("SERVER_SECRET_KEY", s.SecretKey)
		env.Logger.Warn("no secret key given: using a random one, so every token dies with this process; set SERVER_SECRET_KEY to keep them")
	}
	store, err := m.openServingStore(s, env)
	if err != nil {
		return nil, err
	}
	cfg := s.config(env.Logger, env.CountLogin)
	cfg.Claims = m.Claims
	a, err := New(cfg, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	m.auth = a
	return store.Close, nil
}

// config is the Config of s, with log lines for its hooks; logins are
// counted with count, if non-nil. What a client chose (the username, the
// path) is clipped in those lines (serve.Clipped), so that no request makes
// the log grow by more than that.
func (s settings) config(log *zap.Logger, count func(outcome string)) Config {
	var public []string
	for f := range strings.SplitSeq(s.JWTPublicKeys, ",") {
		if f = strings.TrimSpace(f); f != "" {
			public = append(public, f)
		}
	}
	return Config{
		Tokens: TokenConfig{
			Algorithm:       s.JWTAlgorithm,
			SecretKey:       s.SecretKey,
			PrivateKeyFile:  s.JWTPrivateKey,
			PublicKeyFiles:  public,
			Issuer:          s.JWTIssuer,
			Audience:        s.JWTAudience,
			Leeway:          s.JWTLeeway,
			AccessLifetime:  s.AccessTokenLifetime,
			RefreshLifetime: s.RefreshTokenLifetime,
		},
		RotateRefreshTokens:    s.RotateRefreshTokens,
		BlacklistAfterRotation: s.BlacklistAfterRotation,
		OnLogin: func(r *http.Request, username string, outcome LoginOutcome) {
			if count != nil {
				count(string(outcome))
			}
			if outcome == LoginFailed {
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

// openStore opens the store named by the database setting of s: SQLite,
// or PostgreSQL through m.Postgres for any other URL (the server allows
// only postgres:// URLs). It is the commands' (createuser, importusers,
// …): a missing SQLite file is created. Opening a PostgreSQL store
// connects and migrates: a worker that boots while the database is down
// fails its boot, and the master retries it with backoff.
func (m *Module) openStore(s settings, env module.Env) (Store, error) {
	if path, ok := strings.CutPrefix(s.Database, "sqlite:"); ok {
		return OpenSQLite(path)
	}
	if msg := m.driverProblem(s, env); msg != "" {
		return nil, errors.New(msg)
	}
	return m.Postgres.Open(context.Background(), s.Database)
}

// openServingStore opens the store of a serving process. A prod worker
// never creates an SQLite database: the file must exist and hold the
// schema (the master makes it as it starts, see Start; `server migrate`
// too), so that a database removed under a running server is not replaced
// by an empty one at the next HUP or by a replaced worker; the dev server
// creates it. The SQLite store checks that its path still names the file
// it opened, and the log hears at once when it does not (see SQLite): the
// auth endpoints then answer 503.
func (m *Module) openServingStore(s settings, env module.Env) (Store, error) {
	path, ok := strings.CutPrefix(s.Database, "sqlite:")
	if !ok {
		return m.openStore(s, env)
	}
	log := env.Logger
	st, err := OpenSQLiteConfig(SQLiteConfig{
		Path:      path,
		MustExist: env.Prod,
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
	if errors.Is(err, ErrNoDatabase) {
		return nil, fmt.Errorf("%w; a running production server does not create its database: restore it, or create an empty one with `server migrate --database %s`, then HUP", err, s.Database)
	}
	return st, err
}
