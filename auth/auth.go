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

	// OnLoginFailed, if non-nil, is called after a failed login (wrong
	// password, unknown or inactive user), never with the password.
	OnLoginFailed func(r *http.Request, username string)
	// OnTokenReuse, if non-nil, is called when a rotated-out refresh token
	// is presented again and its family has been revoked.
	OnTokenReuse func(r *http.Request, userID, family string)
	// OnError, if non-nil, receives store failures; the client gets a 500
	// that does not echo them.
	OnError func(r *http.Request, err error)
	// Now, if non-nil, is the clock (tests).
	Now func() time.Time
}

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
	return &Auth{cfg: cfg, tokens: tokens, store: store}, nil
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

// UserFrom returns the user a protected handler serves.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
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
