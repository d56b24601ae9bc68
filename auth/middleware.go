package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
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
// does (split on whitespace; exactly two parts), except that the scheme is
// matched case-insensitively as RFC 9110 §11.1 says ("bearer x" is a
// credential, where simplejwt ignores it). ok is false when the header is
// absent or of another scheme; malformed is true for "Bearer" alone or with
// more than one value.
func bearer(header string) (token string, ok, malformed bool) {
	parts := strings.Fields(header)
	if len(parts) == 0 || !strings.EqualFold(parts[0], "Bearer") {
		return "", false, false
	}
	if len(parts) != 2 {
		return "", true, true
	}
	return parts[1], true, false
}

// serveProtected authenticates r and serves h with the user in its context.
func (a *Auth) serveProtected(h http.Handler, w http.ResponseWriter, r *http.Request) {
	raw, ok, malformed := bearer(r.Header.Get("Authorization"))
	switch {
	case !ok:
		unauthorized(w, errNoCredentials)
		return
	case malformed:
		unauthorized(w, errBadHeader)
		return
	}
	claims, err := a.tokens.Parse(raw, "access", a.cfg.Now())
	if err != nil {
		unauthorized(w, notValidForAnyType(err))
		return
	}
	user, err := a.store.UserByID(r.Context(), claims.UserID)
	switch {
	case errors.Is(err, ErrNotFound):
		unauthorized(w, errUserNotFound)
		return
	case err != nil:
		a.serverError(w, r, err)
		return
	case !user.Active:
		unauthorized(w, errUserInactive)
		return
	case issuedBeforeChange(user, claims.IssuedAt):
		unauthorized(w, errPasswordChanged)
		return
	}
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
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
