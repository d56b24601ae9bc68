package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/server"
)

// show sends method path to h, as a client would to the server, and
// prints the answer.
func show(h http.Handler, method, path string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	fmt.Printf("%s %s: %d %s\n", method, path, w.Code, strings.TrimSpace(w.Body.String()))
}

// An App is routes on Go 1.22 ServeMux patterns. app.Handler() is what
// the server serves: a test drives it with net/http/httptest, without a
// process or a socket.
func ExampleNewApp() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from Remuda!")
	})
	app.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s\n", r.PathValue("id"))
	})

	show(app.Handler(), "GET", "/")
	show(app.Handler(), "GET", "/items/42")
	show(app.Handler(), "POST", "/items/42")
	show(app.Handler(), "GET", "/nowhere")
	// Output:
	// GET /: 200 Hello from Remuda!
	// GET /items/42: 200 item 42
	// POST /items/42: 405 Method Not Allowed
	// GET /nowhere: 404 404 page not found
}

// Handle takes any http.Handler: a file server, another router (chi,
// gorilla/mux) mounted under a prefix, a handler of a library.
func ExampleApp_Handle() {
	api := http.NewServeMux() // or chi.NewRouter(), ...
	api.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"status":"ok"}`)
	})

	app := server.NewApp()
	app.Handle("/api/", http.StripPrefix("/api", api))

	show(app.Handler(), "GET", "/api/v1/status")
	// Output:
	// GET /api/v1/status: 200 {"status":"ok"}
}

// Use wraps every route in middleware. The first added is the outermost:
// it sees the request first and the response last.
func ExampleApp_Use() {
	app := server.NewApp()
	trace := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Println(name, "in")
				next.ServeHTTP(w, r)
				fmt.Println(name, "out")
			})
		}
	}
	app.Use(trace("outer"))
	app.Use(trace("inner"))
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("handler")
	})

	app.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	// Output:
	// outer in
	// inner in
	// handler
	// inner out
	// outer out
}

// Main is the whole program's command line: `server run` (the development
// server), `server run --prod` (a master and its workers), `check`,
// `migrate`, `createuser`, `version`, ... It runs in the master and again
// in every worker (the same binary, re-executed), and it exits the
// process: this example is compiled by go test but not run.
func ExampleMain() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from Remuda!")
	})
	app.OnBoot = func(cfg server.Config) error {
		// Runs in every serving process before it serves: open databases
		// and warm caches here, not in main, which the master runs too.
		// An error stops this process's boot.
		return nil
	}
	server.Main(app)
}

// Register adds a module to the app: here auth's, which serves
// simplejwt's token endpoints (/api/token/, refresh/, verify/,
// blacklist/) and guards routes with Required. Main boots it in every
// serving process, with the store and keys of the configuration
// (--database, SERVER_SECRET_KEY), so this example is compiled but not
// run; Example_auth shows the same routes at work under httptest.
func ExampleApp_Register() {
	users := new(auth.Module)
	app := server.NewApp()
	app.Register(users)
	users.Mount(app, "/api/token")
	app.Handle("GET /hello/", users.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context()) // always ok behind Required
		fmt.Fprintf(w, "Hello, %s!\n", u.Username)
	})))
	server.Main(app)
}

// An app with auth, driven by net/http/httptest: no process, no socket.
// Under a test nothing boots the app's modules, so the test builds the
// Auth itself (auth.New, with a store and a key) and mounts that: the
// routes are the same as with auth.Module.
func Example_auth() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	store, err := auth.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	auth.CreateUser(context.Background(), store, "alice", "correct horse battery staple")
	users, err := auth.New(auth.Config{Tokens: auth.TokenConfig{SecretKey: "example-secret-key-of-at-least-32-bytes!"}}, store)
	if err != nil {
		log.Fatal(err)
	}

	app := server.NewApp()
	users.Mount(app, "/api/token")
	app.Handle("GET /hello/", users.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		fmt.Fprintf(w, "Hello, %s!\n", u.Username)
	})))
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/api/token/", "application/json",
		strings.NewReader(`{"username": "alice", "password": "correct horse battery staple"}`))
	if err != nil {
		log.Fatal(err)
	}
	var pair struct{ Access, Refresh string }
	json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()
	fmt.Println("token:", resp.StatusCode)

	for _, authorization := range []string{"Bearer " + pair.Access, ""} {
		req, _ := http.NewRequest("GET", srv.URL+"/hello/", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s", resp.StatusCode, body)
	}
	// Output:
	// token: 200
	// 200 Hello, alice!
	// 401 {"detail":"Authentication credentials were not provided."}
}
