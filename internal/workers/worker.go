package workers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/ipc"
	"github.com/remuda/remuda/internal/metrics"
	"github.com/remuda/remuda/internal/serve"
	"github.com/remuda/remuda/internal/strict"
)

// Worker is what a worker process serves. Boot functions build it from the
// master's Config.
//
// A worker always serves hardened, as Gunicorn sits behind a proxy: request
// heads are capped at 64 KiB (larger: 431), each response has a write
// deadline of Config.Timeout plus 5 s when Timeout is set, and on plain
// HTTP every request is checked before net/http reads it, which refuses
// the malformed and smuggling requests that net/http would serve and
// applies Config's LimitRequest settings. Over TLS (Worker.TLS) the check
// is left out: it would hide the connection state that HTTP/2 needs.
type Worker struct {
	// Handler serves every request.
	Handler http.Handler
	// Logger receives the worker's own lines; the runtime adds the worker
	// number and generation. If nil, zap.NewNop() is used.
	Logger *zap.Logger
	// AccessLog, if non-nil, receives one line per request. It is synced
	// when the worker exits, so it may buffer.
	AccessLog *zap.Logger
	// Reopen, if non-nil, is called on SIGUSR1 to reopen log files after
	// logrotate moved them.
	Reopen func() error
	// Shutdown, if non-nil, runs once the worker has stopped serving: after
	// its drain, when no request is in flight any more (TERM, or its
	// master gone), or when Config.GracefulTimeout cut the drain short; at
	// once after a fast stop (INT). Its context's deadline is what remains
	// of the graceful timeout, counted from the start of the drain (the
	// signal, or the end of Config.ShutdownDelay): the drain and the hook
	// share that budget, and the master kills the worker one second
	// after it. After a fast stop the deadline is FastStopShutdown away. A
	// hook still running at its deadline is abandoned: the worker logs
	// "shutdown hook abandoned" and exits without waiting for it, and
	// without calling Close. An error it returns is logged. If nil,
	// nothing runs.
	Shutdown func(ctx context.Context) error
	// Close, if non-nil, is called once the worker has stopped serving,
	// after Shutdown, before it exits: to close what boot opened, such as
	// database connections, so that the database sees them end rather than
	// break.
	Close func() error
	// TrustedProxies are the peers whose X-Forwarded-For, -Proto and
	// X-Request-ID headers are believed; a request from one gets the
	// client's address as its RemoteAddr. From any other peer those
	// headers are removed. If nil, nobody is trusted.
	TrustedProxies []netip.Prefix
	// ProxyProtocol, when on, reads the PROXY protocol header of the
	// connections from the peers it lists (see serve.ProxyProtocol). Its
	// zero value is off.
	ProxyProtocol serve.ProxyProtocol
	// HTTP2Cleartext serves cleartext HTTP/2 with prior knowledge to the
	// TrustedProxies (see serve.Options.HTTP2Cleartext).
	HTTP2Cleartext bool
	// TLS, if non-nil, serves HTTPS with HTTP/2 on every listener.
	TLS *tls.Config
	// Counters, if non-nil, is where the worker counts its requests and the
	// app what it counts too (logins: Counters.Login), for the master to
	// add up. A boot function that counts on it (auth hooks) makes one and
	// sets it here. If nil, RunWorker makes one for the requests.
	Counters *Counters
}

// IsWorker reports whether this process was started by a master as one of
// its workers. It is decided by the environment, never by a flag a user
// could type.
func IsWorker() bool {
	_, ok := os.LookupEnv(ipc.EnvVersion)
	return ok
}

// RunWorker is the whole life of a worker process: it takes its control
// channel and listeners from the fds its master passed, reads its Config,
// boots with boot, reports ready, heartbeats every second, and serves until
// a TERM (Config.ShutdownDelay, then drain), the master's drain frame
// (drain), an INT (stop now), or the master's death (drain).
//
// It returns an error wrapping ErrProtocol when the master speaks another
// control-protocol version, and ErrBootFailed when boot fails; the master
// has then been told why.
func RunWorker(boot func(Config) (*Worker, error)) error {
	version := os.Getenv(ipc.EnvVersion)
	os.Unsetenv(ipc.EnvVersion)
	if version != ipc.Version {
		return fmt.Errorf("%w: the master speaks version %q, this binary %q; upgrade the master (USR2)", ErrProtocol, version, ipc.Version)
	}
	// Signals first: a TERM that arrives while booting must drain, not kill.
	sigs := make(chan os.Signal, 4)
	// SIGQUIT is left to the Go runtime on purpose: when a SIGABRT makes
	// it dump the goroutines, it relays SIGQUIT from thread to thread so
	// that each prints the goroutine it runs; a handler for QUIT would
	// swallow those and leave "stack unavailable" in the dump.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	// HUP, TTIN, TTOU and USR2 are the master's; a terminal's HUP or
	// job-control signals reach the whole process group. A write to the
	// stderr pipe of a master that died must fail, not kill.
	signal.Ignore(syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2, syscall.SIGPIPE)
	// A SIGABRT from the master then dumps every goroutine, the ones
	// running on other threads included ("all" would print "stack
	// unavailable" for exactly the goroutine that hangs the process). The
	// runtime then dies by SIGABRT, which writes a core file only where the
	// core size limit allows it (systemd's default soft limit is 0).
	debug.SetTraceback("crash")

	ctrl, err := inheritControl()
	if err != nil {
		return err
	}
	defer ctrl.Close()
	hello, err := ctrl.Recv()
	if err != nil {
		return fmt.Errorf("read config from master: %w", err)
	}
	if hello.Type != ipc.TypeConfig {
		return fmt.Errorf("read config from master: got a %s frame", hello.Type)
	}
	var cfg Config
	if err := json.Unmarshal(hello.Config, &cfg); err != nil {
		return fmt.Errorf("decode config from master: %w", err)
	}
	lns, err := inheritListeners(hello.Listeners)
	if err != nil {
		return err
	}
	if err := inheritLog(hello); err != nil {
		return err
	}

	w, err := boot(cfg)
	if err != nil {
		ctrl.Send(ipc.Frame{Type: ipc.TypeFailed, Error: err.Error()})
		return fmt.Errorf("%w: %w", ErrBootFailed, err)
	}
	log := w.Logger
	if log == nil {
		log = zap.NewNop()
	}
	abandoned := false // the shutdown hook overran its deadline
	defer func() { release(w, log, abandoned) }()
	log = log.With(zap.Int("worker", hello.Worker), zap.Int("generation", hello.Generation))
	counts := w.Counters
	if counts == nil {
		counts = new(Counters)
	}

	var ready readiness
	opts := serverOptions(w, cfg, log, &counts.set, func(reason string) {
		log.Info("asking to be recycled", zap.String("reason", reason))
		// Not on the request's goroutine: a Send waits while the
		// master does not read (stopped, its socket buffer full).
		go ctrl.Send(ipc.Frame{Type: ipc.TypeRecycle, Reason: reason})
	})
	srv := serve.New(ready.handler(w.Handler), opts)
	srv.Serve(lns)
	if err := ctrl.Send(ipc.Frame{Type: ipc.TypeReady, Accepts: []string{ipc.TypeDrain}}); err != nil {
		srv.Close()
		// Booted, so the hook closes what boot opened.
		ctx, cancel := context.WithTimeout(context.Background(), FastStopShutdown)
		defer cancel()
		abandoned = !shutdown(ctx, w.Shutdown, log)
		return fmt.Errorf("report ready: %w", err)
	}

	masterGone := make(chan struct{})
	drainNow := make(chan struct{}) // closed at the master's drain frame
	go func() {
		defer close(masterGone)
		told := false
		for {
			f, err := ctrl.Recv()
			if err != nil {
				return
			}
			if f.Type == ipc.TypeDrain && !told {
				told = true
				close(drainNow)
			}
		}
	}()
	go heartbeat(ctrl, srv, &counts.set)
	// The last heartbeat: what was counted since the previous one reaches
	// the master before the exit.
	defer sendHeartbeat(ctrl, srv, &counts.set)

	// The deadline of the drain and of the shutdown hook after it runs
	// from the start of the drain: the signal, the end of a TERM's
	// shutdown delay, the master's drain frame or its death.
	var ctx context.Context
	var cancel context.CancelFunc
	stopNow := func(sig os.Signal) {
		log.Info("stopping now", signalField(sig))
		ctx, cancel = context.WithTimeout(context.Background(), FastStopShutdown)
		srv.Close()
	}
	for ctx == nil {
		select {
		case <-masterGone:
			log.Warn("master gone")
			ready.stop()
			ctx, cancel = drain(context.Background(), srv, cfg)
		case <-drainNow:
			log.Info("told to drain")
			ctx, cancel = drain(context.Background(), srv, cfg)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGTERM:
				log.Info("signal", signalField(sig))
				ready.stop()
				if sig := shutdownDelay(cfg.ShutdownDelay, sigs, drainNow, masterGone, w, log); sig != nil {
					stopNow(sig)
					break
				}
				ctx, cancel = drain(context.Background(), srv, cfg)
			case syscall.SIGUSR1:
				reopen(w, log)
			default: // INT
				stopNow(sig)
			}
		}
	}
	defer cancel()
	abandoned = !shutdown(ctx, w.Shutdown, log)
	return nil
}

// shutdownDelay is a worker's Config.ShutdownDelay, after the TERM that
// stops the service: its readiness endpoint answers 503 already, and it
// goes on serving everything else, accepting new connections too, until
// the delay has passed, its master tells it to drain (a second TERM to the
// master), or its master is gone. It returns nil then, for the drain to
// begin. Further TERMs change nothing: under systemd a worker gets one
// from systemd and one from its master. USR1 reopens the logs meanwhile;
// an INT ends the delay with a fast stop: it returns that signal.
func shutdownDelay(d time.Duration, sigs <-chan os.Signal, drainNow, masterGone <-chan struct{}, w *Worker, log *zap.Logger) os.Signal {
	if d <= 0 {
		return nil
	}
	log.Info("shutdown delay: not ready, still serving", zap.Duration("duration", d))
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case <-drainNow:
			log.Info("told to drain: shutdown delay cut short")
			return nil
		case <-masterGone:
			log.Warn("master gone")
			return nil
		case sig := <-sigs:
			switch sig {
			case syscall.SIGTERM:
			case syscall.SIGUSR1:
				reopen(w, log)
			default: // INT
				return sig
			}
		}
	}
}

// FastStopShutdown is the deadline of Worker.Shutdown after a fast stop
// (INT): the master kills the worker a second after it sent INT.
const FastStopShutdown = 500 * time.Millisecond

// serverOptions are the options of a booted Worker's server, under a
// master (RunWorker) or without one (Solo): w's logs, proxies and TLS,
// cfg's request and connection limits, hardened (see Worker). counts, if
// non-nil, counts its requests; onRecycle is told when the process should
// be replaced (serve.Options). The server serves w's handler behind the
// readiness endpoint (readiness.handler).
func serverOptions(w *Worker, cfg Config, log *zap.Logger, counts *metrics.Set, onRecycle func(reason string)) serve.Options {
	return serve.Options{
		Timeout:        cfg.Timeout,
		KeepAlive:      cfg.KeepAlive,
		MaxRequests:    maxRequests(cfg),
		OnRecycle:      onRecycle,
		Logger:         log,
		AccessLog:      w.AccessLog,
		Proxies:        w.TrustedProxies,
		ProxyProtocol:  w.ProxyProtocol,
		HTTP2Cleartext: w.HTTP2Cleartext,
		Hardened:       true,
		Limits: strict.Limits{
			RequestLine: cfg.LimitRequestLine,
			Fields:      cfg.LimitRequestFields,
			FieldSize:   cfg.LimitRequestFieldSize,
		},
		TLS:         w.TLS,
		Metrics:     counts,
		MaxConns:    cfg.connections(),
		MaxBodySize: cfg.MaxBodySize,
	}
}

// drain retires the worker without losing a request (serve.Server.Drain),
// within the graceful timeout, or until parent is done; the drain logs how
// its connections ended. It returns the context that bounded it, for the
// shutdown hook to use what remains.
func drain(parent context.Context, srv *serve.Server, cfg Config) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, cfg.gracefulTimeout())
	srv.Drain(ctx)
	return ctx, cancel
}

// release ends a Worker's life once it has stopped serving: it syncs the
// access log (a buffered one keeps lines until then) and calls Close,
// unless the shutdown hook was abandoned: the hook may still be using
// what Close would close.
func release(w *Worker, log *zap.Logger, abandoned bool) {
	if w.AccessLog != nil {
		w.AccessLog.Sync()
	}
	if w.Close == nil || abandoned {
		return
	}
	if err := w.Close(); err != nil {
		log.Warn("close after serving", zap.Error(err))
	}
}

// shutdown runs hook, if any, with ctx, and waits for it until ctx's
// deadline. It reports false if the hook was abandoned there: the hook's
// goroutine then goes on until the process exits.
func shutdown(ctx context.Context, hook func(context.Context) error, log *zap.Logger) bool {
	if hook == nil {
		return true
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- hook(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("shutdown hook failed", zap.Error(err), zap.Duration("duration", time.Since(start)))
		}
		return true
	case <-ctx.Done():
		// A hook that returns just as its deadline passes is not
		// abandoned.
		select {
		case err := <-done:
			if err != nil {
				log.Error("shutdown hook failed", zap.Error(err), zap.Duration("duration", time.Since(start)))
			}
			return true
		default:
		}
		log.Error("shutdown hook abandoned", zap.Duration("duration", time.Since(start)))
		return false
	}
}

// reopen calls w.Reopen, if any, and logs how it went (USR1).
func reopen(w *Worker, log *zap.Logger) {
	if w.Reopen == nil {
		return
	}
	if err := w.Reopen(); err != nil {
		log.Error("reopen logs", zap.Error(err))
	} else {
		log.Info("logs reopened")
	}
}

// heartbeat reports the counters every HeartbeatInterval until the channel
// breaks. Between two beats it also notices when the worker falls idle,
// and then hands the memory it no longer uses back to the kernel.
func heartbeat(ctrl *ipc.Conn, srv *serve.Server, counts *metrics.Set) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	idle := idleMemory{free: debug.FreeOSMemory}
	for range t.C {
		if err := sendHeartbeat(ctrl, srv, counts); err != nil {
			return
		}
		idle.tick(srv.Requests(), srv.Active())
	}
}

// idleMemory returns a worker's free heap to the kernel once it has gone a
// heartbeat without a request after serving some. After a burst of load
// the Go runtime keeps the heap it grew (the garbage collector's goal
// stays where the load left it, and no collection runs without
// allocation), so an idle worker's RSS would say more about its last busy
// second than about what it holds; and the master recycles on RSS
// (Config.MaxMemory). One forced collection when the load stops costs a
// few milliseconds of a worker with nothing else to do.
type idleMemory struct {
	free     func() // debug.FreeOSMemory
	requests uint64 // at the last tick
	freed    bool   // since the last request
}

func (m *idleMemory) tick(requests uint64, active int64) {
	if requests != m.requests || active > 0 {
		m.requests, m.freed = requests, false
		return
	}
	if !m.freed {
		m.freed = true
		m.free()
	}
}

// sendHeartbeat sends one heartbeat, with what counts counted since the
// previous one. If the send fails those counts are lost: the channel is
// broken for good and the master gone.
func sendHeartbeat(ctrl *ipc.Conn, srv *serve.Server, counts *metrics.Set) error {
	return ctrl.Send(ipc.Frame{Type: ipc.TypeHeartbeat, Requests: srv.Requests(), Active: srv.Active(), Metrics: counts.Delta(), Runtime: metrics.ReadRuntime()})
}

// maxRequests draws this worker's request budget: MaxRequests plus a
// random share of the jitter, so that workers started together do not all
// recycle together.
func maxRequests(cfg Config) uint64 {
	if cfg.MaxRequests <= 0 {
		return 0
	}
	return uint64(cfg.MaxRequests + rand.IntN(max(cfg.MaxRequestsJitter, 0)+1))
}

// inheritControl takes the control channel from its fixed fd. The fd is
// duplicated close-on-exec and the original closed, so that programs the
// app starts do not inherit it (and keep the master's EOF from arriving).
func inheritControl() (*ipc.Conn, error) {
	f := os.NewFile(ipc.ControlFD, "control")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("control channel at fd %d: %w", ipc.ControlFD, err)
	}
	return ipc.NewConn(c), nil
}

// inheritListeners takes n listening sockets from fd ListenFD on, in the
// same close-on-exec way.
func inheritListeners(n int) ([]net.Listener, error) {
	lns := make([]net.Listener, 0, n)
	for i := range n {
		fd := ipc.ListenFD + i
		f := os.NewFile(uintptr(fd), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("listener at fd %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Errors a caller branches on, to pick an exit code.
var (
	// ErrBootFailed: a worker's boot failed, or (from Master.Run) the first
	// generation of workers could not boot.
	ErrBootFailed = errors.New("workers: boot failed")
	// ErrProtocol: this worker's control-protocol version differs from its
	// master's.
	ErrProtocol = errors.New("workers: control protocol mismatch")
)

// Exit codes a worker ends with, read by its master.
const (
	// ExitBootFailed is also the master's exit code when its first
	// generation cannot boot (as Gunicorn's arbiter).
	ExitBootFailed = 3
	ExitProtocol   = ipc.ExitProtocol
)
