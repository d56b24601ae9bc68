package server

import (
	"context"
	"net"
	"net/http"
	"sync"

	"github.com/remuda/remuda/auth"
)

// App is what an app developer builds: handlers on Go 1.22 ServeMux
// patterns, middleware, and a boot hook. Register everything before Main;
// the handler chain is built once, at the first call to Handler.
type App struct {
	// OnBoot, if non-nil, runs in every process that serves requests (the
	// dev server, each prod worker) before it serves, with the effective
	// Config: open databases and warm caches here, not in main, which also
	// runs in the master. An error aborts that process's boot; in prod the
	// master retries the worker with backoff, and exits if its first
	// generation cannot boot.
	OnBoot func(cfg Config) error

	mux        *http.ServeMux
	middleware []func(http.Handler) http.Handler
	authPrefix string // where MountAuth put the token endpoints; "" for none
	authClaims func(context.Context, auth.User) (map[string]any, error)
	once       sync.Once
	handler    http.Handler
}

// NewApp returns an App with no routes.
func NewApp() *App {
	return &App{mux: http.NewServeMux()}
}

// Handle registers h for pattern, as http.ServeMux.Handle.
func (a *App) Handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, h)
}

// HandleFunc registers f for pattern, as http.ServeMux.HandleFunc.
func (a *App) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	a.mux.HandleFunc(pattern, f)
}

// Use adds middleware around every route. The first added is the
// outermost: it sees the request first and the response last.
func (a *App) Use(mw func(http.Handler) http.Handler) {
	a.middleware = append(a.middleware, mw)
}

// Handler returns the routes wrapped in the middleware: what the server
// serves, and what a test can drive with net/http/httptest.
func (a *App) Handler() http.Handler {
	a.once.Do(func() {
		h := http.Handler(a.mux)
		for i := len(a.middleware) - 1; i >= 0; i-- {
			h = a.middleware[i](h)
		}
		a.handler = h
	})
	return a.handler
}

// ClientAddr is the address of the client that made r, without its port:
// the peer's, or, behind a proxy listed in --forwarded-allow-ips, the
// client's as the proxy reported it in X-Forwarded-For.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
