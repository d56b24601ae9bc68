package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bodies of the 401s at protected routes, as simplejwt's JWTAuthentication.
var (
	errNoCredentials   = detail{Detail: "Authentication credentials were not provided."}
	errBadHeader       = detailCode{Detail: "Authorization header must contain two space-delimited values", Code: "bad_authorization_header"}
	errUserNotFound    = detailCode{Detail: "User not found", Code: "user_not_found"}
	errUserInactive    = detailCode{Detail: "User is inactive", Code: "user_inactive"}
	errPasswordChanged = detailCode{Detail: "The user's password has been changed.", Code: "password_changed"}
)

// bearer extracts the token from an Authorization header the way simplejwt
// does (split on white space; exactly two parts), except that the scheme is
// matched case-insensitively as RFC 9110 §11.1 says ("bearer x" is a
// credential, where simplejwt ignores it). ok is false when the header is
// absent or of another scheme; malformed is true for "Bearer" alone or with
// more than one value. It splits without allocating: it runs per request.
//
// Only SP and HTAB separate: simplejwt splits the header's bytes with
// Python's bytes.split(), whose white space is ASCII's, and of that only
// SP and HTAB reach a handler (net/http answers 400 to a header value with
// another control character). A non-ASCII space such as U+00A0 or U+3000
// is part of a field, as it is to simplejwt: "Bearer\u00a0<token>" is one
// field, of no scheme we know.
func bearer(header string) (token string, ok, malformed bool) {
	scheme, rest := nextField(header)
	if scheme == "" || !strings.EqualFold(scheme, "Bearer") {
		return "", false, false
	}
	token, rest = nextField(rest)
	if extra, _ := nextField(rest); token == "" || extra != "" {
		return "", true, true
	}
	return token, true, false
}

// nextField returns the first field of s separated by SP and HTAB, and
// what follows it.
func nextField(s string) (field, rest string) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	s = s[i:]
	i = 0
	for i < len(s) && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	return s[:i], s[i:]
}

// serveProtected authenticates r and serves h with the user in its context.
func (a *Auth) serveProtected(h http.Handler, w http.ResponseWriter, r *http.Request) {
	var header string
	switch values := r.Header["Authorization"]; len(values) {
	case 0:
	case 1:
		header = values[0]
	default:
		// Two headers: proxies and servers disagree on which counts (the
		// first, the last, or both joined with a comma, as gunicorn does
		// for simplejwt), so none does.
		unauthorized(w, errBadHeader)
		return
	}
	raw, ok, malformed := bearer(header)
	switch {
	case !ok:
		unauthorized(w, errNoCredentials)
		return
	case malformed:
		unauthorized(w, errBadHeader)
		return
	}
	claims, err := a.verifyAccess(raw)
	if err != nil {
		unauthorized(w, notValidForAnyType(err))
		return
	}
	user, err := a.protectedUser(r, claims.UserID)
	switch {
	case errors.Is(err, ErrNotFound):
		unauthorized(w, errUserNotFound)
		return
	case err != nil:
		a.storeError(w, r, err)
		return
	case !user.Active:
		unauthorized(w, errUserInactive)
		return
	case issuedBeforeChange(*user, claims.IssuedAt):
		unauthorized(w, errPasswordChanged)
		return
	}
	var who any = user
	if claims.Custom != nil {
		who = &principal{user: user, custom: claims.Custom}
	}
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, who)))
}

// verifyAccess parses an access token, or finds it verified before; see
// verifiedCache.
func (a *Auth) verifyAccess(raw string) (Claims, error) {
	now := a.cfg.Now()
	if claims, ok := a.access.get(raw, now); ok {
		return claims, nil
	}
	claims, err := a.tokens.Parse(raw, "access", now)
	if err == nil {
		a.access.put(raw, claims, now)
	}
	return claims, err
}

// storeRetryAfter is how long Required leaves the store alone after it was
// found unavailable, serving from the cache (or the token) meanwhile.
const storeRetryAfter = time.Second

// protectedUser returns what Required needs of the user id: from the cache
// while fresh, else from the store; from a stale entry, or the token alone
// (a User with ID and Active set), when the store is unavailable. See
// Required.
func (a *Auth) protectedUser(r *http.Request, id string) (*User, error) {
	c := a.users
	if c == nil {
		u, err := a.store.UserByID(r.Context(), id)
		return slimUser(u), err
	}
	now := time.Now() // the monotonic clock, not Config.Now: a TTL is a duration
	cached, fresh, found := c.get(id, now)
	if fresh {
		return cached, nil
	}
	if !c.down(now) {
		u, err := a.store.UserByID(r.Context(), id)
		switch {
		case err == nil:
			slim := slimUser(u)
			c.put(id, slim, now)
			return slim, nil
		case errors.Is(err, ErrNotFound):
			c.drop(id)
			return nil, err
		case !errors.Is(err, ErrUnavailable):
			return nil, err
		}
		c.markDown(now)
	}
	if found {
		return cached, nil
	}
	return &User{ID: id, Active: true}, nil
}

// slimUser is what Required keeps of a user, and hands to h: never
// changed once made, so that the cache and every request may share it.
func slimUser(u User) *User {
	return &User{ID: u.ID, Username: u.Username, Active: u.Active, PasswordChangedAt: u.PasswordChangedAt}
}

// userCacheMax bounds the entries of a userCache. Past it, expired entries
// go first, then an arbitrary eighth of the rest.
const userCacheMax = 10_000

// userCache holds, per process, the users Required has read, by id.
type userCache struct {
	ttl       time.Duration
	downUntil atomic.Int64 // UnixNano before which the store is not asked
	mu        sync.RWMutex
	m         map[string]userEntry
}

type userEntry struct {
	user *User
	read time.Time
}

func newUserCache(ttl time.Duration) *userCache {
	return &userCache{ttl: ttl, m: make(map[string]userEntry)}
}

// get returns the entry of id, whether it is fresh, and whether there is
// one.
func (c *userCache) get(id string, now time.Time) (u *User, fresh, found bool) {
	c.mu.RLock()
	e, found := c.m[id]
	c.mu.RUnlock()
	return e.user, found && now.Sub(e.read) < c.ttl, found
}

func (c *userCache) put(id string, u *User, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= userCacheMax {
		c.evictLocked(now)
	}
	c.m[id] = userEntry{user: u, read: now}
}

// evictLocked makes room: expired entries go (they are what an outage
// would fall back on, but a full cache must shrink), and if none had
// expired, an arbitrary eighth of the entries (map order is random).
func (c *userCache) evictLocked(now time.Time) {
	for id, e := range c.m {
		if now.Sub(e.read) >= c.ttl {
			delete(c.m, id)
		}
	}
	for id := range c.m {
		if len(c.m) < userCacheMax*7/8 {
			break
		}
		delete(c.m, id)
	}
}

func (c *userCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// down reports whether the store was found unavailable less than
// storeRetryAfter ago.
func (c *userCache) down(now time.Time) bool {
	return now.UnixNano() < c.downUntil.Load()
}

func (c *userCache) markDown(now time.Time) {
	c.downUntil.Store(now.Add(storeRetryAfter).UnixNano())
}

// notValidForAnyType is simplejwt's body for a bad access token.
func notValidForAnyType(err error) any {
	msg := ErrTokenInvalid.Message
	var te *TokenError
	if errors.As(err, &te) {
		msg = te.Message
	}
	type message struct {
		TokenClass string `json:"token_class"`
		TokenType  string `json:"token_type"`
		Message    string `json:"message"`
	}
	return struct {
		Detail   string    `json:"detail"`
		Code     string    `json:"code"`
		Messages []message `json:"messages"`
	}{"Given token not valid for any token type", "token_not_valid", []message{{"AccessToken", "access", msg}}}
}
