package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// MaxBodyBytes caps the body of a token request, as Django's
// DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) does for DRF; a body announced
// larger is answered 413 before any of it is read, one that turns out
// larger after reading that much. Tokens and passwords are capped far
// lower on their own (MaxTokenBytes, MaxPasswordBytes).
const MaxBodyBytes = 2 << 20

// Mount registers the token endpoints under prefix (the default binary
// uses "/api/token"), each with and without its trailing slash, and the
// JWKS at /.well-known/jwks.json:
//
//	POST prefix/            obtain a pair
//	POST prefix/refresh/    a new access token (and refresh token, rotating)
//	POST prefix/verify/     check any token
//	POST prefix/blacklist/  revoke a refresh token
func (a *Auth) Mount(mux interface{ Handle(string, http.Handler) }, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	for path, h := range map[string]func(http.ResponseWriter, *http.Request, fields){
		"":           a.obtain,
		"/refresh":   a.refresh,
		"/verify":    a.verify,
		"/blacklist": a.blacklist,
	} {
		handler := tokenView(h)
		mux.Handle(prefix+path, handler)
		mux.Handle(prefix+path+"/{$}", handler)
	}
	mux.Handle("GET /.well-known/jwks.json", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(a.tokens.JWKS())
	}))
}

// tokenView is what every token endpoint shares: POST only, a capped
// body in JSON, form or multipart encoding.
func tokenView(h func(http.ResponseWriter, *http.Request, fields)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST, OPTIONS")
			writeJSON(w, http.StatusMethodNotAllowed, detail{Detail: fmt.Sprintf("Method %q not allowed.", r.Method)})
			return
		}
		f, status, body := readFields(w, r)
		if status != 0 {
			writeJSON(w, status, body)
			return
		}
		h(w, r, f)
	})
}

// fields are a request's top-level members: strings, or other JSON values
// kept raw so that a field of the wrong type gets its own error.
type fields map[string]any

// readFields decodes the body. On failure it returns DRF's status and body.
func readFields(w http.ResponseWriter, r *http.Request) (fields, int, any) {
	if r.ContentLength > MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	ctype := r.Header.Get("Content-Type")
	media, _, _ := mime.ParseMediaType(ctype)
	var f fields
	switch media {
	case "application/json":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			status, body := bodyError(err)
			return nil, status, body
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return fields{}, 0, nil
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil || dec.More() {
			return nil, http.StatusBadRequest, detail{Detail: "JSON parse error - " + jsonError(err)}
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, http.StatusBadRequest, nonField{[]string{"Invalid data. Expected a dictionary, but got " + pyType(v) + "."}}
		}
		f = obj
	case "application/x-www-form-urlencoded", "multipart/form-data":
		var err error
		if media == "multipart/form-data" {
			err = r.ParseMultipartForm(MaxBodyBytes)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			if status, body := bodyError(err); status == http.StatusRequestEntityTooLarge {
				return nil, status, body
			}
			return nil, http.StatusBadRequest, detail{Detail: "Malformed request."}
		}
		f = fields{}
		for k, v := range r.PostForm {
			f[k] = v[0]
		}
	case "":
		if r.ContentLength > 0 {
			return nil, http.StatusUnsupportedMediaType, detail{Detail: `Unsupported media type "" in request.`}
		}
		f = fields{}
	default:
		return nil, http.StatusUnsupportedMediaType, detail{Detail: fmt.Sprintf("Unsupported media type %q in request.", ctype)}
	}
	return f, 0, nil
}

var tooLarge = detail{Detail: fmt.Sprintf("Request body larger than %d bytes.", MaxBodyBytes)}

func bodyError(err error) (int, any) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, tooLarge
	}
	return http.StatusBadRequest, detail{Detail: "Malformed request."}
}

func jsonError(err error) string {
	if err == nil {
		return "extra data after the JSON value"
	}
	return err.Error()
}

// pyType names a JSON value's type as DRF's message does.
func pyType(v any) string {
	switch v := v.(type) {
	case []any:
		return "list"
	case string:
		return "str"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "int"
		}
		return "float"
	case bool:
		return "bool"
	default:
		return "NoneType"
	}
}

// strings returns the named string fields, or DRF's field errors (in the
// order of names) for those missing, null, blank or not strings. Numbers
// are taken as their text, as DRF's CharField does.
func (f fields) strings(names ...string) ([]string, fieldErrors) {
	var errs fieldErrors
	out := make([]string, len(names))
	for i, name := range names {
		v, present := f[name]
		var msg string
		switch v := v.(type) {
		case string:
			out[i] = v
			if strings.TrimSpace(v) == "" {
				msg = "This field may not be blank."
			}
		case json.Number:
			out[i] = v.String()
		case nil:
			msg = "This field is required."
			if present {
				msg = "This field may not be null."
			}
		default:
			msg = "Not a valid string."
		}
		if msg != "" {
			errs = append(errs, fieldError{name, msg})
		}
	}
	return out, errs
}

// obtain is POST /api/token/: a pair for a username and password.
func (a *Auth) obtain(w http.ResponseWriter, r *http.Request, f fields) {
	vals, errs := f.strings("username", "password")
	if errs != nil {
		writeJSON(w, http.StatusBadRequest, errs)
		return
	}
	// DRF's CharField trims the username; the password is never trimmed.
	username, password := strings.TrimSpace(vals[0]), vals[1]
	outcome := a.login(w, r, username, password)
	if a.cfg.OnLogin != nil {
		a.cfg.OnLogin(r, username, outcome)
	}
}

// login answers a login attempt and returns its outcome.
func (a *Auth) login(w http.ResponseWriter, r *http.Request, username, password string) LoginOutcome {
	ctx, now, addr := r.Context(), a.cfg.Now(), clientAddr(r)
	n, oldest, err := a.store.LoginFailures(ctx, username, addr, now.Add(-ThrottleWindow))
	if err != nil {
		return a.storeError(w, r, err)
	}
	if n >= ThrottleFailures {
		wait := int(oldest.Add(ThrottleWindow).Sub(now).Seconds() + 1)
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		writeJSON(w, http.StatusTooManyRequests, detail{Detail: fmt.Sprintf("Request was throttled. Expected available in %d seconds.", wait)})
		return LoginThrottled
	}

	user, ok, err := a.authenticate(r, username, password)
	if err != nil {
		return a.storeError(w, r, err)
	}
	if !ok {
		if err := a.store.RecordLoginFailure(ctx, username, addr, now); err != nil {
			return a.storeError(w, r, err)
		}
		unauthorized(w, detail{Detail: "No active account found with the given credentials"})
		return LoginFailed
	}
	if n > 0 {
		if err := a.store.ResetLoginFailures(ctx, username, addr); err != nil {
			return a.storeError(w, r, err)
		}
	}
	if err := a.store.RecordLogin(ctx, user.ID, now); err != nil {
		return a.storeError(w, r, err)
	}
	refresh, claims, err := a.tokens.Issue("refresh", user.ID, now)
	if err == nil {
		err = a.store.AddRefresh(ctx, RefreshToken{JTI: claims.JTI, Family: claims.JTI, UserID: user.ID, ExpiresAt: claims.ExpiresAt})
	}
	var access string
	if err == nil {
		access, _, err = a.tokens.Issue("access", user.ID, now)
	}
	if err != nil {
		return a.storeError(w, r, err)
	}
	writeJSON(w, http.StatusOK, struct {
		Refresh string `json:"refresh"`
		Access  string `json:"access"`
	}{refresh, access})
	return LoginSucceeded
}

// authenticate checks a password. Unknown, inactive and wrong-password
// logins cost the same (one password verification each) and look the same.
// A Django hash that matches is replaced by an argon2id one.
func (a *Auth) authenticate(r *http.Request, username, password string) (User, bool, error) {
	user, err := a.store.UserByUsername(r.Context(), username)
	if errors.Is(err, ErrNotFound) {
		dummyCheck(password)
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, err
	}
	ok, rehash, err := CheckPassword(password, user.PasswordHash)
	if err != nil || !ok || !user.Active {
		return User{}, false, nil
	}
	if rehash {
		hash, err := HashPassword(password)
		if err == nil {
			err = a.store.SetPassword(r.Context(), user.ID, hash)
		}
		if err != nil {
			return User{}, false, err
		}
	}
	return user, true, nil
}

// tokenField parses the token in field name as a token of type typ ("" for
// any). When the field is missing or the token refused, it answers 400 or
// 401 and returns false.
func (a *Auth) tokenField(w http.ResponseWriter, f fields, name, typ string) (Claims, bool) {
	vals, errs := f.strings(name)
	if errs != nil {
		writeJSON(w, http.StatusBadRequest, errs)
		return Claims{}, false
	}
	claims, err := a.tokens.Parse(vals[0], typ, a.cfg.Now())
	if err != nil {
		tokenNotValid(w, err)
		return Claims{}, false
	}
	return claims, true
}

// refresh is POST /api/token/refresh/.
func (a *Auth) refresh(w http.ResponseWriter, r *http.Request, f fields) {
	claims, ok := a.tokenField(w, f, "refresh", "refresh")
	if !ok {
		return
	}
	ctx, now := r.Context(), a.cfg.Now()
	user, err := a.store.UserByID(ctx, claims.UserID)
	if errors.Is(err, ErrNotFound) || err == nil && !user.Active {
		unauthorized(w, detail{Detail: "No active account found for the given token."})
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if issuedBeforeChange(user, claims.IssuedAt) {
		unauthorized(w, detail{Detail: errPasswordChanged.Detail})
		return
	}
	family, err := a.useRefresh(r, claims)
	if err != nil {
		if errors.Is(err, ErrTokenBlacklisted) {
			tokenNotValid(w, err)
			return
		}
		a.storeError(w, r, err)
		return
	}
	access, _, err := a.tokens.Issue("access", user.ID, now)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if !a.cfg.RotateRefreshTokens {
		writeJSON(w, http.StatusOK, struct {
			Access string `json:"access"`
		}{access})
		return
	}
	refresh, rc, err := a.tokens.Issue("refresh", user.ID, now)
	if err == nil {
		err = a.store.AddRefresh(ctx, RefreshToken{JTI: rc.JTI, Family: family, UserID: user.ID, ExpiresAt: rc.ExpiresAt})
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Access  string `json:"access"`
		Refresh string `json:"refresh"`
	}{access, refresh})
}

// useRefresh checks a refresh token against the store and, when rotated
// tokens are blacklisted, consumes it: of concurrent refreshes with one
// token, one wins; a token consumed before is a replay, and its whole
// family is revoked. It returns the family for the next token, or
// ErrTokenBlacklisted.
func (a *Auth) useRefresh(r *http.Request, c Claims) (string, error) {
	ctx, now := r.Context(), a.cfg.Now()
	if !(a.cfg.RotateRefreshTokens && a.cfg.BlacklistAfterRotation) {
		state, err := a.store.RefreshState(ctx, c.JTI)
		switch {
		case err != nil:
			return "", err
		case state == ConsumeRevoked:
			return "", ErrTokenBlacklisted
		case state == ConsumeUnknown:
			return c.JTI, a.adopt(r, c)
		}
		// Without blacklisting there is no reuse detection, so families
		// do not matter: the next token starts its own.
		return c.JTI, nil
	}
	result, rec, err := a.store.ConsumeRefresh(ctx, c.JTI, now)
	if err == nil && result == ConsumeUnknown {
		// Issued elsewhere with our key (a simplejwt deployment, or before
		// a flush): adopt it as the first token of a family, then consume.
		if err = a.adopt(r, c); err == nil {
			result, rec, err = a.store.ConsumeRefresh(ctx, c.JTI, now)
		}
	}
	switch {
	case err != nil:
		return "", err
	case result == ConsumeOK:
		return rec.Family, nil
	case result == ConsumeReused:
		if err := a.store.RevokeFamily(ctx, rec.Family, now); err != nil {
			return "", err
		}
		if a.cfg.OnTokenReuse != nil {
			a.cfg.OnTokenReuse(r, c.UserID, rec.Family)
		}
	}
	return "", ErrTokenBlacklisted
}

// adopt records a valid refresh token the store has never seen.
func (a *Auth) adopt(r *http.Request, c Claims) error {
	return a.store.AddRefresh(r.Context(), RefreshToken{JTI: c.JTI, Family: c.JTI, UserID: c.UserID, ExpiresAt: c.ExpiresAt})
}

// verify is POST /api/token/verify/: 200 {} for any valid token that is
// not blacklisted.
func (a *Auth) verify(w http.ResponseWriter, r *http.Request, f fields) {
	claims, ok := a.tokenField(w, f, "token", "")
	if !ok {
		return
	}
	if claims.TokenType == "refresh" {
		state, err := a.store.RefreshState(r.Context(), claims.JTI)
		if err != nil {
			a.storeError(w, r, err)
			return
		}
		if state == ConsumeRevoked || state == ConsumeReused && a.cfg.BlacklistAfterRotation {
			tokenNotValid(w, ErrTokenBlacklisted)
			return
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// blacklist is POST /api/token/blacklist/: revoke a refresh token (logout).
func (a *Auth) blacklist(w http.ResponseWriter, r *http.Request, f fields) {
	claims, ok := a.tokenField(w, f, "refresh", "refresh")
	if !ok {
		return
	}
	ctx, now := r.Context(), a.cfg.Now()
	state, err := a.store.RefreshState(ctx, claims.JTI)
	switch {
	case err != nil:
		a.storeError(w, r, err)
		return
	case state == ConsumeRevoked, state == ConsumeReused && a.cfg.BlacklistAfterRotation:
		tokenNotValid(w, ErrTokenBlacklisted)
		return
	case state == ConsumeUnknown:
		err = a.adopt(r, claims)
	}
	if err == nil {
		err = a.store.Blacklist(ctx, claims.JTI, now)
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// clientAddr is the address a login is throttled by: the peer's IP.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Response bodies, in simplejwt's and DRF's shapes.
type (
	detail struct {
		Detail string `json:"detail"`
	}
	detailCode struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}
	nonField struct {
		Errors []string `json:"non_field_errors"`
	}
	fieldError  struct{ name, msg string }
	fieldErrors []fieldError // {"<field>": ["<message>"]}, in field order
)

func (fe fieldErrors) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range fe {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(e.name)
		msg, _ := json.Marshal([]string{e.msg})
		b.Write(name)
		b.WriteByte(':')
		b.Write(msg)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// tokenNotValid answers simplejwt's 401 for a refused token.
func tokenNotValid(w http.ResponseWriter, err error) {
	msg := ErrTokenInvalid.Message
	var te *TokenError
	if errors.As(err, &te) {
		msg = te.Message
	}
	unauthorized(w, detailCode{Detail: msg, Code: "token_not_valid"})
}

// unauthorized answers 401 with the Bearer challenge every 401 carries.
func unauthorized(w http.ResponseWriter, body any) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
	writeJSON(w, http.StatusUnauthorized, body)
}

// Body of the 503 for ErrUnavailable, in simplejwt's shape.
var errUnavailable = detailCode{
	Detail: "The authentication service is temporarily unavailable. Try again shortly.",
	Code:   "service_unavailable",
}

// UnavailableRetryAfter is the Retry-After (seconds) of the 503 that
// answers a request the store could not serve (ErrUnavailable).
const UnavailableRetryAfter = 5

// storeError reports err to OnError and answers 503 with Retry-After if
// it is ErrUnavailable, 500 otherwise; neither body tells the error. It
// returns the matching login outcome.
func (a *Auth) storeError(w http.ResponseWriter, r *http.Request, err error) LoginOutcome {
	if a.cfg.OnError != nil {
		a.cfg.OnError(r, err)
	}
	if errors.Is(err, ErrUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(UnavailableRetryAfter))
		writeJSON(w, http.StatusServiceUnavailable, errUnavailable)
		return LoginUnavailable
	}
	writeJSON(w, http.StatusInternalServerError, detail{Detail: "A server error occurred."})
	return LoginError
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"detail":"A server error occurred."}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
