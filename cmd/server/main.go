// Command server is Remuda's default binary: a demo app with a health
// check, run by server.Main. "server run" is the development server,
// "server run --prod" the pre-forking production runner.
package main

import (
	"net/http"

	"github.com/remuda/remuda/server"
)

func main() {
	app := server.NewApp()
	app.HandleFunc("GET /healthz", healthz)
	server.Main(app)
}

// healthz answers 200 "ok" while the process serves: for load balancers
// and systemd-less health checks.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}
