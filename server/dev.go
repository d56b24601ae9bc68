package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

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
func runDev(app *App, cfg Config, log *zap.Logger) error {
	in, err := takeDevInherited()
	if err != nil {
		return err
	}
	if in.fds == nil {
		fmt.Fprint(os.Stderr, banner)
	}
	rl := newReloader(log, in)
	next, fds, err := serveDev(app, cfg, log, in, rl)
	if next == "" {
		rl.close()
		return err
	}
	if app.authPrefix != "" && cfg.SecretKey != "" && os.Getenv("SERVER_SECRET_KEY") == "" {
		// Keep the key, generated or not, so tokens survive a reload: a
		// reload is not a start. (A flag's key wins over it anyway.)
		os.Setenv("SERVER_SECRET_KEY", cfg.SecretKey)
	}
	err = rl.execReload(next, fds)
	// Only a failed exec gets here, after the drain: stop, as after TERM.
	for _, fd := range fds {
		syscall.Close(fd)
	}
	rl.close()
	return err
}

// serveDev serves until a signal stops it (it then returns "") or a reload
// has built the binary next: it then returns next and the descriptors of
// the listeners to pass on, once the requests in flight are done.
func serveDev(app *App, cfg Config, log *zap.Logger, in devInherited, rl *reloader) (next string, fds []int, err error) {
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
			return "", nil, err
		}
		if len(lns) != len(cfg.Bind) {
			log.Warn("--bind changed: a reload keeps the old addresses; restart to bind the new ones")
		}
	} else {
		for _, addr := range cfg.Bind {
			ln, err := serve.Listen(addr)
			if err != nil {
				return "", nil, err
			}
			lns = append(lns, ln)
		}
	}
	access, _, err := newAccessLog(cfg)
	if err != nil {
		return "", nil, err
	}
	if access != nil {
		defer access.Sync()
	}
	if app.authPrefix != "" {
		store, err := bootAuth(app, cfg, log, nil)
		if err != nil {
			return "", nil, fmt.Errorf("boot: %w", err)
		}
		defer store.Close()
	}
	if app.OnBoot != nil {
		if err := app.OnBoot(cfg); err != nil {
			return "", nil, fmt.Errorf("boot: %w", err)
		}
	}
	proxies, err := serve.ParseProxies(cfg.ForwardedAllowIPs)
	if err != nil {
		return "", nil, err
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
	} else {
		log.Info("listening", zap.Strings("addr", addrs))
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
			return "", nil, fmt.Errorf("reload: %w", err)
		}
		log.Info("reloading: finishing the requests in flight")
	}
	// The deadline runs from the signal or the reload. A signal during a
	// reload's drain stops the server instead; a second one during a stop
	// ends the drain at once.
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
	cancel()
	select {
	case <-stopped:
		for _, fd := range fds {
			syscall.Close(fd)
		}
		os.Remove(next)
		return "", nil, nil
	default:
	}
	return next, fds, nil
}
