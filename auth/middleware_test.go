package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
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
	store, err := OpenSQLite(filepath.Join(tb.TempDir(), "auth.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	a, err := New(Config{Tokens: TokenConfig{SecretKey: "middleware-test-key-0123456789-abcdefgh"}}, store)
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
		if u, ok := UserFrom(r.Context()); !ok || u.Username != "alice" {
			panic("protected handler without its user")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return a, h, tok
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
// valid token: header, signature and claims, and the user's row.
func BenchmarkRequired(b *testing.B) {
	_, h, tok := protected(b)
	r := httptest.NewRequest("GET", "/hello/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("status %d", w.Code)
		}
	}
}
