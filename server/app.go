package server

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// App is what an app developer builds: handlers on Go 1.22 ServeMux
// patterns, middleware, and lifecycle hooks. Register everything before
// Main; the handler chain is built once, at the first call to Handler.
//
// Main runs in the master and again in every worker (the same binary
// re-executed), so every hook is set in every process; each runs only in
// its process's role. Two hooks run in each process that serves requests
// (each prod worker, the dev server):
//
//	OnBoot → serve → (TERM, HUP, TTOU, a recycle…) drain → OnShutdown → exit
//
// Three run in the prod master:
//
//	bind → OnReady (first generation ready) → OnReload (after each HUP, once
//	the new generation is ready) … → TERM/INT/QUIT → workers gone → OnExit
//
// The dev server has no master and plays both roles in its one process:
// OnBoot, OnReady once it listens, and at a stop its drain, OnShutdown,
// OnExit. A code reload re-executes it: drain, OnShutdown, then in the
// new code OnBoot and OnReload (not OnReady, not OnExit). See the README's
// "Hooks" section.
type App struct {
	// OnBoot, if non-nil, runs in every process that serves requests (the
	// dev server, each prod worker) before it serves, with the effective
	// Config: open databases and warm caches here, not in main, which also
	// runs in the master. An error aborts that process's boot; in prod the
	// master retries the worker with backoff, and exits if its first
	// generation cannot boot.
	OnBoot func(cfg Config) error
	// OnShutdown, if non-nil, runs in every process that served requests
	// once it has stopped serving, before it exits: close here what OnBoot
	// opened. It runs after the drain, when no request is in flight any
	// more or when --graceful-timeout cut the drain short. Its context's
	// deadline is what remains of --graceful-timeout, counted from the
	// start of the drain (the signal, the end of --shutdown-delay after a
	// TERM, or the reload): the drain and the hook share that budget, so
	// that the process is gone within it, as Gunicorn's graceful_timeout
	// promises. After a fast stop in prod (INT or QUIT to the master) a
	// worker's hook gets half a second; the dev server takes INT as a
	// graceful stop.
	// A hook still running at its deadline is abandoned: the process logs
	// "shutdown hook abandoned" and exits without waiting for it. An error
	// is logged. It does not run in a process whose OnBoot failed. If nil,
	// nothing runs.
	OnShutdown func(ctx context.Context, cfg Config) error
	// OnReady, if non-nil, runs once in the prod master when its first
	// generation of workers is whole and ready, after systemd was told
	// READY=1 (Gunicorn's when_ready runs earlier, before any worker
	// boots); in dev, once the server listens. It
	// gets the effective Config. The master handles no signal and no
	// worker while it runs: keep it short. An error is logged and changes
	// nothing. If nil, nothing runs.
	OnReady func(cfg Config) error
	// OnReload, if non-nil, runs in the prod master each time a HUP's new
	// generation is whole and ready, with the Config it reloaded, just
	// before the old generation is told to drain; not when the new one
	// could not boot and the old keeps serving. In dev it runs once the
	// new code listens after a code reload. An error is logged and changes
	// nothing. If nil, nothing runs.
	OnReload func(cfg Config) error
	// OnExit, if non-nil, runs once in the prod master as it exits, after
	// every worker has exited (Gunicorn's on_exit): after TERM, INT or
	// QUIT, and when the first generation could not boot. It gets the
	// Config of the generation that served last. It does not run in an
	// old master after a USR2 upgrade: the service goes on in the new
	// master, whose OnReady has run. In dev it runs as the server exits,
	// after OnShutdown (not at a code reload). It has no deadline of its
	// own (under systemd, TimeoutStopSec bounds it). An error is logged.
	// If nil, nothing runs.
	OnExit func(cfg Config) error

	mux        *http.ServeMux
	middleware []func(http.Handler) http.Handler
	modules    []Module
	// moduleSettings are the server's settings and those of modules, once
	// a module is registered (see settings).
	moduleSettings settingTable
	once           sync.Once
	handler        http.Handler
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
// the peer's, or the client's as a load balancer listed in
// --proxy-allow-from gave it in its PROXY protocol header, or, behind a
// proxy listed in --forwarded-allow-ips, the client's as the proxy
// reported it in X-Forwarded-For.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
