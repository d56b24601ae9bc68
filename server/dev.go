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
// a second signal stops it at once.
func runDev(app *App, cfg Config, log *zap.Logger) error {
	fmt.Fprint(os.Stderr, banner)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, addr := range cfg.Bind {
		ln, err := serve.Listen(addr)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	access, _, err := newAccessLog(cfg)
	if err != nil {
		return err
	}
	if app.authPrefix != "" {
		store, err := bootAuth(app, cfg, log)
		if err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		defer store.Close()
	}
	if app.OnBoot != nil {
		if err := app.OnBoot(cfg); err != nil {
			return fmt.Errorf("boot: %w", err)
		}
	}
	srv := serve.New(app.Handler(), serve.Options{
		Timeout:   cfg.Timeout,
		KeepAlive: cfg.KeepAlive,
		Logger:    log,
		AccessLog: access,
		OnRecycle: func(reason string) {
			log.Warn("in prod this worker would now be recycled; the dev server keeps going", zap.String("reason", reason))
		},
	})
	srv.Serve(lns)
	log.Info("listening", zap.Strings("addr", cfg.Bind))

	sig := <-sigs
	log.Info("stopping", zap.Stringer("signal", sig))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.GracefulTimeout)
	defer cancel()
	go func() {
		<-sigs
		cancel()
	}()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("requests still running were dropped", zap.Error(err))
	}
	return nil
}
