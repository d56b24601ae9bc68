package workers

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
)

// Solo runs one Worker in this process, with no master: the process model
// of a dev server ("one worker, no master"; Gunicorn's --reload with one
// worker, less its arbiter). The worker boots and serves as RunWorker's
// does, with the same server (request timeout, keep-alive, max_requests,
// request-head limits, connection cap, TLS, trusted proxies, access log),
// the same drain and the same Shutdown and Close. It differs where there
// is no master:
//
//   - It is stopped by TERM or INT from a terminal rather than by a
//     master: both drain (INT, a terminal's Ctrl-C, is not the fast stop a
//     master's INT is), and a second one ends the drain, or abandons
//     Worker.Shutdown, at once, where a master would kill the worker.
//   - A TERM spends Config.ShutdownDelay first as a worker does (the
//     readiness endpoint answers 503, everything else is served); a second
//     TERM or an INT ends the delay and starts the drain, and a code
//     reload's handover waits for the stop instead. An INT skips the delay.
//   - A recycle (Config.Timeout, MaxRequests) is logged and the process
//     goes on serving: no master would start its replacement.
//   - Worker.Counters is not counted on: no master adds the counts up.
//   - Config.Workers, BootTimeout, MaxMemory and App are not read.
//   - A drain waits at most SoloHijackedGrace for the connections the app
//     hijacked (WebSockets): a browser tab's WebSocket, whose app may not
//     watch server.Draining, must not hold up a code reload or a Ctrl-C
//     until Config.GracefulTimeout.
//
// It may hand its listeners over to a successor instead of stopping (a
// dev server's code reload): see Handover.
type Solo struct {
	// Config is what the worker serves with; its zero value is usable (see
	// Config's defaults).
	Config Config
	// Listeners are served until the drain closes them; if boot fails,
	// they are left open to the caller.
	Listeners []net.Listener
	// OnServing, if non-nil, runs once the listeners serve, before a
	// signal or a handover is handled: to say so and run what waits for
	// it (an App's OnReady).
	OnServing func()
	// Handover, if non-nil, is closed (or sent on) to retire the worker
	// for a successor: it drains as for TERM, and Run reports handedOver.
	// A TERM or INT during that drain makes it a stop instead. What the
	// successor inherits (duplicates of the listeners' descriptors) must
	// be taken before Handover is closed: the drain closes the listeners.
	// If nil, only a signal stops the worker.
	Handover <-chan struct{}
}

// SoloHijackedGrace is how long a Solo worker's drain waits for the
// connections the app hijacked before it closes them
// (serve.Options.HijackedGrace): time for an app that watches
// server.Draining to send its close frames.
const SoloHijackedGrace = time.Second

// Run is the whole life of a Solo worker, as RunWorker is a worker's under
// a master: it takes TERM, INT and USR1 first (a signal that arrives while
// booting is handled once it serves), boots with boot, serves until a
// signal or a handover, waits Config.ShutdownDelay after a TERM, drains
// within Config.GracefulTimeout, then runs
// Worker.Shutdown with what remains of it and Worker.Close. USR1 calls
// Worker.Reopen. It reports whether the worker was handed over (see
// Handover); it returns an error wrapping ErrBootFailed when boot fails.
func (s *Solo) Run(boot func() (*Worker, error)) (handedOver bool, err error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	w, err := boot()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrBootFailed, err)
	}
	log := w.Logger
	if log == nil {
		log = zap.NewNop()
	}
	abandoned := false // the shutdown hook overran its deadline
	defer func() { release(w, log, abandoned) }()

	var ready readiness
	opts := serverOptions(w, s.Config, log, nil, func(reason string) {
		log.Warn("under a master this process would now be recycled; with none it goes on serving", zap.String("reason", reason))
	})
	opts.HijackedGrace = SoloHijackedGrace
	srv := serve.New(ready.handler(w.Handler), opts)
	srv.Serve(s.Listeners)
	if s.OnServing != nil {
		s.OnServing()
	}
	for stop := false; !stop; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				reopen(w, log)
				continue
			}
			log.Info("stopping", signalField(sig))
			ready.stop()
			if sig == syscall.SIGTERM {
				s.shutdownDelay(sigs, w, log)
			}
			stop = true
		case <-s.Handover:
			log.Info("handing over: finishing the requests in flight")
			handedOver, stop = true, true
		}
	}

	// Signals during the drain and the shutdown hook: see Solo.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan bool, 1) // a handover that became a stop
	go func() {
		instead := false
		defer func() { stopped <- instead }()
		for {
			select {
			case sig := <-sigs:
				switch {
				case sig == syscall.SIGUSR1:
					reopen(w, log)
				case handedOver && !instead:
					instead = true
					log.Info("stopping instead of handing over", signalField(sig))
				default:
					log.Info("stopping now", signalField(sig))
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	hookCtx, hookCancel := drain(ctx, srv, s.Config)
	abandoned = !shutdown(hookCtx, w.Shutdown, log)
	hookCancel()
	cancel()
	return handedOver && !<-stopped, nil
}

// shutdownDelay is Config.ShutdownDelay after the TERM that stops a Solo
// worker: it goes on serving, its readiness endpoint answering 503, until
// the delay has passed or a second TERM or an INT comes. USR1 reopens the
// logs meanwhile; a handover is left waiting: the stop wins.
func (s *Solo) shutdownDelay(sigs <-chan os.Signal, w *Worker, log *zap.Logger) {
	d := s.Config.ShutdownDelay
	if d <= 0 {
		return
	}
	log.Info("shutdown delay: not ready, still serving", zap.Duration("duration", d))
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				reopen(w, log)
				continue
			}
			log.Info("shutdown delay cut short", signalField(sig))
			return
		}
	}
}
