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
		{"Bearer alone", "Bearer", "", true, true},
		{"three parts", "Bearer a b", "", true, true},
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
	tok, _, err := a.Tokens().Issue("access", u.ID, time.Now())
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

func TestBearerMatchesFields(t *testing.T) {
	for _, header := range []string{"", " ", "Bearer", "Bearer x", "\tBearer\u00a0x\u2003", "Bearer x y", "Bearer\x85x", "Bearer \xffx", "bearer\tx\n", "Token x", "Bearerx"} {
		parts := strings.Fields(header)
		var want string
		wantOK := len(parts) > 0 && strings.EqualFold(parts[0], "Bearer")
		wantMalformed := wantOK && len(parts) != 2
		if wantOK && !wantMalformed {
			want = parts[1]
		}
		if got, ok, malformed := bearer(header); got != want || ok != wantOK || malformed != wantMalformed {
			t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v (as strings.Fields splits)", header, got, ok, malformed, want, wantOK, wantMalformed)
		}
	}
}

// FuzzBearer checks bearer against strings.Fields, the split simplejwt's
// header.split() amounts to, on any header.
func FuzzBearer(f *testing.F) {
	for _, seed := range []string{"Bearer x", "\tBearer\u00a0x\u2003", "Bearer\x85x", "Bearer \xffx", "bearer x y"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		parts := strings.Fields(header)
		wantOK := len(parts) > 0 && strings.EqualFold(parts[0], "Bearer")
		wantMalformed := wantOK && len(parts) != 2
		want := ""
		if wantOK && !wantMalformed {
			want = parts[1]
		}
		if got, ok, malformed := bearer(header); got != want || ok != wantOK || malformed != wantMalformed {
			t.Errorf("bearer(%q) = %q, %v, %v; want %q, %v, %v", header, got, ok, malformed, want, wantOK, wantMalformed)
		}
	})
}

// FuzzRequired drives the bearer header and token path of the protected
// route: it never panics, lets through only valid access tokens, and
// answers every refusal 401 with a JSON body and the Bearer challenge.
func FuzzRequired(f *testing.F) {
	a, h, tok := protected(f)
	for _, seed := range []string{"", "Bearer " + tok, "Bearer", "Bearer a b", "Basic x", "Bearer " + strings.Repeat(".", 4096),
		"Bearer eyJhbGciOiJub25lIn0.e30.", "bearer " + tok + "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/hello/", nil)
		r.Header["Authorization"] = []string{header}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusNoContent:
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
