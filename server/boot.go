package server

import (
	"context"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/internal/proxyproto"
	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/internal/workers"
)

// bootApp boots app into the Worker that serves it: the one boot path of
// every process that serves requests, a prod worker under its master
// (runWorker, in workers.RunWorker) and the dev server, which is one such
// worker with no master (runDev, in workers.Solo). Both then serve it with
// the same server, drain and shutdown (package workers). log is the
// process's logger and out where it writes: the access log's "-" goes
// there too. reopenLog, if non-nil, reopens out's file on USR1.
//
// It opens the access log, boots the modules (auth: its store, counting
// logins on the worker's counters), runs App.OnBoot, and decides the handler, the
// trusted proxies, the PROXY protocol, TLS, and the Shutdown and Close
// that end the worker's life. Dev and prod differ here in one thing only,
// the panic page of the README's "Dev and prod" table: dev answers a panic
// with the debug page (debugPage), prod with the 500 JSON of harden.
//
// Booting here, the dev server gained what it lacked when it booted on
// its own: HTTPS with certfile/keyfile; prod's HTTP hardening (bodies
// over max_body_size get 413, the security headers and HSTS, requests
// checked by internal/strict, the request-head limits limit_request_line,
// limit_request_fields and limit_request_field_size, the 64 KiB head cap,
// the write deadline); the connection cap worker_connections;
// max_requests (logged: no master replaces the process); USR1 reopening
// its log files; and an access log "-" written where the error log goes,
// as a worker's. What still differs is the process model's (workers.Solo:
// no master, so no metrics endpoint, no recycle, INT drains) and the
// configuration's (the dev logger, the generated secret key).
func bootApp(app *App, cfg Config, log *zap.Logger, out zapcore.WriteSyncer, reopenLog func() error) (*workers.Worker, error) {
	access, reopenAccess, err := accessLogTo(cfg, out)
	if err != nil {
		return nil, err
	}
	// One set for the whole worker: requests are counted on it, and the
	// modules count logins on it (Counters.Login).
	counts := new(workers.Counters)
	// What the modules open stays open for the worker's life and closes
	// when it stops: PostgreSQL then sees its connections end.
	closeModules, err := bootModules(app, cfg, log, counts.Login)
	if err != nil {
		return nil, err
	}
	// A boot that fails past the modules closes them, the worker's Close
	// never running.
	fail := func(err error) (*workers.Worker, error) {
		closeModules()
		return nil, err
	}
	if app.OnBoot != nil {
		if err := app.OnBoot(cfg); err != nil {
			return fail(err)
		}
	}
	proxies, err := serve.ParseProxies(cfg.ForwardedAllowIPs)
	if err != nil {
		return fail(err)
	}
	proxyProtocol, err := proxyProtocolOf(cfg)
	if err != nil {
		return fail(err)
	}
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return fail(err)
	}
	var shutdown func(context.Context) error
	if app.OnShutdown != nil {
		shutdown = func(ctx context.Context) error { return app.OnShutdown(ctx, cfg) }
	}
	var h http.Handler = app.Handler()
	if !cfg.Prod {
		// Inside harden: the debug page recovers the panic first.
		h = debugPage(log)(h)
	}
	return &workers.Worker{
		Shutdown:       shutdown,
		Handler:        harden(h, log),
		Logger:         log,
		AccessLog:      access,
		Reopen:         reopenAll(reopenLog, reopenAccess),
		TrustedProxies: proxies,
		ProxyProtocol:  proxyProtocol,
		HTTP2Cleartext: cfg.HTTP2Cleartext == HTTP2PriorKnowledge,
		TLS:            tlsCfg,
		Counters:       counts,
		Close:          closeModules,
	}, nil
}

// proxyProtocolOf is the PROXY protocol as cfg's proxy_protocol and
// proxy_allow_from set it.
func proxyProtocolOf(cfg Config) (serve.ProxyProtocol, error) {
	mode, err := proxyproto.ParseMode(cfg.ProxyProtocol)
	if err != nil {
		return serve.ProxyProtocol{}, err
	}
	allow, err := serve.ParseProxies(cfg.ProxyAllowFrom)
	if err != nil {
		return serve.ProxyProtocol{}, err
	}
	return serve.ProxyProtocol{Mode: mode, AllowFrom: allow}, nil
}
