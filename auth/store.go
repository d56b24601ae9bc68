package auth

import (
	"context"
	"errors"
	"time"
)

// Store keeps what must be shared by every process that serves the API:
// users, refresh tokens (by jti, never the raw token) and their families,
// the blacklist, and failed logins. SQLite serves the workers of one host;
// PostgreSQL several hosts. Every method is safe for concurrent use, also
// from several processes at once.
type Store interface {
	// CreateUser adds a user; ErrUserExists if the username is taken.
	CreateUser(ctx context.Context, username, passwordHash string, active bool) (User, error)
	// UserByUsername and UserByID return ErrNotFound for no such user.
	UserByUsername(ctx context.Context, username string) (User, error)
	UserByID(ctx context.Context, id string) (User, error)
	// SetPassword replaces a user's password hash with another of the same
	// password (a rehash at login); ErrNotFound if no such user.
	SetPassword(ctx context.Context, id, passwordHash string) error
	// ChangePassword sets a new password, records when, and blacklists
	// every refresh token of the user; access tokens issued before then
	// are refused by the handlers. ErrNotFound if no such user.
	ChangePassword(ctx context.Context, id, passwordHash string, at time.Time) error
	// SetActive activates or deactivates a user.
	SetActive(ctx context.Context, id string, active bool) error
	// ImportUsers writes users with their own ids, in one transaction:
	// a user whose id exists is updated, any other is created; nothing is
	// written if one fails (ErrUserExists for a username that another id
	// holds). It returns how many were created and updated.
	ImportUsers(ctx context.Context, users []User) (created, updated int, err error)
	// RecordLogin sets a user's last login time; ErrNotFound if no such
	// user.
	RecordLogin(ctx context.Context, id string, at time.Time) error

	// AddRefresh records a refresh token as outstanding.
	AddRefresh(ctx context.Context, t RefreshToken) error
	// ConsumeRefresh marks an outstanding refresh token as used, once: of
	// concurrent calls for one jti, exactly one gets ConsumeOK. It returns
	// ConsumeReused (with the family) for a token consumed before, and
	// ConsumeRevoked for a blacklisted token or a token of a revoked
	// family; ConsumeUnknown when no such token was recorded.
	ConsumeRefresh(ctx context.Context, jti string, now time.Time) (ConsumeResult, RefreshToken, error)
	// Blacklist revokes one refresh token; ErrNotFound if unknown.
	Blacklist(ctx context.Context, jti string, now time.Time) error
	// RefreshState tells whether a refresh token is usable (ConsumeOK),
	// already consumed (ConsumeReused), revoked (ConsumeRevoked) or unknown.
	RefreshState(ctx context.Context, jti string) (ConsumeResult, error)
	// RevokeFamily revokes every token of a family.
	RevokeFamily(ctx context.Context, family string, now time.Time) error
	// FlushExpired deletes refresh tokens (and blacklist entries) expired
	// before now, and failed-login records older than now - window; it
	// returns how many tokens went.
	FlushExpired(ctx context.Context, now time.Time) (int, error)

	// LoginFailures counts the failed logins for username from addr at or
	// after since, and returns the oldest of them.
	LoginFailures(ctx context.Context, username, addr string, since time.Time) (n int, oldest time.Time, err error)
	// RecordLoginFailure records a failed login.
	RecordLoginFailure(ctx context.Context, username, addr string, at time.Time) error
	// ResetLoginFailures forgets the failed logins for username from addr.
	ResetLoginFailures(ctx context.Context, username, addr string) error

	// Close releases the store.
	Close() error
}

// User is an account that can obtain tokens.
type User struct {
	ID           string // decimal, as simplejwt's user_id claim
	Username     string
	PasswordHash string // PHC argon2id, or Django pbkdf2_sha256 until rehashed
	Active       bool
	LastLogin    time.Time // zero if never
	DateJoined   time.Time
	// PasswordChangedAt is when ChangePassword last ran (zero if never):
	// tokens issued before it are refused.
	PasswordChangedAt time.Time
}

// RefreshToken is the store's record of a refresh token: its jti and
// family, never the token itself.
type RefreshToken struct {
	JTI       string
	Family    string // the jti of the first token of the login that began it
	UserID    string
	ExpiresAt time.Time
}

// ConsumeResult is the state of a refresh token.
type ConsumeResult int

const (
	ConsumeUnknown ConsumeResult = iota // never recorded (or flushed)
	ConsumeOK                           // outstanding, now consumed (or, from RefreshState, usable)
	ConsumeReused                       // consumed before: a replay
	ConsumeRevoked                      // blacklisted, or its family revoked
)

// Errors of a Store. Callers test for them with errors.Is: a store wraps
// them with what it was doing.
var (
	ErrNotFound   = errors.New("auth: not found")
	ErrUserExists = errors.New("auth: user exists")
	// ErrUnavailable means the database could not be reached (a refused or
	// reset connection, a server shutting down, a connect timeout, a
	// database locked past its busy timeout): the request may succeed if
	// tried again later. The handlers answer it 503 with Retry-After.
	ErrUnavailable = errors.New("auth: store unavailable")
)
