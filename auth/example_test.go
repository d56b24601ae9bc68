package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/remuda/remuda/auth"
)

// newAuth opens an SQLite store in dir, adds alice to it, and returns an
// Auth signing HS256 with a test key: what the server does at boot from
// its Config (--database, --secret-key).
func newAuth(dir string) (*auth.Auth, auth.Store) {
	store, err := auth.OpenSQLite(filepath.Join(dir, "auth.db"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := auth.CreateUser(context.Background(), store, "alice", "correct horse"); err != nil {
		log.Fatal(err)
	}
	a, err := auth.New(auth.Config{Tokens: auth.TokenConfig{SecretKey: "example-secret-key-of-32-bytes-or-more"}}, store)
	if err != nil {
		log.Fatal(err)
	}
	return a, store
}

// obtain logs alice in at the token endpoint and returns her access token.
func obtain(h http.Handler) string {
	r := httptest.NewRequest("POST", "/api/token/", strings.NewReader(`{"username":"alice","password":"correct horse"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var pair struct{ Access, Refresh string }
	if err := json.Unmarshal(w.Body.Bytes(), &pair); err != nil || w.Code != http.StatusOK {
		log.Fatalf("login: %d %s", w.Code, w.Body)
	}
	return pair.Access
}

// get sends GET path with the given Authorization header ("" for none) and
// prints the answer.
func get(h http.Handler, path, authorization string) {
	r := httptest.NewRequest("GET", path, nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Printf("%d %s\n", w.Code, strings.TrimSpace(w.Body.String()))
}

// Required protects a route: a request needs an access token of an active
// user. In an app served by Remuda, a Module boots the Auth in every
// serving process (see Module); this program, without the server, builds
// its own and mounts the token endpoints on a plain ServeMux.
func ExampleAuth_Required() {
	dir, _ := os.MkdirTemp("", "auth-example")
	defer os.RemoveAll(dir)
	a, store := newAuth(dir)
	defer store.Close()

	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	mux.Handle("GET /hello/", a.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})))

	get(mux, "/hello/", "")
	get(mux, "/hello/", "Bearer "+obtain(mux))
	// Output:
	// 401 {"detail":"Authentication credentials were not provided."}
	// 200 hello
}

// UserFrom gives a protected handler the user whose access token the
// request carried. Its second result is false outside a route that
// Required protects.
func ExampleUserFrom() {
	dir, _ := os.MkdirTemp("", "auth-example")
	defer os.RemoveAll(dir)
	a, store := newAuth(dir)
	defer store.Close()

	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := auth.UserFrom(r.Context())
		if !ok {
			http.Error(w, "no user: this route is not protected", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "you are %s (id %s)\n", u.Username, u.ID)
	})
	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	mux.Handle("GET /me/", a.Required(whoami))
	mux.Handle("GET /open/", whoami)

	access := obtain(mux)
	get(mux, "/me/", "Bearer "+access)
	get(mux, "/open/", "Bearer "+access)
	// Output:
	// 200 you are alice (id 1)
	// 500 no user: this route is not protected
}
