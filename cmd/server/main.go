// Command server is Remuda's default binary: the demo app run by
// server.Main. "server run" is the development server, "server run --prod"
// the pre-forking production runner.
//
//	GET  /healthz              200 "ok"
//	POST /api/token/           simplejwt's endpoints: obtain, refresh/,
//	     /api/token/refresh/   verify/, blacklist/
//	     ...
//	GET  /hello/               protected: {"message": "Hello, World!"}
package main

import (
	"net/http"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/postgres"
	"github.com/remuda/remuda/server"
)

func main() {
	server.Main(newApp())
}

// newApp is the demo app.
func newApp() *server.App {
	users := &auth.Module{Postgres: postgres.Driver{}}
	app := server.NewApp()
	app.Register(users)
	app.HandleFunc("GET /healthz", healthz)
	users.Mount(app, "/api/token")
	app.Handle("GET /hello/", users.Required(http.HandlerFunc(hello)))
	return app
}

// healthz answers 200 "ok" while the process serves: for load balancers
// and health checks.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

// helloBody is hello's answer, encoded once.
var helloBody = []byte(`{"message":"Hello, World!"}` + "\n")

// hello is the seed tutorial's protected view.
func hello(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(helloBody)
}
