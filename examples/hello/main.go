// Command hello is the smallest Remuda app: one handler, one binary.
//
//	go run ./examples/hello run            # development server
//	go run ./examples/hello run --prod     # master + workers
package main

import (
	"fmt"
	"net/http"

	"github.com/remuda/remuda/server"
)

func main() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from Remuda!")
	})
	server.Main(app)
}
