// Command jwtapi is the simplejwt tutorial as a Remuda app: token
// endpoints under /api/token/, and a protected /hello/ that greets the
// user whose access token came with the request. See README.md.
package main

import (
	"encoding/json"
	"net/http"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/server"
)

func main() {
	users := new(auth.Module)
	app := server.NewApp()
	app.Register(users)
	users.Mount(app, "/api/token")
	app.Handle("GET /hello/", users.Required(http.HandlerFunc(hello)))
	server.Main(app)
}

func hello(w http.ResponseWriter, r *http.Request) {
	user, _ := auth.UserFrom(r.Context())
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"message": "Hello, " + user.Username + "!"})
}
