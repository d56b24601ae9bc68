package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxBodyBytes caps the body of a token request, as Django's
// DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) does for DRF; a body announced
// larger is answered 413 before any of it is read, one that turns out
// larger after reading that much. Tokens, usernames and passwords are
// capped far lower on their own (MaxTokenBytes, MaxUsernameLength,
// MaxPasswordBytes).
const MaxBodyBytes = 2 << 20

// Mount registers the token endpoints on mux under prefix (the default
// binary uses "/api/token"), each with and without its trailing slash, and
// the JWKS at /.well-known/jwks.json:
//
//	POST prefix/            obtain a pair
//	POST prefix/refresh/    a new access token (and refresh token, rotating)
//	POST prefix/verify/     check any token
//	POST prefix/blacklist/  revoke a refresh token
//
// OPTIONS on each answers 200 with Allow: POST, OPTIONS and the view's
// description in DRF's SimpleMetadata shape, as simplejwt does (see
// viewMetadata); any other method gets 405. mux is an http.ServeMux, a
// server.App, or anything that takes ServeMux patterns; on another router
// (chi, gorilla/mux), mount Handler.
func (a *Auth) Mount(mux interface{ Handle(string, http.Handler) }, prefix string) {
	mountAt(mux, prefix, a.Handler(), http.HandlerFunc(a.serveJWKS))
}

// mountAt registers endpoints (see Handler) under prefix, with and without
// its trailing slash, and jwks at /.well-known/jwks.json.
func mountAt(mux interface{ Handle(string, http.Handler) }, prefix string, endpoints, jwks http.Handler) {
	prefix = strings.TrimSuffix(prefix, "/")
	h := http.StripPrefix(prefix, endpoints)
	mux.Handle(prefix, h)
	mux.Handle(prefix+"/", h)
	mux.Handle("GET /.well-known/jwks.json", jwks)
}

// Handler serves the token endpoints at paths relative to where it is
// mounted: "" or "/" obtains a pair, "/refresh", "/verify" and
// "/blacklist" (each with or without its trailing slash) do the rest, and
// any other path is 404. Mount it under a prefix with the prefix stripped:
//
//	r.Mount("/api/token", http.StripPrefix("/api/token", a.Handler())) // chi
func (a *Auth) Handler() http.Handler {
	return http.HandlerFunc(a.serveEndpoint)
}

// endpoint is one token endpoint: its view, and its OPTIONS answer.
type endpoint struct {
	view func(*Auth, http.ResponseWriter, *http.Request, fields)
	meta []byte
}

// endpoints are the views of Handler, by path without its trailing slash.
var endpoints = map[string]endpoint{
	"":           {(*Auth).obtain, obtainMetadata},
	"/refresh":   {(*Auth).refresh, refreshMetadata},
	"/verify":    {(*Auth).verify, verifyMetadata},
	"/blacklist": {(*Auth).blacklist, blacklistMetadata},
}

// serveEndpoint is Handler.
func (a *Auth) serveEndpoint(w http.ResponseWriter, r *http.Request) {
	e, ok := endpoints[strings.TrimSuffix(r.URL.Path, "/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	a.serveView(w, r, e)
}

// serveJWKS answers the public keys (RFC 7517), empty for HS*.
func (a *Auth) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(a.tokens.JWKS())
}

// serveView is what every token endpoint shares: POST only, a capped
// body in JSON, form or multipart encoding; OPTIONS answered with e.meta.
func (a *Auth) serveView(w http.ResponseWriter, r *http.Request, e endpoint) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		// Neither the body nor the credentials are read: the answer is
		// the same constant for every client, as simplejwt's (its token
		// views authenticate no one).
		w.Header().Set("Allow", "POST, OPTIONS")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(e.meta)))
		w.WriteHeader(http.StatusOK)
		w.Write(e.meta)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSON(w, http.StatusMethodNotAllowed, detail{Detail: fmt.Sprintf("Method %q not allowed.", r.Method)})
		return
	}
	f, status, body := readFields(w, r)
	if status != 0 {
		writeJSON(w, status, body)
		return
	}
	e.view(a, w, r, f)
}

// The OPTIONS answers of the token endpoints: what DRF's SimpleMetadata
// says of simplejwt's views (their name, their docstring, the renderers
// and parsers, and the fields of their serializer for POST), byte for
// byte as simplejwt 5.2.2 under DRF 3.14 sends them with JSON as its only
// renderer (examples/drf; cmd/server/drf_test.go compares them). They are
// constants: nothing of the configuration, the store or the request goes
// into them, so they tell a client no more than simplejwt's source does.
var (
	obtainMetadata = viewMetadata("Token Obtain Pair",
		"Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.",
		metaField{"username", "Username", true, false}, metaField{"password", "Password", true, false})
	refreshMetadata = viewMetadata("Token Refresh",
		"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",
		metaField{"refresh", "Refresh", true, false}, metaField{"access", "Access", false, true})
	verifyMetadata = viewMetadata("Token Verify",
		"Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.",
		metaField{"token", "Token", true, false})
	blacklistMetadata = viewMetadata("Token Blacklist",
		"Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.",
		metaField{"refresh", "Refresh", true, false})
)

// metaField is one serializer field in an OPTIONS answer: all are strings.
type metaField struct {
	name, label        string
	required, readOnly bool
}

// viewMetadata writes an OPTIONS body in SimpleMetadata's member order,
// which encoding/json's sorted maps would not keep.
func viewMetadata(name, description string, fields ...metaField) []byte {
	str := func(s string) string {
		b, _ := json.Marshal(s) // a string always encodes
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"name":%s,"description":%s,"renders":["application/json"],`, str(name), str(description))
	b.WriteString(`"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"],"actions":{"POST":{`)
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%s:{"type":"string","required":%t,"read_only":%t,"label":%s}`, str(f.name), f.required, f.readOnly, str(f.label))
	}
	b.WriteString("}}}")
	return []byte(b.String())
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
		if len(b) == 0 {
			return fields{}, 0, nil // DRF parses no empty body
		}
		v, msg := decodeJSON(b)
		if msg != "" {
			return nil, http.StatusBadRequest, detail{Detail: "JSON parse error - " + msg}
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

// decodeJSON decodes a JSON body as DRF's JSONParser does, the UTF-8
// text first, then one JSON value with nothing but white space after it,
// and returns the value or the error for DRF's "JSON parse error - "
// detail. The errors of the UTF-8 text, a byte order mark, trailing data
// and a body of white space are Python's, word for word; for malformed
// JSON otherwise, the words are encoding/json's.
func decodeJSON(b []byte) (any, string) {
	b, msg := decodeUTF8(b)
	if msg != "" {
		return nil, msg
	}
	if bytes.HasPrefix(b, []byte("\ufeff")) {
		return nil, "Unexpected UTF-8 BOM (decode using utf-8-sig): " + pyPosition(b, 0)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF { // white space only
			return nil, "Expecting value: " + pyPosition(b, len(b))
		}
		return nil, err.Error()
	}
	end := int(dec.InputOffset())
	for end < len(b) && (b[end] == ' ' || b[end] == '\t' || b[end] == '\n' || b[end] == '\r') {
		end++
	}
	if end != len(b) {
		return nil, "Extra data: " + pyPosition(b, end)
	}
	return v, ""
}

// pyPosition is where Python's JSONDecodeError says an error is, for the
// byte offset off into b: "line L column C (char N)", N and C counted in
// code points from 0 and 1.
func pyPosition(b []byte, off int) string {
	pos := utf8.RuneCount(b[:off])
	col := pos + 1
	if nl := bytes.LastIndexByte(b[:off], '\n'); nl >= 0 {
		col = pos - utf8.RuneCount(b[:nl])
	}
	return fmt.Sprintf("line %d column %d (char %d)", bytes.Count(b[:off], []byte{'\n'})+1, col, pos)
}

// decodeUTF8 reads b as DRF does before parsing JSON, through Python's
// UTF-8 stream reader: it returns b without an incomplete sequence at its
// very end (the reader keeps such bytes for more input and, at the end of
// the body, drops them), or Python's error for the first invalid byte.
func decodeUTF8(b []byte) ([]byte, string) {
	if utf8.Valid(b) {
		return b, ""
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		n, lo, hi := 0, byte(0x80), byte(0xbf) // length, and the range of the second byte
		switch {
		case 0xc2 <= c && c <= 0xdf:
			n = 2
		case c == 0xe0:
			n, lo = 3, 0xa0
		case c == 0xed:
			n, hi = 3, 0x9f
		case 0xe1 <= c && c <= 0xef:
			n = 3
		case c == 0xf0:
			n, lo = 4, 0x90
		case c == 0xf4:
			n, hi = 4, 0x8f
		case 0xf1 <= c && c <= 0xf3:
			n = 4
		default:
			return nil, fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d: invalid start byte", c, i)
		}
		for k := 1; k < n; k, lo, hi = k+1, 0x80, 0xbf {
			if i+k == len(b) {
				return b[:i], ""
			}
			if b[i+k] < lo || b[i+k] > hi {
				if k == 1 {
					return nil, fmt.Sprintf("'utf-8' codec can't decode byte 0x%02x in position %d: invalid continuation byte", c, i)
				}
				return nil, fmt.Sprintf("'utf-8' codec can't decode bytes in position %d-%d: invalid continuation byte", i, i+k-1)
			}
		}
		i += n
	}
	return b, ""
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

// obtain is POST /api/token/: a pair for a username and password. The
// fields are checked before any other work: a username over
// MaxUsernameLength characters or a password over MaxPasswordBytes is
// answered 400 without a store read or write, a hash, or OnLogin.
func (a *Auth) obtain(w http.ResponseWriter, r *http.Request, f fields) {
	vals, errs := f.strings("username", "password")
	// DRF's CharField trims the username; the password is never trimmed.
	username, password := strings.TrimSpace(vals[0]), vals[1]
	if !errs.has("username") {
		errs = append(errs, charErrors("username", username, utf8.RuneCountInString(username) > MaxUsernameLength,
			fmt.Sprintf("Ensure this field has no more than %d characters.", MaxUsernameLength))...)
	}
	if !errs.has("password") {
		errs = append(errs, charErrors("password", password, len(password) > MaxPasswordBytes,
			fmt.Sprintf("Ensure this field has no more than %d bytes.", MaxPasswordBytes))...)
	}
	if errs != nil {
		writeJSON(w, http.StatusBadRequest, errs.sorted("username", "password"))
		return
	}
	outcome := a.login(w, r, username, password)
	if a.cfg.OnLogin != nil {
		a.cfg.OnLogin(r, username, outcome)
	}
}

// charErrors are the errors of DRF's CharField validators for a string
// field's value: its length limit (tooLong, with its message), then the
// null characters that DRF refuses.
func charErrors(name, value string, tooLong bool, tooLongMsg string) fieldErrors {
	var errs fieldErrors
	if tooLong {
		errs = append(errs, fieldError{name, tooLongMsg})
	}
	if strings.IndexByte(value, 0) >= 0 {
		errs = append(errs, fieldError{name, "Null characters are not allowed."})
	}
	return errs
}

// login answers a login attempt and returns its outcome.
//
// The throttle is atomic: the attempt is counted in the store (ReserveLogin)
// before its password is checked, by the operation that tells whether
// ThrottleFailures attempts for the username from the address are counted
// in ThrottleWindow already. So of any number of concurrent attempts, on
// any number of workers, at most ThrottleFailures check a password; the
// others are answered 429 at once, and are not counted. A failed attempt
// stays counted: it is the failure's record. A success forgets its own
// attempt and those counted before it (RecordLogin), and leaves those
// counted after it, still being checked, to count if they fail. An
// attempt that ends without a verdict on its password (the store failed,
// no hashing slot came free within MaxPasswordWait, tokens could not be
// issued or recorded) is forgotten (ReleaseLogin): it counts against
// nobody.
func (a *Auth) login(w http.ResponseWriter, r *http.Request, username, password string) LoginOutcome {
	ctx, now, addr := r.Context(), a.cfg.Now(), clientAddr(r)
	attempt, oldest, err := a.store.ReserveLogin(ctx, username, addr, now, now.Add(-ThrottleWindow), ThrottleFailures)
	if err != nil {
		return a.storeError(w, r, err)
	}
	if attempt == 0 {
		throttled(w, oldest.Add(ThrottleWindow).Sub(now))
		return LoginThrottled
	}
	user, ok, rehash, err := a.authenticate(r, username, password)
	if errors.Is(err, errHashingBusy) {
		a.release(r, attempt)
		hashingBusy(w)
		return LoginUnavailable
	}
	if err != nil {
		a.release(r, attempt)
		return a.storeError(w, r, err)
	}
	if !ok {
		unauthorized(w, detail{Detail: "No active account found with the given credentials"})
		return LoginFailed
	}
	p, err := a.issuePair(ctx, user, now)
	if err == nil {
		err = a.store.RecordLogin(ctx, Login{
			UserID:       user.ID,
			At:           now,
			Username:     username,
			Addr:         addr,
			Attempt:      attempt,
			PasswordHash: rehash,
			Refresh:      RefreshToken{JTI: p.claims.JTI, Family: p.claims.JTI, UserID: user.ID, ExpiresAt: p.claims.ExpiresAt},
		})
	}
	if errors.Is(err, ErrNotFound) { // deleted since it was read: as if unknown
		unauthorized(w, detail{Detail: "No active account found with the given credentials"})
		return LoginFailed
	}
	if err != nil {
		a.release(r, attempt)
		return a.storeError(w, r, err)
	}
	writeJSON(w, http.StatusOK, struct {
		Refresh string `json:"refresh"`
		Access  string `json:"access"`
	}{p.refresh, p.access})
	return LoginSucceeded
}

// release forgets a login attempt that ended without a verdict on its
// password. A failure to forget it goes to OnError and nowhere else: the
// client's answer is already decided, and the attempt then counts as a
// failure until it leaves the window.
func (a *Auth) release(r *http.Request, attempt int64) {
	if err := a.store.ReleaseLogin(r.Context(), attempt); err != nil && a.cfg.OnError != nil {
		a.cfg.OnError(r, err)
	}
}

// throttled answers DRF's 429 for a login that may be tried again in wait
// (rounded up to a whole second, at least 1).
func throttled(w http.ResponseWriter, wait time.Duration) {
	secs := max(int(wait.Seconds()+1), 1)
	unit := "seconds"
	if secs == 1 {
		unit = "second" // DRF's ngettext
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, detail{Detail: fmt.Sprintf("Request was throttled. Expected available in %d %s.", secs, unit)})
}

// Body of the 503 of a login that found no free hashing slot within
// MaxPasswordWait, in the shape of errUnavailable.
var errHashingBusyBody = detailCode{
	Detail: "Too many logins are being checked at once. Try again shortly.",
	Code:   "service_unavailable",
}

// HashingBusyRetryAfter is the Retry-After (seconds) of the 503 that
// answers a login that found no free password hashing slot within
// MaxPasswordWait: a slot frees every 40 ms or so.
const HashingBusyRetryAfter = 1

// hashingBusy answers 503 for a login that found no free hashing slot.
func hashingBusy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(HashingBusyRetryAfter))
	writeJSON(w, http.StatusServiceUnavailable, errHashingBusyBody)
}

// authenticate checks a password, and returns the user, whether the
// password is theirs and the user active, and the password's new hash if
// its stored one should be replaced (a Django or weaker hash), else "".
// Unknown, inactive and wrong-password logins cost the same (one password
// verification each, after the same wait for a hashing slot: at most
// MaxPasswordWait, then errHashingBusy) and look the same; so does a user
// whose stored hash cannot be used (Django's unusable "!" passwords).
func (a *Auth) authenticate(r *http.Request, username, password string) (User, bool, string, error) {
	user, err := a.store.UserByUsername(r.Context(), username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, false, "", err
	}
	ctx, cancel := context.WithTimeout(r.Context(), passwordWait)
	defer cancel()
	if err != nil { // not found
		return User{}, false, "", dummyCheckWithin(ctx, password)
	}
	ok, rehash, err := checkPassword(ctx, password, user.PasswordHash, true)
	if errors.Is(err, errHashingBusy) {
		return User{}, false, "", err
	}
	if err != nil || !ok || !user.Active {
		return User{}, false, "", nil
	}
	var hash string
	if rehash {
		// Not worth a 503: without a free slot in time, the next login
		// rehashes.
		hash, _ = hashPassword(ctx, password)
	}
	return user, true, hash, nil
}

// tokenField parses the token in field name as a token of type typ ("" for
// any). When the field is missing or the token refused, it answers 400 or
// 401 and returns false.
func (a *Auth) tokenField(w http.ResponseWriter, f fields, name, typ string) (Claims, bool) {
	vals, errs := f.strings(name)
	if errs == nil {
		errs = charErrors(name, vals[0], false, "")
	}
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

// refresh is POST /api/token/refresh/. The new tokens carry the refresh
// token's custom claims, as simplejwt's refresh.access_token and rotation
// copy its claims.
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
	// The access token first: once rotateRefresh has consumed the
	// presented token, nothing may fail, or the client's retry would be
	// taken for a replay.
	access, _, err := a.tokens.issue(accessType, user.ID, claims.Custom, now)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	refresh, err := a.rotateRefresh(r, claims, user.ID)
	if err != nil {
		if errors.Is(err, ErrTokenBlacklisted) {
			tokenNotValid(w, err)
			return
		}
		a.storeError(w, r, err)
		return
	}
	if refresh == "" {
		writeJSON(w, http.StatusOK, struct {
			Access string `json:"access"`
		}{access})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Access  string `json:"access"`
		Refresh string `json:"refresh"`
	}{access, refresh})
}

// rotateRefresh checks the refresh token c of the user userID against the
// store and returns the refresh token the answer carries next to the
// access token: with RotateRefreshTokens a new one, of c's family and
// with c's custom claims, else "". With BlacklistAfterRotation too, c is
// consumed and its successor recorded in one store operation
// (Store.RotateRefresh): of concurrent refreshes with one token, one wins;
// a token consumed before is a replay, and its whole family is revoked
// (ErrTokenBlacklisted); and a refresh whose write fails leaves c as it
// was, so that the client's retry succeeds rather than being taken for a
// replay. A token the store has never seen, issued elsewhere with our key
// (a simplejwt deployment, or before a flush), is adopted as the first of
// a family.
func (a *Auth) rotateRefresh(r *http.Request, c Claims, userID string) (string, error) {
	ctx, now := r.Context(), a.cfg.Now()
	if !a.cfg.RotateRefreshTokens {
		_, err := a.checkRefresh(r, c)
		return "", err
	}
	next, nc, err := a.tokens.issue(refreshType, userID, c.Custom, now)
	if err != nil {
		return "", err
	}
	successor := RefreshToken{JTI: nc.JTI, UserID: userID, ExpiresAt: nc.ExpiresAt}
	if !a.cfg.BlacklistAfterRotation {
		family, err := a.checkRefresh(r, c)
		if err == nil {
			successor.Family = family
			err = a.store.AddRefresh(ctx, successor)
		}
		if err != nil {
			return "", err
		}
		return next, nil
	}
	presented := RefreshToken{JTI: c.JTI, Family: c.JTI, UserID: c.UserID, ExpiresAt: c.ExpiresAt}
	result, rec, err := a.store.RotateRefresh(ctx, presented, successor, now)
	switch {
	case err != nil:
		return "", err
	case result == ConsumeOK:
		return next, nil
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

// checkRefresh checks a refresh token against the store without
// consuming it (no rotation, or rotation without blacklisting): it returns
// ErrTokenBlacklisted for a revoked token, and otherwise the family of the
// next token, the token's own jti (without blacklisting there is no reuse
// detection, so families do not matter). A token the store has never seen
// is adopted.
func (a *Auth) checkRefresh(r *http.Request, c Claims) (string, error) {
	state, err := a.store.RefreshState(r.Context(), c.JTI)
	switch {
	case err != nil:
		return "", err
	case state == ConsumeRevoked:
		return "", ErrTokenBlacklisted
	case state == ConsumeUnknown:
		return c.JTI, a.adopt(r, c)
	}
	return c.JTI, nil
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

// MarshalJSON writes {"<field>": ["<message>", …], …}: the messages of
// consecutive errors of one field go in one list.
func (fe fieldErrors) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range fe {
		switch {
		case i > 0 && fe[i-1].name == e.name:
			b.WriteByte(',')
		case i > 0:
			b.WriteString("],")
			fallthrough
		default:
			name, _ := json.Marshal(e.name)
			b.Write(name)
			b.WriteString(":[")
		}
		msg, _ := json.Marshal(e.msg)
		b.Write(msg)
	}
	if len(fe) > 0 {
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// has tells whether a field has an error.
func (fe fieldErrors) has(name string) bool {
	for _, e := range fe {
		if e.name == name {
			return true
		}
	}
	return false
}

// sorted returns the errors in the order of names (DRF's order of the
// serializer's fields), each field's in the order they came.
func (fe fieldErrors) sorted(names ...string) fieldErrors {
	slices.SortStableFunc(fe, func(x, y fieldError) int {
		return slices.Index(names, x.name) - slices.Index(names, y.name)
	})
	return fe
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
