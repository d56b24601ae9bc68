package auth

import (
	"context"
	"errors"
	"strconv"
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
	// RecordLogin records a successful login, in one transaction: the
	// user's last login, a rehashed password if any, the login's refresh
	// token, and the forgetting of its attempt and the earlier ones (see
	// Login). Nothing is written if any of it fails; ErrNotFound if no
	// such user.
	RecordLogin(ctx context.Context, l Login) error

	// AddRefresh records a refresh token as outstanding.
	AddRefresh(ctx context.Context, t RefreshToken) error
	// ConsumeRefresh marks an outstanding refresh token as used, once: of
	// concurrent calls for one jti, exactly one gets ConsumeOK. It returns
	// ConsumeReused (with the family) for a token consumed before, and
	// ConsumeRevoked for a blacklisted token or a token of a revoked
	// family; ConsumeUnknown when no such token was recorded.
	ConsumeRefresh(ctx context.Context, jti string, now time.Time) (ConsumeResult, RefreshToken, error)
	// RotateRefresh is a refresh with rotation, in one transaction:
	// presented is recorded if the store has never seen it (adopted as the
	// first token of the family presented.Family), then consumed as
	// ConsumeRefresh does, and if that gives ConsumeOK, next is recorded
	// as outstanding in the presented token's family (next.Family is
	// ignored). It returns what ConsumeRefresh would, never
	// ConsumeUnknown. Nothing is written unless the result is ConsumeOK
	// and every write succeeds: a rotation that fails leaves the presented
	// token as it was, so that the client's retry is not taken for a
	// replay.
	RotateRefresh(ctx context.Context, presented, next RefreshToken, now time.Time) (ConsumeResult, RefreshToken, error)
	// Blacklist revokes one refresh token; ErrNotFound if unknown.
	Blacklist(ctx context.Context, jti string, now time.Time) error
	// RefreshState tells whether a refresh token is usable (ConsumeOK),
	// already consumed (ConsumeReused), revoked (ConsumeRevoked) or unknown.
	RefreshState(ctx context.Context, jti string) (ConsumeResult, error)
	// RevokeFamily revokes every token of a family.
	RevokeFamily(ctx context.Context, family string, now time.Time) error
	// FlushExpired deletes refresh tokens (and blacklist entries) expired
	// before now, and login attempts older than now -
	// LoginFailureRetention; it returns how many tokens went.
	FlushExpired(ctx context.Context, now time.Time) (int, error)

	// ReserveLogin counts an attempt to log in as username from addr at
	// now, before its password is checked, atomically with the check of
	// the limit: if fewer than limit attempts for username from addr are
	// counted at or after since, it counts this one and returns its id
	// (positive, increasing); otherwise it counts nothing and returns 0
	// and the oldest of the attempts counted. Of concurrent calls, from
	// any number of processes, at most limit get an id. An attempt stays
	// counted (it is the record of a failed login) until RecordLogin or
	// ReleaseLogin forgets it, or FlushExpired drops it.
	ReserveLogin(ctx context.Context, username, addr string, now, since time.Time, limit int) (attempt int64, oldest time.Time, err error)
	// ReleaseLogin forgets one attempt that ReserveLogin counted, one
	// that must not count: it ended without a verdict on its password (no
	// hashing slot came free, the store failed). Forgetting an attempt
	// forgotten before is not an error.
	ReleaseLogin(ctx context.Context, attempt int64) error
	// LoginFailures counts the attempts for username from addr counted
	// at or after since (failed logins, and attempts still being checked),
	// and returns the oldest of them.
	LoginFailures(ctx context.Context, username, addr string, since time.Time) (n int, oldest time.Time, err error)

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

// Login is a successful login, as RecordLogin records it.
type Login struct {
	UserID string
	At     time.Time // the user's last login from now on
	// Username and Addr are the login's as ReserveLogin counted it, and
	// Attempt the id it returned: the attempts for Username from Addr up
	// to Attempt, this one and those counted before it, are forgotten.
	// Attempts counted after it (logins still being checked) stay counted.
	// If Attempt is 0, none is forgotten.
	Username, Addr string
	Attempt        int64
	// PasswordHash, if not empty, replaces the user's password hash: a
	// hash of the same password with current parameters (a rehash).
	PasswordHash string
	// Refresh, if its JTI is not empty, is recorded as outstanding, as
	// AddRefresh does.
	Refresh RefreshToken
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

// String is the constant's name, such as "ConsumeOK".
func (r ConsumeResult) String() string {
	switch r {
	case ConsumeUnknown:
		return "ConsumeUnknown"
	case ConsumeOK:
		return "ConsumeOK"
	case ConsumeReused:
		return "ConsumeReused"
	case ConsumeRevoked:
		return "ConsumeRevoked"
	}
	return "ConsumeResult(" + strconv.Itoa(int(r)) + ")"
}

// Errors of a Store. Callers test for them with errors.Is: a store wraps
// them with what it was doing.
var (
	ErrNotFound   = errors.New("auth: not found")
	ErrUserExists = errors.New("auth: user exists")
	// ErrUnavailable means the database could not be reached or cannot
	// be written now: a refused or reset connection, a server shutting
	// down, a connect timeout; a disk full, an I/O error, a read-only
	// file, database or transaction, a missing privilege, a database
	// locked past its busy timeout; an SQLite file removed or replaced
	// under the running store. The request may succeed if tried again
	// later, and the write that failed was not made: a store method that
	// fails writes nothing. The handlers answer it 503 with Retry-After.
	ErrUnavailable = errors.New("auth: store unavailable")
)
