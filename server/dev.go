package server

import (
	"fmt"
	"net"
	"os"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/internal/workers"
)

// banner is printed at every dev start: a dev server has a single process,
// no supervision and an ephemeral secret, and must not face the internet.
// prog is the binary's name, as the user runs it.
func banner(prog string) string {
	lines := []string{
		"WARNING: this is a development server.",
		fmt.Sprintf("Do not use it in production: run %q instead.", prog+" run --prod"),
	}
	width := 0
	for _, l := range lines {
		width = max(width, utf8.RuneCountInString(l))
	}
	var b strings.Builder
	rule := strings.Repeat("─", width+4)
	fmt.Fprintf(&b, "\n  ┌%s┐\n", rule)
	for _, l := range lines {
		fmt.Fprintf(&b, "  │  %s%s  │\n", l, strings.Repeat(" ", width-utf8.RuneCountInString(l)))
	}
	fmt.Fprintf(&b, "  └%s┘\n", rule)
	return b.String()
}

// runDev serves app in this one process, as one worker with no master
// (workers.Solo), until TERM or INT (graceful); a second signal stops it
// at once. When the sources change it rebuilds and replaces itself with
// the new binary (see reload.go): a handover of the same worker, which
// drains as at a stop. It boots as a prod worker does (bootApp); out is
// where log writes.
//
// The dev server has no master: it runs App's hooks of both roles (see
// App). A start runs OnBoot, then OnReady once it listens; a stop drains,
// runs OnShutdown, then OnExit; a code reload drains and runs OnShutdown,
// and the new code runs OnBoot, then OnReload once it listens. OnExit runs
// at every exit once the sockets are bound (a failed OnBoot included), as
// the prod master's does.
func runDev(app *App, cfg Config, log *zap.Logger, out logOutput) error {
	in, err := takeDevInherited()
	if err != nil {
		return err
	}
	if in.fds == nil {
		fmt.Fprint(os.Stderr, banner(progName()))
	}
	rl := newReloader(log, in)
	defer rl.close() // not run by a successful exec
	lns, err := devListeners(cfg, in, log)
	if err != nil {
		return err
	}
	next, fds, err := serveDev(app, cfg, log, out, in, rl, lns)
	exit := func() {
		if app.OnExit != nil {
			if err := app.OnExit(cfg); err != nil {
				log.Error("exit hook failed", zap.Error(err))
			}
		}
	}
	if next == "" {
		exit()
		return err
	}
	err = rl.execReload(next, fds)
	// Only a failed exec gets here, after the drain: stop, as after TERM.
	closeFDs(fds)
	exit()
	return err
}

// devListeners are the dev server's sockets: its predecessor's after a
// code reload, else bound from cfg.Bind.
func devListeners(cfg Config, in devInherited, log *zap.Logger) ([]net.Listener, error) {
	if in.fds != nil {
		lns, err := in.listeners()
		if err == nil && len(lns) != len(cfg.Bind) {
			log.Warn("--bind changed: a reload keeps the old addresses; restart to bind the new ones")
		}
		return lns, err
	}
	var lns []net.Listener
	for _, addr := range cfg.Bind {
		ln, err := serve.Listen(addr, cfg.Backlog)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveDev boots app and serves it on lns as a workers.Solo until a signal
// stops it (it then returns "") or a reload has built the binary next: it
// then returns next and the descriptors of the listeners to pass on, once
// the requests in flight are done and OnShutdown has run. A signal during
// a reload's drain makes it a stop.
func serveDev(app *App, cfg Config, log *zap.Logger, out logOutput, in devInherited, rl *reloader, lns []net.Listener) (next string, fds []int, err error) {
	handover := make(chan struct{})
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if rl == nil {
			return
		}
		for {
			bin := rl.watch(stopWatch)
			if bin == "" {
				return
			}
			// Duplicate the sockets before the drain closes the
			// listeners: they stay open, and connections made from then
			// on wait in the kernel's queue for the new process.
			dups, err := handOver(lns)
			if err == nil {
				next, fds = bin, dups
				close(handover)
				return
			}
			os.Remove(bin)
			select {
			case <-stopWatch:
				return
			default:
				log.Error("reload failed: still serving the previous code", zap.Error(err))
			}
		}
	}()

	solo := &workers.Solo{
		Config:    workersConfig(cfg),
		Listeners: lns,
		Handover:  handover,
		OnServing: func() {
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
				return
			}
			log.Info("listening", zap.Strings("addr", addrs))
			if app.OnReady != nil {
				if err := app.OnReady(cfg); err != nil {
					log.Error("ready hook failed", zap.Error(err))
				}
			}
		},
	}
	handedOver, err := solo.Run(func() (*workers.Worker, error) {
		return bootApp(app, cfg, log, out, out.Reopen)
	})
	close(stopWatch)
	for _, ln := range lns {
		ln.Close() // the drain closed them, unless the boot failed
	}
	<-watched
	if handedOver {
		return next, fds, nil
	}
	closeFDs(fds)
	if next != "" {
		os.Remove(next)
	}
	return "", nil, err
}
