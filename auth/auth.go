// Package auth is a JWT authentication module compatible with
// djangorestframework-simplejwt: the token endpoints (obtain, refresh,
// verify, blacklist) with simplejwt's bodies and status codes, the
// Required middleware for protected routes, password hashing (argon2id,
// and Django's pbkdf2_sha256 until rehashed), and a Store of users and
// refresh tokens shared by every worker process: SQLite for the workers of
// one host (OpenSQLite), PostgreSQL for several hosts (package
// auth/postgres). SQLite, the embedded default, is package auth's own;
// PostgreSQL's client (pgx) is linked only by a binary that imports
// auth/postgres, as one that sets Module.Postgres does.
//
// # When the store is unavailable
//
// A store returns an error matching ErrUnavailable when its database
// cannot be reached or cannot take a write: PostgreSQL down, restarting,
// refusing or dropping connections, past its connect timeout, read-only or
// refusing a privilege; an SQLite file locked past its busy timeout,
// unreadable, on a full disk, read-only, or removed or replaced under the
// server. A write that fails leaves nothing half-done (a refresh whose
// rotation fails leaves the presented token valid). The token endpoints
// then answer 503 with
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
//
// # Password changes
//
// ChangePassword refuses, from then on, every token issued before it: its
// refresh tokens are blacklisted, and any token whose iat is not after the
// second of the change gets 401 ("The user's password has been changed.").
// iat is whole seconds (simplejwt's epochs), so a token issued in the very
// second of the change cannot be told from one issued just before it: all
// of them are refused. So that no login issues such a token, ChangePassword
// returns only once its second has passed, and a login in the second of
// its user's change waits for the next one (under a second, once per
// change) before issuing. Hosts whose clocks differ by more than that
// margin can still disagree: keep them synchronised (NTP).
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
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

	// Claims, if non-nil, is called at each login (POST /api/token/) once
	// the password checked out, with the user (PasswordHash empty); the
	// claims it returns go into both tokens of the pair, as the claims
	// simplejwt's TokenObtainPairSerializer.get_token adds (a username,
	// roles). A refresh copies a refresh token's custom claims into the
	// access token it mints and into the rotated refresh token, as
	// simplejwt does, without calling Claims again: they hold for the
	// login's lifetime. Protected handlers read them with CustomClaims.
	//
	// A claim Remuda sets or checks itself (token_type, exp, iat, jti,
	// user_id, iss, aud, nbf) cannot be overridden: returning one of them
	// fails the login, as does an error, a value encoding/json cannot
	// encode, or claims that make a token longer than MaxTokenBytes. The
	// client then gets the 500 of a store error (503 if the error matches
	// ErrUnavailable) and OnError the error (ErrReservedClaim for a
	// reserved name); no token is issued. simplejwt's get_token may
	// overwrite anything; Remuda refuses loudly rather than drop silently,
	// so that the mistake shows at the first login.
	Claims func(ctx context.Context, u User) (map[string]any, error)

	// OnLogin, if non-nil, is called once per login attempt at the obtain
	// endpoint (POST /api/token/), after the outcome is known, with the
	// username as given (trimmed, so at most MaxUsernameLength characters)
	// and never the password. A request refused before it names a
	// username, or with a username or password over its limit (400, 405,
	// 413, 415), is not a login attempt.
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
	LoginUnavailable LoginOutcome = "unavailable" // 503: the store could not be reached, or password hashing stayed busy
	LoginError       LoginOutcome = "error"       // 500: another store or signing error
)

// Limits of the login fields, checked before any other work (400 with
// DRF's field error): a username longer than MaxUsernameLength characters
// (Unicode code points, Django's User.username max_length) never reaches
// the store or a log line, and a password longer than MaxPasswordBytes is
// never hashed.
const MaxUsernameLength = 150

// Login throttling: after ThrottleFailures attempts for one username from
// one address within ThrottleWindow, logins are answered 429 until the
// oldest of them leaves the window. An attempt is counted before its
// password is checked, in the same store operation that checks the limit
// (Store.ReserveLogin), so that of any number of concurrent attempts, on
// any number of processes, at most ThrottleFailures check a password. A
// failure stays counted; a success forgets its own attempt and those
// counted before it; an attempt that got no verdict (the store or the
// password hashing unavailable) is released; a 429 is not counted.
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

// Required protects h: the request needs one "Authorization: Bearer
// <access token>" header (two or more get bad_authorization_header) of an
// active user, whom h finds with UserFrom.
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
func (a *Auth) Required(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.serveProtected(h, w, r) })
}

type userKey struct{}

// principal is the context value of a request whose access token carries
// custom claims; without them the value is the *User alone, which costs
// no allocation.
type principal struct {
	user   *User
	custom map[string]any
}

// UserFrom returns the user a protected handler serves. Its ID, Username,
// Active and PasswordChangedAt are set; the other fields (the password
// hash above all) are zero: read the store for them. During a store outage
// a user Required has never seen has only ID and Active (see Required).
func UserFrom(ctx context.Context) (User, bool) {
	switch v := ctx.Value(userKey{}).(type) {
	case *User: // shared with the cache: handed out as a copy
		return *v, true
	case *principal:
		return *v.user, true
	}
	return User{}, false
}

// CustomClaims returns the custom claims of the access token a protected
// handler serves (see Config.Claims), nil if it has none. Values are as
// encoding/json decodes them (numbers as json.Number). The map is shared:
// do not modify it.
func CustomClaims(ctx context.Context) map[string]any {
	if p, ok := ctx.Value(userKey{}).(*principal); ok {
		return p.custom
	}
	return nil
}

// CreateUser hashes password and adds the user to the store. The username
// must be 1 to MaxUsernameLength characters, as the obtain endpoint takes.
func CreateUser(ctx context.Context, store Store, username, password string) (User, error) {
	switch n := utf8.RuneCountInString(username); {
	case username == "":
		return User{}, errors.New("auth: empty username")
	case n > MaxUsernameLength:
		return User{}, fmt.Errorf("auth: username of %d characters, over %d", n, MaxUsernameLength)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return User{}, err
	}
	return store.CreateUser(ctx, username, hash, true)
}

// ChangePassword sets a user's new password: every refresh token of the
// user is blacklisted, and every token issued before the change, or in
// its second, is refused ("The user's password has been changed."). It
// returns once that second has passed (or ctx is done), so that a login
// after it gets tokens that work: see the package documentation.
func ChangePassword(ctx context.Context, store Store, username, password string) error {
	u, err := store.UserByUsername(ctx, username)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	at := time.Now()
	if err := store.ChangePassword(ctx, u.ID, hash, at); err != nil {
		return err
	}
	return sleepCtx(ctx, time.Until(nextSecond(at)))
}

// issuedBeforeChange reports whether a token issued at iat is refused for
// the user's last password change: iat is whole seconds, so a token issued
// in the second of the change is refused with those issued before it. A
// token without iat (zero) is refused too.
func issuedBeforeChange(u User, iat time.Time) bool {
	return !u.PasswordChangedAt.IsZero() && iat.Unix() <= u.PasswordChangedAt.Unix()
}

// nextSecond is the start of the second after t's: the first instant whose
// tokens a password change at t does not refuse.
func nextSecond(t time.Time) time.Time {
	return time.Unix(t.Unix()+1, 0)
}

// sleepCtx waits for d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pair is a login's tokens.
type pair struct {
	refresh, access string
	claims          Claims // the refresh token's
}

// issuePair issues a login's pair for u at now, with Config.Claims's
// custom claims in both tokens. In the second of the user's last password
// change it first waits for the next second (see the package
// documentation), and issues then. An error of Config.Claims comes back
// wrapped, ErrReservedClaim for a reserved name.
func (a *Auth) issuePair(ctx context.Context, u User, now time.Time) (pair, error) {
	var custom map[string]any
	if a.cfg.Claims != nil {
		hookUser := u
		hookUser.PasswordHash = ""
		var err error
		if custom, err = a.cfg.Claims(ctx, hookUser); err != nil {
			return pair{}, fmt.Errorf("auth: Config.Claims for user %s: %w", u.ID, err)
		}
		if err := checkCustom(custom); err != nil {
			return pair{}, fmt.Errorf("auth: Config.Claims for user %s: %w", u.ID, err)
		}
	}
	if !u.PasswordChangedAt.IsZero() && now.Unix() <= u.PasswordChangedAt.Unix() {
		// At most a second: a change stamped later than that is another
		// host's clock running ahead, which waiting cannot mend.
		wait := min(nextSecond(u.PasswordChangedAt).Sub(now), time.Second)
		if err := sleepCtx(ctx, wait); err != nil {
			return pair{}, err
		}
		now = now.Add(wait)
	}
	return a.issue(u.ID, custom, now)
}

// issue signs a refresh and an access token for userID at now, both with
// the custom claims.
func (a *Auth) issue(userID string, custom map[string]any, now time.Time) (pair, error) {
	refresh, claims, err := a.tokens.issue(refreshType, userID, custom, now)
	if err != nil {
		return pair{}, err
	}
	access, _, err := a.tokens.issue(accessType, userID, custom, now)
	if err != nil {
		return pair{}, err
	}
	return pair{refresh: refresh, access: access, claims: claims}, nil
}
