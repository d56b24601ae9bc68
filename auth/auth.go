// Package auth is a JWT authentication module compatible with
// djangorestframework-simplejwt: the token endpoints (obtain, refresh,
// verify, blacklist) with simplejwt's bodies and status codes, the
// Required middleware for protected routes, password hashing (argon2id,
// and Django's pbkdf2_sha256 until rehashed), and a Store of users and
// refresh tokens shared by every worker process: SQLite for the workers of
// one host (OpenSQLite), PostgreSQL for several hosts (OpenPostgres).
//
// # When the store is unavailable
//
// A store returns an error matching ErrUnavailable when its database
// cannot be reached: PostgreSQL down, restarting, refusing or dropping
// connections, or past its connect timeout; an SQLite file locked past
// its busy timeout or unreadable. The token endpoints then answer 503 with
// "Retry-After: 5" and a body in simplejwt's shape,
//
//	{"detail": "The authentication service is temporarily unavailable. Try again shortly.", "code": "service_unavailable"}
//
// and pass the error to Config.OnError; any other store error is a 500
// {"detail": "A server error occurred."}. Neither body tells the error.
// Protected routes keep serving valid access tokens through an outage,
// from a per-process cache of users and, for users not in it, from the
// token alone: see Required and Config.UserCacheTTL. Nothing needs to be
// reopened once the database is back.
package auth

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// Config configures an Auth. Its zero value issues HS256 tokens (which
// needs Tokens.SecretKey) without rotation; the server turns rotation and
// blacklist-after-rotation on by default.
type Config struct {
	Tokens TokenConfig
	// RotateRefreshTokens makes /refresh/ answer a new refresh token too
	// (simplejwt's ROTATE_REFRESH_TOKENS).
	RotateRefreshTokens bool
	// BlacklistAfterRotation makes a rotated-out refresh token unusable; it
	// also turns on reuse detection: presenting one again revokes every
	// token of its family (RFC 9700 §4.14.2).
	BlacklistAfterRotation bool

	// OnLogin, if non-nil, is called once per login attempt at the obtain
	// endpoint (POST /api/token/), after the outcome is known, with the
	// username as given (trimmed) and never the password. A request
	// refused before it names a username (400, 405, 413, 415) is not a
	// login attempt.
	OnLogin func(r *http.Request, username string, outcome LoginOutcome)
	// OnTokenReuse, if non-nil, is called when a rotated-out refresh token
	// is presented again and its family has been revoked.
	OnTokenReuse func(r *http.Request, userID, family string)
	// OnError, if non-nil, receives store failures; the client gets a 500
	// that does not echo them.
	OnError func(r *http.Request, err error)
	// Now, if non-nil, is the clock (tests).
	Now func() time.Time

	// UserCacheTTL is how long Required trusts what it read of a user
	// (active or not, when the password changed, the username) before it
	// reads the store again. Each process caches on its own, so a
	// deactivation or a password change takes effect at protected routes
	// within UserCacheTTL in every worker of every host; the token
	// endpoints always read the store. If zero, DefaultUserCacheTTL is
	// used; negative disables the cache (every request reads the store).
	//
	// The cache also carries protected routes through a store outage
	// (ErrUnavailable): see Required.
	UserCacheTTL time.Duration
}

// DefaultUserCacheTTL is Config.UserCacheTTL's default: short enough that
// locking a user out takes effect at once to a person, long enough that a
// busy client's requests cost one store read a second.
const DefaultUserCacheTTL = time.Second

// LoginOutcome is how a login attempt ended, as Config.OnLogin reports it.
type LoginOutcome string

// Login outcomes. LoginFailed covers a wrong password, an unknown user and
// an inactive one alike, as the client's answer does.
const (
	LoginSucceeded   LoginOutcome = "success"     // 200, a token pair
	LoginFailed      LoginOutcome = "invalid"     // 401
	LoginThrottled   LoginOutcome = "throttled"   // 429: too many failures
	LoginUnavailable LoginOutcome = "unavailable" // 503: the store could not be reached
	LoginError       LoginOutcome = "error"       // 500: another store or signing error
)

// Login throttling: after ThrottleFailures failed logins for one username
// from one address within ThrottleWindow, logins are answered 429 until
// the oldest of them leaves the window. A success resets the count.
const (
	ThrottleFailures = 5
	ThrottleWindow   = 15 * time.Minute
)

// Auth serves simplejwt's token endpoints and guards protected routes.
type Auth struct {
	cfg    Config
	tokens *Tokens
	store  Store
	users  *userCache // nil when Config.UserCacheTTL < 0
	access *verifiedCache
}

// New returns an Auth that signs with cfg.Tokens and keeps its state in
// store. Its key checks are NewTokens's.
func New(cfg Config, store Store) (*Auth, error) {
	tokens, err := NewTokens(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Auth{cfg: cfg, tokens: tokens, store: store, access: newVerifiedCache(cfg.Tokens.Leeway)}
	switch {
	case cfg.UserCacheTTL == 0:
		a.users = newUserCache(DefaultUserCacheTTL)
	case cfg.UserCacheTTL > 0:
		a.users = newUserCache(cfg.UserCacheTTL)
	}
	return a, nil
}

// Tokens returns the signer and verifier.
func (a *Auth) Tokens() *Tokens { return a.tokens }

// installed is the Auth that the package-level Required uses.
var installed atomic.Pointer[Auth]

// Install makes a the Auth behind the package-level Required in this
// process. The server installs the Auth it boots; a program with one Auth
// need not call it.
func (a *Auth) Install() { installed.Store(a) }

// Required protects h: the request needs "Authorization: Bearer <access
// token>" of an active user, whom h finds with UserFrom. It uses the Auth
// installed in this process when the request arrives (see Install), so it
// can wrap handlers before the server has booted its Auth; without one,
// requests get 500.
//
// The token is verified on its own (signature, exp, type); the user's
// state comes from the store, through a per-process cache that keeps it
// for Config.UserCacheTTL (see there). When the store is unavailable
// (ErrUnavailable), Required keeps protected routes serving: it uses the
// user's cached state however old, and for a user it has no entry of, it
// trusts the verified token alone, as simplejwt's
// JWTStatelessUserAuthentication does, with a User built from the claims
// (ID and Active only). The trade-off: for as long as the outage lasts, a
// user deactivated, or whose password changed, since this process last read
// them keeps access until their access token expires (5 minutes by
// default); logins, refreshes and blacklisting need the store and answer
// 503 meanwhile. After a failed read, Required does not ask the store again
// for a second, so an outage costs no connect timeout per request. A
// negative UserCacheTTL turns all of this off: every request reads the
// store, and an outage answers 503.
func Required(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := installed.Load()
		if a == nil {
			writeJSON(w, http.StatusInternalServerError, detail{Detail: "Authentication is not configured."})
			return
		}
		a.serveProtected(h, w, r)
	})
}

// Required protects h with a, as the package-level Required does with the
// installed Auth.
func (a *Auth) Required(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.serveProtected(h, w, r) })
}

type userKey struct{}

// UserFrom returns the user a protected handler serves. Its ID, Username,
// Active and PasswordChangedAt are set; the other fields (the password
// hash above all) are zero: read the store for them. During a store outage
// a user Required has never seen has only ID and Active (see Required).
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(*User) // shared with the cache: handed out as a copy
	if !ok {
		return User{}, false
	}
	return *u, true
}

// CreateUser hashes password and adds the user to the store.
func CreateUser(ctx context.Context, store Store, username, password string) (User, error) {
	if username == "" {
		return User{}, errors.New("auth: empty username")
	}
	hash, err := HashPassword(password)
	if err != nil {
		return User{}, err
	}
	return store.CreateUser(ctx, username, hash, true)
}

// ChangePassword sets a user's new password: every refresh token of the
// user is blacklisted, and access tokens issued before now are refused
// ("The user's password has been changed.").
func ChangePassword(ctx context.Context, store Store, username, password string) error {
	u, err := store.UserByUsername(ctx, username)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return store.ChangePassword(ctx, u.ID, hash, time.Now())
}

// issuedBeforeChange reports whether a token issued at iat predates the
// user's last password change. Times are kept to the second, so a token
// issued in the second of the change still works.
func issuedBeforeChange(u User, iat time.Time) bool {
	return !u.PasswordChangedAt.IsZero() && iat.Before(u.PasswordChangedAt)
}
