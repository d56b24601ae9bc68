package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBearer(t *testing.T) {
	tests := []struct {
		name, header, token string
		ok, malformed       bool
	}{
		{"absent", "", "", false, false},
		{"other scheme", "Basic abc", "", false, false},
		{"bearer", "Bearer abc", "abc", true, false},
		{"any case (RFC 9110)", "bEaReR abc", "abc", true, false},
		{"extra spaces", "  Bearer \t abc  ", "abc", true, false},
		{"tab", "Bearer\tabc", "abc", true, false},
		{"Bearer alone", "Bearer", "", true, true},
		{"three parts", "Bearer a b", "", true, true},
		// Only SP and HTAB separate, as Python's bytes.split() on what
		// reaches a handler: a Unicode space is part of a field.
		{"U+00A0 after the scheme", "Bearer\u00a0abc", "", false, false},
		{"U+2003 after the scheme", "Bearer\u2003abc", "", false, false},
		{"U+3000 after the scheme", "Bearer\u3000abc", "", false, false},
		{"U+2028 after the scheme", "Bearer\u2028abc", "", false, false},
		{"U+0085 after the scheme", "Bearer\u0085abc", "", false, false},
		{"latin-1 NBSP byte", "Bearer\xa0abc", "", false, false},
		{"U+00A0 before the token", "Bearer \u00a0abc", "\u00a0abc", true, false},
		{"U+3000 after the token", "Bearer abc\u3000", "abc\u3000", true, false},
		{"U+2003 between two values", "Bearer a\u2003b", "a\u2003b", true, false},
		{"vertical tab", "Bearer\vabc", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, ok, malformed := bearer(tt.header)
			if tok != tt.token || ok != tt.ok || malformed != tt.malformed {
				t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v", tt.header, tok, ok, malformed, tt.token, tt.ok, tt.malformed)
			}
		})
	}
}

// protected returns an Auth on a fresh SQLite store with one active user,
// a handler it protects, and a valid access token for the user.
func protected(tb testing.TB) (*Auth, http.Handler, string) {
	tb.Helper()
	return protectedWith(tb, Config{})
}

// protectedWith is protected with cfg (its Tokens filled in).
func protectedWith(tb testing.TB, cfg Config) (*Auth, http.Handler, string) {
	tb.Helper()
	store, err := OpenSQLite(filepath.Join(tb.TempDir(), "auth.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	cfg.Tokens = TokenConfig{SecretKey: "middleware-test-key-0123456789-abcdefgh"}
	a, err := New(cfg, &switchStore{Store: store})
	if err != nil {
		tb.Fatal(err)
	}
	u, err := store.CreateUser(context.Background(), "alice", "$argon2id$unused", true)
	if err != nil {
		tb.Fatal(err)
	}
	// Issued at the test's clock, if it has one: a token issued in a later
	// second than that clock says would not be valid yet.
	at := time.Now()
	if cfg.Now != nil {
		at = cfg.Now()
	}
	tok, _, err := a.Tokens().Issue("access", u.ID, at)
	if err != nil {
		tb.Fatal(err)
	}
	h := a.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := UserFrom(r.Context()); !ok || u.ID != "1" || u.PasswordHash != "" {
			panic("protected handler without its user, or with its password hash")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return a, h, tok
}

// switchStore is a real store whose UserByID can be made to fail as an
// unreachable database does, for the tests of Required's outage path that
// run in -short mode (TestPostgresOutage stops a real database).
type switchStore struct {
	Store
	down atomic.Bool
}

func (s *switchStore) UserByID(ctx context.Context, id string) (User, error) {
	if s.down.Load() {
		return User{}, fmt.Errorf("user by id: %w: connection refused", ErrUnavailable)
	}
	return s.Store.UserByID(ctx, id)
}

// get requests a protected route with tok and returns the status and body.
func get(h http.Handler, tok string) (int, string) {
	r := httptest.NewRequest("GET", "/hello/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

func TestRequiredUserCache(t *testing.T) {
	const inactive = `{"detail":"User is inactive","code":"user_inactive"}`
	tests := []struct {
		name     string
		ttl      time.Duration
		wait     time.Duration
		wantCode int
	}{
		{"fresh entry: the deactivation waits for the TTL", time.Hour, 0, http.StatusNoContent},
		{"expired entry: the store is read again", time.Millisecond, 20 * time.Millisecond, http.StatusUnauthorized},
		{"no cache", -1, 0, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, h, tok := protectedWith(t, Config{UserCacheTTL: tt.ttl})
			if code, body := get(h, tok); code != http.StatusNoContent {
				t.Fatalf("before: got %d %s, want 204", code, body)
			}
			if err := a.store.SetActive(t.Context(), "1", false); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tt.wait)
			code, body := get(h, tok)
			if code != tt.wantCode || code == http.StatusUnauthorized && body != inactive {
				t.Errorf("after SetActive(false): got %d %s, want %d", code, body, tt.wantCode)
			}
		})
	}
}

func TestRequiredStoreUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		ttl      time.Duration
		warm     bool // a request before the outage
		wantCode int
	}{
		{"stale entry served", time.Millisecond, true, http.StatusNoContent},
		{"no entry: the token alone", 0, false, http.StatusNoContent},
		{"no cache: 503", -1, true, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reported []error
			a, h, tok := protectedWith(t, Config{UserCacheTTL: tt.ttl, OnError: func(r *http.Request, err error) { reported = append(reported, err) }})
			if tt.warm {
				if code, body := get(h, tok); code != http.StatusNoContent {
					t.Fatalf("before: got %d %s, want 204", code, body)
				}
				time.Sleep(5 * time.Millisecond)
			}
			a.store.(*switchStore).down.Store(true)
			for i := range 3 {
				r := httptest.NewRequest("GET", "/hello/", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != tt.wantCode {
					t.Fatalf("request %d during the outage: got %d %s, want %d", i, w.Code, w.Body, tt.wantCode)
				}
				if w.Code == http.StatusServiceUnavailable {
					want := `{"detail":"The authentication service is temporarily unavailable. Try again shortly.","code":"service_unavailable"}`
					if w.Body.String() != want || w.Header().Get("Retry-After") != "5" {
						t.Errorf("503: got body %s, Retry-After %q; want %s, 5", w.Body, w.Header().Get("Retry-After"), want)
					}
				}
			}
			if tt.wantCode == http.StatusServiceUnavailable && len(reported) != 3 {
				t.Errorf("OnError: got %d reports, want 3", len(reported))
			}
			// A bad token is refused as ever.
			if code, _ := get(h, tok+"x"); code != http.StatusUnauthorized {
				t.Errorf("bad token during the outage: got %d, want 401", code)
			}
		})
	}
}

// pyFields splits an Authorization header as simplejwt's header.split()
// does the bytes that reach a handler: on SP and HTAB (net/http refuses
// the other ASCII white space in a header value).
func pyFields(header string) []string {
	return strings.FieldsFunc(header, func(r rune) bool { return r == ' ' || r == '\t' })
}

// bearerModel is what bearer must return for header: simplejwt's split,
// with the scheme compared case-insensitively.
func bearerModel(header string) (token string, ok, malformed bool) {
	parts := pyFields(header)
	ok = len(parts) > 0 && strings.EqualFold(parts[0], "Bearer")
	malformed = ok && len(parts) != 2
	if ok && !malformed {
		token = parts[1]
	}
	return token, ok, malformed
}

func TestBearerMatchesFields(t *testing.T) {
	for _, header := range []string{"", " ", "Bearer", "Bearer x", "\tBearer\u00a0x\u2003", "Bearer x y", "Bearer\x85x", "Bearer \xffx", "bearer\tx\n", "Token x", "Bearerx",
		"Bearer\u3000x", "Bearer \u2028x", "\u00a0Bearer x", "Bearer x\u00a0"} {
		want, wantOK, wantMalformed := bearerModel(header)
		if got, ok, malformed := bearer(header); got != want || ok != wantOK || malformed != wantMalformed {
			t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v (split on SP and HTAB)", header, got, ok, malformed, want, wantOK, wantMalformed)
		}
	}
}

// FuzzBearer checks bearer against a split on SP and HTAB, which is
// simplejwt's header.split() on any header that reaches a handler.
func FuzzBearer(f *testing.F) {
	for _, seed := range []string{"Bearer x", "\tBearer\u00a0x\u2003", "Bearer\x85x", "Bearer \xffx", "bearer x y"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		want, wantOK, wantMalformed := bearerModel(header)
		if got, ok, malformed := bearer(header); got != want || ok != wantOK || malformed != wantMalformed {
			t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v", header, got, ok, malformed, want, wantOK, wantMalformed)
		}
	})
}

// FuzzRequired drives the bearer header and token path of the protected
// route: it never panics, lets through only valid access tokens in a
// single header, and answers every refusal 401 with a JSON body and the
// Bearer challenge. A newline in the input, which no header value can
// hold, separates the values of several Authorization headers.
func FuzzRequired(f *testing.F) {
	a, h, tok := protected(f)
	for _, seed := range []string{"", "Bearer " + tok, "Bearer", "Bearer a b", "Basic x", "Bearer " + strings.Repeat(".", 4096),
		"Bearer eyJhbGciOiJub25lIn0.e30.", "bearer " + tok + "x", "Bearer " + tok + "\nBearer " + tok, "Bearer\u00a0" + tok} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		values := strings.Split(input, "\n")
		r := httptest.NewRequest("GET", "/hello/", nil)
		r.Header["Authorization"] = values
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		header := values[0]
		switch w.Code {
		case http.StatusNoContent:
			if len(values) != 1 {
				t.Fatalf("%d Authorization headers %q let through", len(values), values)
			}
			raw, _, _ := bearer(header)
			if _, err := a.Tokens().Parse(raw, "access", time.Now()); err != nil {
				t.Fatalf("header %q let through with a token Parse refuses: %v", header, err)
			}
		case http.StatusUnauthorized:
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["detail"] == nil {
				t.Fatalf("header %q: 401 body %q is not simplejwt's", header, w.Body)
			}
			if w.Header().Get("WWW-Authenticate") != `Bearer realm="api"` {
				t.Fatalf("header %q: 401 without the Bearer challenge", header)
			}
			if len(values) > 1 && body["code"] != "bad_authorization_header" {
				t.Fatalf("%d Authorization headers %q: 401 %s, want bad_authorization_header", len(values), values, w.Body)
			}
		default:
			t.Fatalf("header %q: status %d", header, w.Code)
		}
	})
}

// BenchmarkRequired is the cost of the protected-route middleware for a
// valid token: header, signature and claims, and the user's state, from
// the per-process cache (cached, the default) or from the SQLite store
// on every request (store, UserCacheTTL < 0).
func BenchmarkRequired(b *testing.B) {
	for _, bb := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", 0}, {"store", -1}} {
		b.Run(bb.name, func(b *testing.B) {
			_, h, tok := protectedWith(b, Config{UserCacheTTL: bb.ttl})
			r := httptest.NewRequest("GET", "/hello/", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			w := &benchWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				w.code = 0
				h.ServeHTTP(w, r)
				if w.code != http.StatusNoContent {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// benchWriter is a ResponseWriter that costs nothing, so that
// BenchmarkRequired counts the middleware's allocations only.
type benchWriter struct {
	header http.Header
	code   int
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

// TestVerifiedTokenCache checks that a token verified once answers from
// the cache as a fresh parse would: accepted until it expires, refused
// with simplejwt's "Token is expired" after, and that a token differing
// only in its signature is not taken for the cached one.
func TestVerifiedTokenCache(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	a, h, tok := protectedWith(t, Config{Now: func() time.Time { return *now.Load() }})
	serve := func(raw string) (int, string) {
		r := httptest.NewRequest("GET", "/hello/", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for i := range 2 {
		if code, body := serve(tok); code != http.StatusNoContent {
			t.Fatalf("request %d with a fresh token: %d %s", i, code, body)
		}
	}
	if _, ok := a.access.get(tok, start); !ok {
		t.Fatal("a verified token is not in the cache")
	}

	forged := tok[:len(tok)-2] + "AA"
	if forged == tok {
		forged = tok[:len(tok)-2] + "BB"
	}
	if code, body := serve(forged); code != http.StatusUnauthorized || !strings.Contains(body, "Token is invalid") {
		t.Errorf("the token with another signature: %d %s, want 401 Token is invalid", code, body)
	}

	later := start.Add(DefaultAccessLifetime + time.Second)
	now.Store(&later)
	if code, body := serve(tok); code != http.StatusUnauthorized || !strings.Contains(body, "Token is expired") {
		t.Errorf("the cached token after its exp: %d %s, want 401 Token is expired", code, body)
	}
}

// TestRequiredAuthorizationHeaders checks the headers simplejwt (under
// gunicorn, which joins repeated headers with a comma) refuses: two
// Authorization headers are bad_authorization_header whichever holds the
// token, and a Unicode space after the scheme separates nothing.
func TestRequiredAuthorizationHeaders(t *testing.T) {
	const (
		noCredentials = `{"detail":"Authentication credentials were not provided."}`
		badHeader     = `{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}`
	)
	_, h, tok := protected(t)
	tests := []struct {
		name     string
		values   []string
		wantCode int
		wantBody string
	}{
		{"one header", []string{"Bearer " + tok}, http.StatusNoContent, ""},
		{"tab", []string{"Bearer\t" + tok}, http.StatusNoContent, ""},
		{"two headers, the same token", []string{"Bearer " + tok, "Bearer " + tok}, http.StatusUnauthorized, badHeader},
		{"two headers, the token first", []string{"Bearer " + tok, "Basic x"}, http.StatusUnauthorized, badHeader},
		{"two headers, the token last", []string{"Basic x", "Bearer " + tok}, http.StatusUnauthorized, badHeader},
		{"two headers, one empty", []string{"Bearer " + tok, ""}, http.StatusUnauthorized, badHeader},
		{"U+00A0", []string{"Bearer\u00a0" + tok}, http.StatusUnauthorized, noCredentials},
		{"U+2003", []string{"Bearer\u2003" + tok}, http.StatusUnauthorized, noCredentials},
		{"U+3000", []string{"Bearer\u3000" + tok}, http.StatusUnauthorized, noCredentials},
		{"U+2028", []string{"Bearer\u2028" + tok}, http.StatusUnauthorized, noCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/hello/", nil)
			r.Header["Authorization"] = tt.values
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if body := strings.TrimSpace(w.Body.String()); w.Code != tt.wantCode || body != tt.wantBody {
				t.Errorf("headers %q: got %d %s, want %d %s", tt.values, w.Code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}
