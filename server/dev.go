package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/workers"
)

// banner is printed at every dev start: a dev server has a single process,
// no supervision and an ephemeral secret, and must not face the internet.
const banner = `
  ┌───────────────────────────────────────────────────────────────────┐
  │  WARNING: this is a development server.                           │
  │  Do not use it in production: run "server run --prod" instead.    │
  └───────────────────────────────────────────────────────────────────┘
`

// runDev serves app in this one process until TERM or INT (graceful);
// a second signal stops it at once. When the sources change it rebuilds
// and replaces itself with the new binary (see reload.go).
//
// The dev server has no master: it runs App's hooks of both roles (see
// App). A start runs OnBoot, then OnReady once it listens; a stop drains,
// runs OnShutdown, then OnExit; a code reload drains and runs OnShutdown,
// and the new code runs OnBoot, then OnReload once it listens. OnExit runs
// at every exit once the sockets are bound (a failed OnBoot included), as
// the prod master's does.
func runDev(app *App, cfg Config, log *zap.Logger) error {
	in, err := takeDevInherited()
	if err != nil {
		return err
	}
	if in.fds == nil {
		fmt.Fprint(os.Stderr, banner)
	}
	rl := newReloader(log, in)
	next, fds, bound, err := serveDev(app, cfg, log, in, rl)
	exit := func() {
		if bound && app.OnExit != nil {
			if err := app.OnExit(cfg); err != nil {
				log.Error("exit hook failed", zap.Error(err))
			}
		}
	}
	if next == "" {
		exit()
		rl.close()
		return err
	}
	err = rl.execReload(next, fds)
	// Only a failed exec gets here, after the drain: stop, as after TERM.
	for _, fd := range fds {
		syscall.Close(fd)
	}
	exit()
	rl.close()
	return err
}

// serveDev serves until a signal stops it (it then returns "") or a reload
// has built the binary next: it then returns next and the descriptors of
// the listeners to pass on, once the requests in flight are done and
// OnShutdown has run. bound tells whether it got its sockets.
func serveDev(app *App, cfg Config, log *zap.Logger, in devInherited, rl *reloader) (next string, fds []int, bound bool, err error) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	if in.fds != nil {
		lns, err = in.listeners()
		if err != nil {
			return "", nil, bound, err
		}
		if len(lns) != len(cfg.Bind) {
			log.Warn("--bind changed: a reload keeps the old addresses; restart to bind the new ones")
		}
	} else {
		for _, addr := range cfg.Bind {
			ln, err := serve.Listen(addr)
			if err != nil {
				return "", nil, bound, err
			}
			lns = append(lns, ln)
		}
	}
	bound = true
	access, _, err := newAccessLog(cfg)
	if err != nil {
		return "", nil, bound, err
	}
	if access != nil {
		defer access.Sync()
	}
	abandoned := false // the shutdown hook overran its deadline
	closeModules, err := bootModules(app, cfg, log, nil)
	if err != nil {
		return "", nil, bound, fmt.Errorf("boot: %w", err)
	}
	defer func() {
		if !abandoned { // it may still be using what the modules opened
			closeModules()
		}
	}()
	if app.OnBoot != nil {
		if err := app.OnBoot(cfg); err != nil {
			return "", nil, bound, fmt.Errorf("boot: %w", err)
		}
	}
	proxies, err := serve.ParseProxies(cfg.ForwardedAllowIPs)
	if err != nil {
		return "", nil, bound, err
	}
	srv := serve.New(debugPage(log)(app.Handler()), serve.Options{
		Timeout:   cfg.Timeout,
		KeepAlive: cfg.KeepAlive,
		Proxies:   proxies,
		Logger:    log,
		AccessLog: access,
		OnRecycle: func(reason string) {
			log.Warn("in prod this worker would now be recycled; the dev server keeps going", zap.String("reason", reason))
		},
	})
	srv.Serve(lns)
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr().String()
	}
	if in.fds != nil {
		log.Info("reloaded: listening", zap.Strings("addr", addrs))
		if app.OnReload != nil {
			if err := app.OnReload(cfg); err != nil {
				log.Error("reload hook failed", zap.Error(err))
			}
		}
	} else {
		log.Info("listening", zap.Strings("addr", addrs))
		if app.OnReady != nil {
			if err := app.OnReady(cfg); err != nil {
				log.Error("ready hook failed", zap.Error(err))
			}
		}
	}

	built := make(chan string)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	if rl != nil {
		go rl.watch(built, stopWatch)
	}

	select {
	case sig := <-sigs:
		log.Info("stopping", zap.String("signal", workers.SignalName(sig)))
	case next = <-built:
		// Duplicate the sockets before the drain closes the listeners:
		// they stay open, and connections made from now on wait in the
		// kernel's queue for the new process.
		fds, err = handOver(lns)
		if err != nil {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			os.Remove(next)
			return "", nil, bound, fmt.Errorf("reload: %w", err)
		}
		log.Info("reloading: finishing the requests in flight")
	}
	// The deadline of the drain and of OnShutdown after it runs from the
	// signal or the reload. A signal during a reload's drain (or its
	// OnShutdown) stops the server instead; a second one during a stop
	// ends the drain, or abandons OnShutdown, at once.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.GracefulTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			if next == "" {
				cancel()
				return
			}
			close(stopped)
			log.Info("stopping instead of reloading")
			select {
			case <-sigs:
				cancel()
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("requests still running were dropped", zap.Error(err))
	}
	abandoned = !devShutdown(ctx, app, cfg, log)
	cancel()
	select {
	case <-stopped:
		for _, fd := range fds {
			syscall.Close(fd)
		}
		os.Remove(next)
		return "", nil, bound, nil
	default:
	}
	return next, fds, bound, nil
}

// devShutdown runs App.OnShutdown, if set, with ctx, and waits for it
// until ctx is done (its deadline, or a second signal). It reports false
// if the hook was abandoned: its goroutine goes on until the process
// exits or execs. A prod worker does the same (workers.Worker.Shutdown).
func devShutdown(ctx context.Context, app *App, cfg Config, log *zap.Logger) bool {
	if app.OnShutdown == nil {
		return true
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- app.OnShutdown(ctx, cfg) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done: // returned just as its deadline passed
		default:
			log.Error("shutdown hook abandoned", zap.Duration("duration", time.Since(start)))
			return false
		}
	}
	if err != nil {
		log.Error("shutdown hook failed", zap.Error(err), zap.Duration("duration", time.Since(start)))
	}
	return true
}
