package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/remuda/remuda/auth"
)

// TestMountOnRouters mounts the token endpoints on a chi router (Handler
// under chi's Mount) and on a ServeMux under a prefix (Mount), and walks
// simplejwt's flow on each through a real HTTP server: obtain, refresh,
// verify, blacklist, with and without the trailing slash, and a protected
// route with and without the token.
func TestMountOnRouters(t *testing.T) {
	a, store := newAuth(t.TempDir())
	t.Cleanup(func() { store.Close() })
	hello := a.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		w.Write([]byte("hello " + u.Username))
	}))

	r := chi.NewRouter()
	r.Mount("/api/token", http.StripPrefix("/api/token", a.Handler()))
	r.Method("GET", "/hello/", hello)

	mux := http.NewServeMux()
	a.Mount(mux, "/v1/auth/jwt")
	mux.Handle("GET /hello/", hello)

	for _, tt := range []struct {
		name   string
		h      http.Handler
		prefix string
	}{
		{"chi", r, "/api/token"},
		{"ServeMux under a prefix", mux, "/v1/auth/jwt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			post := func(path, body string, want int) map[string]string {
				t.Helper()
				resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var got map[string]string
				json.NewDecoder(resp.Body).Decode(&got)
				if resp.StatusCode != want {
					t.Fatalf("POST %s: %d %v, want %d", path, resp.StatusCode, got, want)
				}
				return got
			}
			get := func(path, authorization string) int {
				t.Helper()
				req, _ := http.NewRequest("GET", srv.URL+path, nil)
				if authorization != "" {
					req.Header.Set("Authorization", authorization)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			login := `{"username":"alice","password":"correct horse"}`
			pair := post(tt.prefix+"/", login, 200)
			post(tt.prefix, login, 200) // without the trailing slash too
			if pair["access"] == "" || pair["refresh"] == "" {
				t.Fatalf("login answered %v, want a pair", pair)
			}
			post(tt.prefix+"/verify/", `{"token":"`+pair["access"]+`"}`, 200)
			post(tt.prefix+"/verify", `{"token":"`+pair["access"]+`"}`, 200)
			if got := post(tt.prefix+"/refresh/", `{"refresh":"`+pair["refresh"]+`"}`, 200); got["access"] == "" {
				t.Errorf("refresh answered %v, want an access token", got)
			}
			post(tt.prefix+"/blacklist/", `{"refresh":"`+pair["refresh"]+`"}`, 200)
			post(tt.prefix+"/refresh", `{"refresh":"`+pair["refresh"]+`"}`, 401)
			post(tt.prefix+"/nosuch/", `{}`, 404)
			if code := get("/hello/", "Bearer "+pair["access"]); code != 200 {
				t.Errorf("GET /hello/ with the access token: %d, want 200", code)
			}
			if code := get("/hello/", ""); code != 401 {
				t.Errorf("GET /hello/ without a token: %d, want 401", code)
			}
		})
	}
}
