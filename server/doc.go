// Package server is what a Go app developer imports to serve an app with
// Remuda: an App to register handlers on, and Main, the command line of
// the binary the app becomes.
//
// # An app in one file
//
// An app is ordinary net/http code. Build an App, register handlers on it,
// and hand it to Main:
//
//	func main() {
//		users := new(auth.Module)
//		app := server.NewApp()
//		app.Register(users)                                     // a module: auth
//		app.HandleFunc("GET /{$}", home)                        // Go 1.22 ServeMux patterns
//		app.Handle("/static/", http.FileServerFS(staticFiles))  // any http.Handler
//		app.Use(requestTimer)                                   // middleware around every route
//		users.Mount(app, "/api/token")                          // simplejwt's token endpoints
//		app.Handle("GET /me/", users.Required(http.HandlerFunc(me)))
//		server.Main(app)
//	}
//
// Handle and HandleFunc take http.ServeMux patterns (a method, a host, a
// path, {wildcards} that r.PathValue reads). Since a route is any
// http.Handler, another router (chi, gorilla/mux) mounts under a prefix
// with Handle. Use wraps every route in middleware, the first added
// outermost; register everything before Main, which builds the chain once.
// App.Handler returns that chain: drive it with net/http/httptest in tests,
// no process or socket needed.
//
// # Modules, and auth
//
// A module is a part of an app that the server boots and stops with it,
// whose settings join the server's (flags, SERVER_* variables, file keys),
// whose commands join the binary's and whose checks join `server check`'s
// (package module states the contract). Register adds one; the server
// knows it only through that contract, so an app links only the modules it
// registers: an app without auth links no database driver.
//
// Package auth's Module serves djangorestframework-simplejwt's endpoints
// under a prefix (obtain, refresh/, verify/, blacklist/, with simplejwt's
// bodies and status codes) and protects routes with its Required: only
// requests with a valid access token of an active user reach them; inside,
// auth.UserFrom(r.Context()) returns that user and true. The users and
// refresh tokens live in the database of --database (SQLite by default;
// PostgreSQL for several hosts), which `server createuser` and `server
// importusers --from-django` fill. The store and keys are opened as a
// serving process boots; under httptest, where nothing boots, build an
// auth.Auth with auth.New and mount that (Example_auth).
//
// # Main and the command line
//
// Main runs the command line and exits the process:
//
//	server run                   the development server
//	server run --prod            the production runner: a master and its workers
//	server check [--prod]        validate the configuration, print it, run the deploy checklist
//	server migrate               create (SQLite) and migrate the database
//	server createuser --username NAME
//	server version
//
// Every setting is a flag, an environment variable SERVER_<NAME> and a key
// of the TOML file given by --config, in that order of precedence, over
// the mode's default (`server run -h` lists them).
//
// Main runs more than once per server. In prod the master re-executes the
// same binary for each worker, which is told apart by its environment,
// never by a flag: main runs in the master and in every worker, and Main
// then does the right thing in each. So main must do no more than build
// the App: open databases, read files and start goroutines in App.OnBoot,
// which runs in every process that serves (the dev server, each worker)
// before it serves, and whose error stops that process's boot.
//
// # Long-lived connections
//
// A WebSocket, a Server-Sent Events stream or a long poll outlives the
// requests around it, and a process that retires (a HUP's new generation,
// TTOU, a recycle, TERM, the dev server's code reload) would cut it: its
// client sees a broken connection rather than a WebSocket close frame or
// a last event. Draining(r) is a channel closed when the process serving r
// starts to drain; select on it to end the connection cleanly. The drain
// waits for such connections as for requests in flight, and the process
// exits once they have ended, or at --graceful-timeout, where it closes
// what remains and logs how many (hijacked_cut, dropped).
//
// A WebSocket, here with github.com/coder/websocket, ends with status 1001
// ("going away"), which tells a client to reconnect, and reach a process
// that serves:
//
//	app.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
//		c, err := websocket.Accept(w, r, nil)
//		if err != nil {
//			return
//		}
//		defer c.CloseNow()
//		ctx, cancel := context.WithCancel(context.Background())
//		defer cancel()
//		go func() {
//			select {
//			case <-server.Draining(r):
//				c.Close(websocket.StatusGoingAway, "server restarting")
//			case <-ctx.Done():
//			}
//		}()
//		for {
//			typ, msg, err := c.Read(ctx)
//			if err != nil {
//				return // closed: by the client, or by the goroutine above
//			}
//			c.Write(ctx, typ, msg) // echo
//		}
//	})
//
// A Server-Sent Events stream sends a last event and returns; the
// browser's EventSource reconnects on its own:
//
//	app.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
//		w.Header().Set("Content-Type", "text/event-stream")
//		tick := time.NewTicker(time.Second)
//		defer tick.Stop()
//		for {
//			select {
//			case <-server.Draining(r):
//				fmt.Fprint(w, "event: bye\ndata: server restarting\n\n")
//				return
//			case <-r.Context().Done():
//				return // the client went
//			case t := <-tick.C:
//				fmt.Fprintf(w, "data: %s\n\n", t.Format(time.RFC3339))
//				http.NewResponseController(w).Flush()
//			}
//		}
//	})
//
// A streaming response is a request: --timeout bounds it as any other
// (past it the stream is cut and the worker recycled), so a stream meant
// to last longer needs a --timeout as long; a hijacked connection (a
// WebSocket) is not bounded. With --shutdown-delay the channel closes when
// the drain starts, at the end of the delay: until then the process serves
// as usual.
//
// # Dev and prod
//
// `server run` is one process for a developer's machine: coloured logs,
// an access log on stderr, a debug page for panics, a secret key made up at
// each start (tokens die with the process), and a rebuild and re-exec of
// itself when the main module's Go sources change, keeping its socket
// open. It prints a banner saying it is not for production. It boots and
// serves as one prod worker does, with no master: the same request limits,
// TLS and drain.
//
// `server run --prod` is Gunicorn's model: a master binds the sockets (or
// takes them from systemd) and supervises --workers worker processes that
// serve; it replaces a worker that dies, recycles one stuck past
// --timeout, and on HUP starts a new generation from the binary on disk
// before retiring the old one, losing no request. Prod needs a secret key
// of at least 32 bytes (SERVER_SECRET_KEY) when the app registers auth,
// writes JSON logs, and answers a panic with a 500 that carries a request
// id (the stack goes to the log). The process model lives in
// internal/workers; the README has the operator's side (flags, signals,
// systemd, metrics).
package server
