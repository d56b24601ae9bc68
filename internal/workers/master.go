package workers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/ipc"
	"github.com/remuda/remuda/internal/metrics"
	"github.com/remuda/remuda/internal/sdnotify"
	"github.com/remuda/remuda/internal/serve"
)

// Timing of the master's loop and of its escalations.
const (
	// tick is how often the master checks deadlines.
	tick = 100 * time.Millisecond
	// upgradeMargin is added to the boot timeout for a USR2 upgrade: the new
	// master must start and boot its first generation within their sum.
	upgradeMargin = 10 * time.Second
	// abortGrace is how long a worker sent SIGABRT has to dump its stacks
	// before SIGKILL: the runtime's own limit for relaying the dump from
	// thread to thread is 5 s; a healthy dump takes milliseconds.
	abortGrace = 5 * time.Second
	// killGrace is added to the graceful timeout before a draining worker,
	// which should have exited by itself, is killed.
	killGrace = time.Second
	// quitGrace is how long a worker sent SIGINT has before SIGKILL.
	quitGrace = time.Second
	// firstBootAttempts is how many boot failures the first generation may
	// have before the master gives up.
	firstBootAttempts = 3
	// maxBackoff caps the delay between respawns of failing workers.
	maxBackoff = 10 * time.Second
	// failureMemory is how long a worker failure counts toward backoff.
	failureMemory = 10 * time.Second
	// relayBuffer is the read buffer of a worker's stdout and stderr; relayMaxLine
	// the longest line relayed whole.
	relayBuffer  = 4 << 10
	relayMaxLine = 64 << 10
	// stdoutPipeSize is the size asked for a worker's stdout pipe.
	stdoutPipeSize = 1 << 20
	// stopNoticed is how late a tick must come for the master to take it
	// that it was not running, and not count that time against its
	// workers: a heartbeat's length, a third of the shortest silence
	// limit.
	stopNoticed = HeartbeatInterval
)

// Master is the arbiter of a group of worker processes: it binds the
// listening sockets, starts workers by re-executing this binary, watches
// their heartbeats, replaces the dead and the stuck, and handles the
// signals in the README's table. Its exported fields are read once, by Run.
// A Master runs once and may not be reused.
type Master struct {
	// Binds are the addresses to listen on ("host:port", "unix:/path").
	Binds []string
	// Backlog, if above zero, is the listen queue of the sockets bound from
	// Binds (Gunicorn's backlog); the kernel caps it at net.core.somaxconn,
	// and a warning says so. Sockets from systemd keep their unit's
	// Backlog=, and a master started by USR2 keeps the sockets as they are.
	// If zero, Go's default: net.core.somaxconn.
	Backlog int
	// Config is the first generation's.
	Config Config
	// Reload, if non-nil, is called on HUP for the next generation's
	// Config; an error keeps the running generation. If nil, HUP restarts
	// the workers with the same Config.
	Reload func() (Config, error)
	// PIDFile, if set, receives the master's PID while it runs.
	PIDFile string
	// Credential, if non-nil, is the user and group the master becomes
	// once its sockets are bound (unix sockets are given to them first),
	// and so its workers too. The master must then start as root, or as
	// that user already.
	Credential *syscall.Credential
	// Logger receives the master's lines and, as lines of its own, what
	// workers write to stdout and stderr (the app's prints, a panic, the
	// stack dump of a SIGABRT: see output.go). If nil, zap.NewNop() is
	// used.
	Logger *zap.Logger
	// Stderr receives the lines a worker's own logger writes to its
	// stderr (JSON with the worker's pid), each whole line in one Write.
	// It should be where Logger writes. If nil, os.Stderr.
	Stderr io.Writer
	// LogFile, if non-nil, returns the file Logger writes to: the master's
	// stderr, or its log file as last reopened. Every worker started gets a
	// duplicate of it (see LogFile in a worker) and writes its own log
	// lines there, so that no worker waits for its master to relay them. It
	// is called from the master's loop, as Reopen is. If nil, or if it
	// returns nil, os.Stderr.
	LogFile func() *os.File
	// Reopen, if non-nil, is called on USR1, before the signal is passed
	// on to the workers: it reopens the log files the master writes, after
	// logrotate moved them. The workers then reopen theirs.
	Reopen func() error
	// MetricsBind, if set, is where the master serves /metrics (Prometheus)
	// and /status (JSON): "host:port" or "unix:/path". A master started by
	// USR2 inherits the socket. If empty, neither is served.
	MetricsBind string
	// OnStart, if non-nil, runs once in the master, after its sockets are
	// bound and its privileges dropped (files it creates belong to the
	// workers' user), before the first worker starts; a master started by
	// USR2 runs it too. An error stops Run. If nil, nothing runs.
	OnStart func() error
	// OnReady, if non-nil, runs once in the master when its first
	// generation is whole and ready, with that generation's Config: after
	// the pidfile is written and systemd (and, after a USR2, the old
	// master) told. It runs on the master's loop, which handles no signal
	// or worker meanwhile: keep it short, or start a goroutine. An error
	// is logged and changes nothing. If nil, nothing runs.
	OnReady func(cfg Config) error
	// OnReload, if non-nil, runs in the master each time a generation
	// started by HUP is whole and ready, with its Config, just before the
	// old generation is told to drain; not when the new generation could
	// not boot and was abandoned. (Gunicorn's on_reload runs at the HUP
	// itself; this is when the reload took effect.) It runs on the
	// master's loop, as OnReady; an error is logged and changes nothing.
	// If nil, nothing runs.
	OnReload func(cfg Config) error
	// OnExit, if non-nil, runs once in the master as Run returns, after
	// OnStart ran: after a stop by TERM, INT or QUIT once every worker has
	// exited, and after a failure (the first generation could not boot;
	// its workers were killed). It gets the Config of the generation that
	// served last (Config if none did). It does not run in a master that
	// handed over to a new one (USR2): the service goes on there, and what
	// the new master's OnReady set up must stay. An error is logged. If
	// nil, nothing runs.
	OnExit func(cfg Config) error

	log        *zap.Logger
	path       string // the executable, as invoked
	upg        *tableflip.Upgrader
	notify     *sdnotify.Notifier
	upgrades   chan error // results of USR2 upgrades
	upgrading  bool
	reloading  bool      // systemd was told RELOADING=1
	lastBeat   time.Time // the last heartbeat of any worker, for the watchdog
	status     string    // the last STATUS= sent
	listeners  []listener
	events     chan event
	workers    map[int]*worker // by pid
	cfg        Config          // the newest generation's
	gen        int             // the newest generation
	lastGen    int             // the highest generation number handed out
	servingGen int             // the newest generation that was whole and ready; 0 before the first
	servingCfg Config
	want       int // workers wanted in generation gen
	nextID     int
	failures   int       // recent worker failures, for backoff
	lastFail   time.Time // when the last one happened
	bootFails  int       // boot failures of the first generation
	nextSpawn  time.Time
	lastTick   time.Time // when the loop last checked deadlines
	stopping   bool
	// stopsService: the stop is the service's (TERM, INT, QUIT), not a
	// hand-over to a new master (USR2), whose workers retire.
	stopsService bool
	handedOff    bool // a master started by USR2 took over
	started      time.Time
	stderr       io.Writer
	tally        tally      // the metrics, added up
	queries      chan query // from the metrics server
}

type workerState int

const (
	booting  workerState = iota // started, not ready yet
	ready                       // serving
	draining                    // told to stop (TERM, INT or the drain frame)
)

// worker is the master's record of one worker process.
type worker struct {
	id, gen  int
	pid      int
	cmd      *exec.Cmd
	ctrl     *ipc.Conn
	state    workerState
	started  time.Time
	readyAt  time.Time
	lastSeen time.Time // last frame received
	recycle  bool      // asked to be replaced; drained once its replacement is ready
	exit     string    // why it was told to stop or recycled: an exit reason
	requests uint64    // begun, as of its last heartbeat
	active   int64     // in flight, as of its last heartbeat
	rss      int64     // resident set, in bytes, as of its last heartbeat
	lastBeat time.Time // its last heartbeat
	stopAt   time.Time // TERM, INT or the drain frame sent
	stopWait time.Duration
	// acceptsDrain: its ready frame said it takes the drain frame.
	acceptsDrain bool
	// drainNow: it is to drain without its shutdown delay (a retirement,
	// or a stop's delay ended by a second TERM).
	drainNow bool
	abortAt  time.Time // SIGABRT sent
	killed   bool
	bootErr  string // from a failed frame

	// cfg is its generation's Config, which it was started with: every
	// deadline and limit the master holds it to (boot, silence, drain,
	// memory) comes from it, not from the newest generation's, so that a
	// HUP that shortens graceful_timeout or lowers max_memory applies to
	// the workers it starts and leaves the old ones the terms they run
	// under (a worker's own drain deadline comes from the same Config).
	cfg Config

	// runtime is its Go runtime as of its last heartbeat; nil before one,
	// or from a worker built before heartbeats carried it.
	runtime *metrics.Runtime
}

// event is what a worker's goroutines tell the loop: a frame, or its exit.
type event struct {
	w     *worker
	frame ipc.Frame
	exit  *os.ProcessState // non-nil: the process has exited
}

// Run binds (or inherits its sockets), starts the first generation and
// supervises until a signal stops it. It returns nil after a TERM, INT or
// QUIT stop and after handing over to a new master (USR2), an error naming
// the address when binding fails, and an error wrapping ErrBootFailed when
// the first generation cannot boot.
func (m *Master) Run() error {
	m.log, m.stderr, m.started = m.Logger, m.Stderr, time.Now()
	if m.log == nil {
		m.log = zap.NewNop()
	}
	if m.stderr == nil {
		m.stderr = os.Stderr
	}
	path, err := executable()
	if err != nil {
		return err
	}
	m.path = path
	sigs := notifySignals()
	defer stopSignals(sigs)
	if m.notify, err = sdnotify.New(nil); err != nil {
		return err
	}
	watchdog, err := sdnotify.WatchdogInterval(nil)
	if err != nil {
		return err
	}
	// The master an upgrade starts has to boot its first generation
	// before the old one gives up on it.
	m.upg, err = tableflip.New(tableflip.Options{UpgradeTimeout: m.Config.bootTimeout() + upgradeMargin})
	if err != nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	defer m.upg.Stop()

	m.listeners, err = listen(m.upg, m.Binds, m.Backlog, m.log)
	if err != nil {
		return err
	}
	defer closeListeners(m.listeners)
	if m.Credential != nil {
		if err := dropPrivileges(m.listeners, m.Credential); err != nil {
			return err
		}
	}
	if m.PIDFile != "" {
		// A master started by USR2 writes it once it is ready.
		if !m.upg.HasParent() {
			if err := writePIDFile(m.PIDFile); err != nil {
				return err
			}
		}
		defer removePIDFile(m.PIDFile)
	}
	if m.MetricsBind != "" {
		// Through the upgrader: a master started by USR2 inherits it. One
		// bound here is bound as the app's sockets are (serve.Listen): a
		// unix socket file left by a master that died is removed, and the
		// socket gets mode 0660.
		network, addr := serve.SplitAddr(m.MetricsBind)
		ln, err := m.upg.Fds.ListenWithCallback(network, addr, func(string, string) (net.Listener, error) {
			return serve.Listen(m.MetricsBind, 0)
		})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		m.queries = make(chan query)
		srv := m.serveMetrics(ln)
		defer srv.Close()
	}
	if m.OnStart != nil {
		if err := m.OnStart(); err != nil {
			return err
		}
	}
	defer m.exit()
	m.events = make(chan event, 64)
	m.upgrades = make(chan error, 1)
	m.workers = make(map[int]*worker)
	m.lastGen, m.gen, m.cfg, m.want = 1, 1, m.Config, m.Config.workers()
	m.log.Info("master starting", zap.Strings("addr", names(m.listeners)), zap.Int("workers", m.want),
		zap.String("executable", m.path), zap.Bool("upgrade", m.upg.HasParent()))

	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	m.lastTick = time.Now()
	var watchdogC <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog)
		defer t.Stop()
		watchdogC = t.C
	}
	for {
		if err := m.reconcile(time.Now()); err != nil {
			m.stopAll(syscall.SIGKILL)
			return err
		}
		m.sendStatus()
		if m.stopping && len(m.workers) == 0 {
			m.log.Info("master stopped")
			return nil
		}
		select {
		case sig := <-sigs:
			m.signal(sig.(syscall.Signal))
		case ev := <-m.events:
			if err := m.handle(ev); err != nil {
				m.stopAll(syscall.SIGKILL)
				return err
			}
		case err := <-m.upgrades:
			m.upgraded(err)
			m.handedOff = m.handedOff || err == nil
		case q := <-m.queries:
			q.reply <- q.render(m)
		case <-ticker.C:
			// The tick carries the time it was due, which after a stop is
			// long past.
			now := time.Now()
			m.noticeStop(now)
			m.checkDeadlines(now)
		case now := <-watchdogC:
			// No ping unless workers heartbeat: a wedged service gets
			// restarted by systemd.
			if now.Sub(m.lastBeat) <= 2*HeartbeatInterval {
				m.notify.Notify("WATCHDOG=1")
			}
		}
	}
}

// reconcile starts and retires workers until the newest generation has
// the wanted number of ready workers and nothing older is left serving.
func (m *Master) reconcile(now time.Time) error {
	if m.stopping {
		return nil
	}
	var active []*worker // the newest generation's, not asked to leave
	allReady := true
	for _, w := range m.workers {
		if w.gen == m.gen && !w.recycle && w.state != draining {
			active = append(active, w)
			allReady = allReady && w.state == ready
		}
	}
	for len(active) < m.want && !now.Before(m.nextSpawn) {
		w, err := m.spawn()
		if err != nil {
			// Fork or exec failed: the master's own trouble, retried later.
			m.log.Error("spawn worker", zap.Error(err))
			m.noteFailure(now)
			if m.servingGen == 0 {
				return fmt.Errorf("%w: %w", ErrBootFailed, err)
			}
			return nil
		}
		active = append(active, w)
		allReady = false
	}
	for len(active) > m.want { // TTOU: retire the oldest
		oldest := 0
		for i, w := range active {
			if w.started.Before(active[oldest].started) {
				oldest = i
			}
		}
		m.stopWorker(active[oldest], syscall.SIGTERM, "fewer workers wanted", exitScaleDown)
		active = append(active[:oldest], active[oldest+1:]...)
	}
	if !allReady || len(active) != m.want {
		return nil
	}
	if m.servingGen != m.gen {
		first := m.servingGen == 0
		m.servingGen, m.servingCfg = m.gen, m.cfg
		m.log.Info("generation ready", zap.Int("generation", m.gen), zap.Int("workers", m.want))
		m.freeMemory()
		if first {
			m.ready()
			m.hook("ready hook failed", m.OnReady, m.cfg)
		} else {
			m.reloaded()
			m.hook("reload hook failed", m.OnReload, m.cfg)
		}
	}
	for _, w := range m.workers {
		if w.state == ready && (w.gen != m.gen || w.recycle) {
			exit := exitReload
			if w.recycle {
				exit = w.exit
			}
			m.stopWorker(w, syscall.SIGTERM, "replaced", exit)
		}
	}
	return nil
}

// hook runs one of the master's hooks, if set, and logs its error as msg.
func (m *Master) hook(msg string, hook func(Config) error, cfg Config) {
	if hook == nil {
		return
	}
	start := time.Now()
	if err := hook(cfg); err != nil {
		m.log.Error(msg, zap.Error(err), zap.Duration("duration", time.Since(start)))
	}
}

// exit runs OnExit as Run returns, unless a new master took over.
func (m *Master) exit() {
	if m.handedOff {
		return
	}
	cfg := m.Config
	if m.servingGen != 0 {
		cfg = m.servingCfg
	}
	m.hook("exit hook failed", m.OnExit, cfg)
}

// handle applies one worker event.
func (m *Master) handle(ev event) error {
	w := ev.w
	if ev.exit != nil {
		return m.reap(w, ev.exit)
	}
	now := time.Now()
	w.lastSeen = now
	f := ev.frame
	if f.Type == ipc.TypeHeartbeat || f.Type == ipc.TypeReady {
		m.lastBeat = now
	}
	switch f.Type {
	case ipc.TypeReady:
		w.acceptsDrain = slices.Contains(f.Accepts, ipc.TypeDrain)
		switch {
		case w.state == booting:
			w.state, w.readyAt = ready, now
			m.log.Info("worker ready", m.fields(w, zap.Duration("boot", now.Sub(w.started)))...)
		case w.drainNow && w.acceptsDrain:
			// Told to drain while booting, by a TERM it took for a stop.
			m.sendDrain(w)
		}
	case ipc.TypeHeartbeat:
		m.heartbeat(w, f, now)
	case ipc.TypeRecycle:
		if !w.recycle {
			w.recycle, w.exit = true, recycleReason(f.Reason)
			m.log.Info("worker asks to be recycled", m.fields(w, zap.String("reason", f.Reason))...)
		}
	case ipc.TypeFailed:
		w.bootErr = f.Error
	}
	return nil
}

// heartbeat records a worker's counters, adds its metrics up, and
// recycles it if its memory passed its Config's MaxMemory.
func (m *Master) heartbeat(w *worker, f ipc.Frame, now time.Time) {
	w.requests, w.active, w.lastBeat = f.Requests, f.Active, now
	if f.Runtime != nil {
		w.runtime = f.Runtime
	}
	if f.Metrics != nil {
		m.tally.add(f.Metrics)
	}
	rss, err := readRSS(w.pid)
	if err != nil {
		return // it is exiting: its reaping follows
	}
	w.rss = rss
	if limit := w.cfg.MaxMemory; limit > 0 && rss > limit && w.state == ready && !w.recycle {
		w.recycle, w.exit = true, exitMemory
		m.log.Warn("worker over memory limit, recycling it", m.fields(w, zap.Int64("rss", rss), zap.Int64("max_memory", limit))...)
	}
}

// reap forgets an exited worker and decides what its exit means.
func (m *Master) reap(w *worker, st *os.ProcessState) error {
	delete(m.workers, w.pid)
	if m.handedOver(w) {
		m.freeMemory()
	}
	switch {
	case w.exit != "":
		m.tally.exit(w.exit)
	case w.state == booting || st.ExitCode() == ExitProtocol:
		m.tally.exit(exitBootFailed)
	default:
		m.tally.exit(exitCrash)
	}
	fields := m.fields(w, zap.String("status", exitStatus(st)))
	switch {
	case w.state == draining && !w.killed:
		m.log.Info("worker exited", fields...)
		return nil
	case w.state == draining:
		m.log.Warn("worker killed", fields...)
		return nil
	case st.ExitCode() == ExitProtocol:
		m.log.Error("worker speaks another control protocol: upgrade the master itself with USR2", fields...)
	case w.state == booting:
		if w.bootErr != "" {
			fields = append(fields, zap.String("error", w.bootErr))
		}
		m.log.Error("worker failed to boot", fields...)
	default:
		m.log.Error("worker died", fields...)
	}
	now := time.Now()
	m.noteFailure(now)
	if w.state != booting && st.ExitCode() != ExitProtocol {
		return nil // a crash of a serving worker: replaced by reconcile
	}
	switch {
	case m.servingGen == 0:
		m.bootFails++
		if m.bootFails >= firstBootAttempts {
			cause := w.bootErr
			if cause == "" {
				cause = exitStatus(st)
			}
			return fmt.Errorf("%w: the first generation of workers could not boot (%d attempts); last: worker %d: %s",
				ErrBootFailed, m.bootFails, w.id, cause)
		}
	case w.gen == m.gen && m.gen != m.servingGen:
		m.log.Error("new generation failed to boot, keeping the old one",
			zap.Int("generation", m.gen), zap.Int("serving_generation", m.servingGen))
		for _, o := range m.workers {
			if o.gen == m.gen {
				m.stopWorker(o, syscall.SIGTERM, "generation abandoned", exitAbandoned)
			}
		}
		m.gen, m.cfg, m.want = m.servingGen, m.servingCfg, m.servingCfg.workers()
		m.reloaded()
	}
	return nil
}

// handedOver reports whether w, just reaped, was the last worker left of
// a generation other than the serving one: a reload (or an abandoned one)
// is then over.
func (m *Master) handedOver(w *worker) bool {
	if m.stopping || m.servingGen == 0 || w.gen == m.servingGen {
		return false
	}
	for _, o := range m.workers {
		if o.gen != m.servingGen {
			return false
		}
	}
	return true
}

// freeMemory returns the master's free heap to the kernel, once a
// generation is ready and once the last worker of an older one has exited
// (handedOver): the two ends of a reload. A reload allocates for a while
// (the config read again, each spawn's environment and config, the
// records, buffers and goroutines of twice the workers), and the Go
// runtime keeps the heap it grew: garbage piles up to the collector's
// minimum goal (4 MiB) before a collection, and the pages freed then go
// back to the kernel only slowly, while the collector's metadata grows
// with the heap's peak and stays. Between reloads the master's heap is
// about 1.5 MiB and grows by a few KiB a second (heartbeats); its RSS
// would otherwise tell more about its busiest reload than about what it
// holds, past its budget (15 MiB) after a few dozen HUPs in a row. A
// collection of a heap this small takes a millisecond or two of a loop
// that has nothing urgent to do (idle workers do the same; see
// idleMemory).
func (m *Master) freeMemory() { debug.FreeOSMemory() }

// noteFailure counts a failure and delays the next spawn: not at all for
// a lone failure, then exponentially up to maxBackoff, so that a worker
// that cannot start never becomes a fork storm.
func (m *Master) noteFailure(now time.Time) {
	if now.Sub(m.lastFail) > failureMemory {
		m.failures = 0
	}
	m.failures++
	m.lastFail = now
	if m.failures > 1 {
		m.nextSpawn = now.Add(min(100*time.Millisecond<<(m.failures-2), maxBackoff))
	}
}

// checkDeadlines enforces boot, silence and stop deadlines, each worker's
// by its own generation's Config.
func (m *Master) checkDeadlines(now time.Time) {
	for _, w := range m.workers {
		switch {
		case !w.abortAt.IsZero() || w.killed:
			if !w.killed && now.Sub(w.abortAt) > abortGrace {
				m.kill(w)
			}
		case w.state == draining:
			if now.Sub(w.stopAt) > w.stopWait {
				m.log.Warn("worker did not stop in time", m.fields(w, zap.Duration("waited", w.stopWait))...)
				m.kill(w)
			}
		// A booting worker sends no frame before ready (but a last
		// "failed"): lastSeen is its start, moved by the master's own
		// stops (noticeStop).
		case w.state == booting && now.Sub(w.lastSeen) > w.cfg.bootTimeout():
			m.log.Error("worker boot timed out", m.fields(w, zap.Duration("boot_timeout", w.cfg.bootTimeout()))...)
			w.exit = exitBootFailed
			m.abort(w, now)
		case w.state == ready && now.Sub(w.lastSeen) > w.cfg.silenceLimit():
			m.log.Error("worker silent, aborting it", m.fields(w, zap.Duration("silent", now.Sub(w.lastSeen)))...)
			w.exit = exitSilent
			m.abort(w, now)
		}
	}
}

// noticeStop moves the workers' deadlines by the time the master itself
// was not running: stopped (SIGSTOP, a debugger) or starved of CPU, which
// its tick coming far later than due tells. The workers' frames of that
// time wait unread in their sockets, so every worker would look silent
// for as long, and healthy ones would be aborted; a worker draining or
// dumping its stacks may have waited on the master too (its stderr pipe
// full). A time set before the stop moves by its length, as if it had not
// passed; one set since (a frame read on the resume) stays.
func (m *Master) noticeStop(now time.Time) {
	due := m.lastTick.Add(tick)
	m.lastTick = now
	late := now.Sub(due)
	if late < stopNoticed {
		return
	}
	m.log.Warn("master was not running, worker deadlines moved", zap.Duration("duration", late))
	move := func(t *time.Time) {
		if !t.IsZero() && t.Before(due) {
			*t = t.Add(late)
		}
	}
	for _, w := range m.workers {
		move(&w.lastSeen)
		move(&w.stopAt)
		move(&w.abortAt)
	}
}

// signal handles one signal to the master.
func (m *Master) signal(sig syscall.Signal) {
	m.log.Info("signal", signalField(sig))
	switch sig {
	case syscall.SIGTERM:
		if !m.stopping {
			m.stop(syscall.SIGTERM)
		} else {
			m.endDelay()
		}
	case syscall.SIGINT, syscall.SIGQUIT:
		m.stop(syscall.SIGINT)
	case syscall.SIGHUP:
		if !m.stopping {
			m.reload()
		}
	case syscall.SIGTTIN:
		m.want++
		m.log.Info("more workers", zap.Int("workers", m.want))
	case syscall.SIGTTOU:
		if m.want > 1 {
			m.want--
		}
		m.log.Info("fewer workers", zap.Int("workers", m.want))
	case syscall.SIGUSR1:
		if m.Reopen != nil {
			if err := m.Reopen(); err != nil {
				m.log.Error("reopen logs", zap.Error(err))
			} else {
				m.log.Info("logs reopened")
			}
		}
		for _, w := range m.workers {
			w.cmd.Process.Signal(syscall.SIGUSR1)
		}
	case syscall.SIGUSR2:
		if !m.stopping {
			m.upgrade()
		}
	}
}

// reload starts a new generation with a freshly loaded Config. The old
// generation is retired by reconcile once the new one is whole and ready.
func (m *Master) reload() {
	cfg := m.cfg
	if m.Reload != nil {
		var err error
		if cfg, err = m.Reload(); err != nil {
			m.log.Error("reload config, keeping the running one", zap.Error(err))
			return
		}
	}
	m.lastGen++
	m.tally.reloads++
	m.gen, m.cfg, m.want = m.lastGen, cfg, cfg.workers()
	m.log.Info("starting new generation", zap.Int("generation", m.gen), zap.Int("workers", m.want))
	m.reloading = true
	m.notify.Reloading()
}

// stop begins a stop by signal: systemd is told, unix sockets are removed,
// and every worker gets sig (TERM: drain; INT: now).
func (m *Master) stop(sig syscall.Signal) {
	if !m.stopping {
		m.notify.Notify("STOPPING=1")
		m.upg.Stop()
	}
	m.stopping, m.stopsService = true, true
	m.stopAll(sig)
}

// stopAll begins a stop: the master's listener copies are closed, so that
// once the workers have drained the sockets close and new connections are
// refused; every worker gets sig.
func (m *Master) stopAll(sig syscall.Signal) {
	closeListeners(m.listeners)
	m.listeners = nil
	for _, w := range m.workers {
		if sig == syscall.SIGKILL {
			m.kill(w)
			continue
		}
		m.stopWorker(w, sig, "master stopping", exitStop)
	}
}

// stopWorker tells w to drain (sig TERM) or to stop now (INT), once per
// kind. Workers take INT, not QUIT, for "now": the Go runtime needs QUIT
// for its stack dumps. During a stop of the service w gets TERM, which it
// takes for a stop: it spends its Config's ShutdownDelay first. Otherwise
// (HUP, TTOU, a recycle, a USR2's hand-over) it retires while the service
// goes on, and drains at once (retire).
// why is for the log; exit is the reason its exit will be counted under,
// unless it already had one.
func (m *Master) stopWorker(w *worker, sig syscall.Signal, why, exit string) {
	if w.exit == "" {
		w.exit = exit
	}
	if sig == syscall.SIGTERM && w.state == draining {
		return
	}
	m.log.Info("stopping worker", m.fields(w, signalField(sig), zap.String("reason", why))...)
	w.state, w.stopAt = draining, time.Now()
	switch {
	case sig != syscall.SIGTERM:
		w.stopWait = quitGrace
		w.cmd.Process.Signal(sig)
	case m.stopsService:
		w.stopWait = w.cfg.ShutdownDelay + w.cfg.gracefulTimeout() + killGrace
		w.cmd.Process.Signal(sig)
	default:
		m.retire(w)
	}
}

// retire makes a worker drain at once, without a shutdown delay: with the
// drain frame if it accepts it; otherwise (an older release, or a worker
// not ready yet) with TERM, which a worker of this release takes for a
// stop, delay included: its deadline allows for the delay, and handle
// sends the frame once the worker is ready.
func (m *Master) retire(w *worker) {
	w.drainNow, w.stopWait = true, w.cfg.gracefulTimeout()+killGrace
	if w.acceptsDrain {
		m.sendDrain(w)
		return
	}
	w.stopWait += w.cfg.ShutdownDelay
	w.cmd.Process.Signal(syscall.SIGTERM)
}

// sendDrain sends w the drain frame; if the channel is broken, TERM.
func (m *Master) sendDrain(w *worker) {
	// The frame is far smaller than the socket buffer: Send does not block.
	if err := w.ctrl.Send(ipc.Frame{Type: ipc.TypeDrain}); err != nil {
		w.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// endDelay answers a second TERM during a stop: the workers still in
// their shutdown delay drain now (a fast stop is INT or QUIT). A worker
// that does not accept the drain frame yet is sent it once ready.
func (m *Master) endDelay() {
	now := time.Now()
	ended := 0
	for _, w := range m.workers {
		if w.state != draining || w.drainNow || !now.Before(w.stopAt.Add(w.cfg.ShutdownDelay)) {
			continue
		}
		ended++
		w.drainNow = true
		if w.acceptsDrain {
			w.stopAt, w.stopWait = now, w.cfg.gracefulTimeout()+killGrace
			m.sendDrain(w)
		}
	}
	if ended > 0 {
		m.log.Info("shutdown delay ended by a second TERM", zap.Int("workers", ended))
	}
}

// abort sends SIGABRT: the Go runtime prints every goroutine's stack to
// stderr, which the master relays to the log. SIGKILL follows abortGrace
// later.
func (m *Master) abort(w *worker, now time.Time) {
	w.abortAt = now
	w.cmd.Process.Signal(syscall.SIGABRT)
}

func (m *Master) kill(w *worker) {
	if !w.killed {
		w.killed = true
		w.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// fields names a worker in a log line.
func (m *Master) fields(w *worker, more ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.Int("worker", w.id), zap.Int("worker_pid", w.pid), zap.Int("generation", w.gen)}, more...)
}

// spawn starts one worker of the newest generation: this binary again, with
// the protocol version in its environment, the control channel at fd 3, the
// listeners from fd 4, the master's log file after them, and its stdout
// and stderr relayed through the master.
func (m *Master) spawn() (*worker, error) {
	m.nextID++
	w := &worker{id: m.nextID, gen: m.gen, cfg: m.cfg}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "control"), os.NewFile(uintptr(pair[1]), "control")
	defer theirs.Close()
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("control channel: %w", err)
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	defer stderrW.Close()
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		conn.Close()
		stderr.Close()
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	defer stdoutW.Close()
	// Room for a chatty app's prints while the master is stopped; the
	// kernel may give less (pipe-max-size, a user's pipe pages).
	unix.FcntlInt(stdoutW.Fd(), unix.F_SETPIPE_SZ, stdoutPipeSize)

	cmd := exec.Command(m.path, os.Args[1:]...)
	cmd.Env = append(runtimeEnv(workerEnv(), w.cfg, m.want), ipc.EnvVersion+"="+ipc.Version)
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	cmd.ExtraFiles = []*os.File{theirs}
	for _, l := range m.listeners {
		cmd.ExtraFiles = append(cmd.ExtraFiles, l.file)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, m.logFile()) // at ipc.LogFD
	// A backstop only: the worker's real cue is EOF on its control channel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		conn.Close()
		stderr.Close()
		stdout.Close()
		return nil, fmt.Errorf("start worker %d: %w", w.id, err)
	}
	now := time.Now()
	w.cmd, w.pid, w.ctrl, w.started, w.lastSeen = cmd, cmd.Process.Pid, ipc.NewConn(conn), now, now
	m.workers[w.pid] = w
	m.log.Info("worker started", m.fields(w)...)

	app, err := json.Marshal(w.cfg)
	if err == nil {
		// The frame is far smaller than the socket buffer: Send does not block.
		err = w.ctrl.Send(ipc.Frame{Type: ipc.TypeConfig, Worker: w.id, Generation: w.gen, Listeners: len(m.listeners), Log: true, Config: app})
	}
	if err != nil {
		m.log.Error("send config to worker", m.fields(w, zap.Error(err))...)
		m.kill(w)
	}

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			f, err := w.ctrl.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					m.log.Warn("control channel", m.fields(w, zap.Error(err))...)
				}
				return
			}
			m.events <- event{w: w, frame: f}
		}
	}()
	go func() {
		awaitExit(w.pid)
		cmd.Wait()
		w.ctrl.Close()
		<-readerDone
		m.events <- event{w: w, exit: cmd.ProcessState}
	}()
	go m.relay(w, stderr, "stderr")
	go m.relay(w, stdout, "stdout")
	return w, nil
}

// relay copies one of a worker's output streams (stream: "stdout" or
// "stderr") into the log, each line as a JSON line of its own, so that
// every line the master writes is one JSON object: what the line says of
// itself (a slog or log package line keeps its level, message and
// attributes) and where it came from; see output.go for the rules. A JSON
// line with the worker's own pid passes as it is: a worker's own log
// lines go to the log file directly (LogFile), but not those of a worker
// that fails before it has a logger, or of an older release.
//
// Every live worker has two relays, so their read buffers are small: the
// pipes carry little, and a stack dump's lines are short. A longer line
// is gathered up to relayMaxLine; past that it comes in pieces, each
// logged alone. A stack dump's lines are logged one by one, in order.
func (m *Master) relay(w *worker, r *os.File, stream string) {
	defer r.Close()
	core := m.log.Core()
	def, fields := zapcore.InfoLevel, m.fields(w, zap.String("stream", stream))
	if stream == "stderr" {
		def = zapcore.WarnLevel
	}
	base := len(fields)
	crashed := false // the runtime began dying: the rest is error
	br := bufio.NewReaderSize(r, relayBuffer)
	var long, out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) && len(long)+len(chunk) < relayMaxLine {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			line = append(long, chunk...)
			long = nil // rare: not kept
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		if len(line) > 0 || err == nil {
			if stream == "stderr" && !crashed && crashStart(line) {
				crashed = true
			}
			l := parseOutput(line, def)
			switch {
			case l.format == formatSlogJSON && l.pid == int64(w.pid):
				out = append(append(out[:0], line...), '\n')
				m.stderr.Write(out) // one write: whole lines never interleave
			default:
				if crashed && l.format == formatPlain {
					l.level = zapcore.ErrorLevel
				}
				fields = writeOutput(core, l, fields[:base])
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// writeOutput writes l to core after fields, named "app"; it returns fields,
// for their room to be reused.
func writeOutput(core zapcore.Core, l outputLine, fields []zap.Field) []zap.Field {
	ent := zapcore.Entry{Level: l.level, Time: l.time, LoggerName: "app", Message: l.msg, Caller: l.caller}
	if ent.Time.IsZero() {
		ent.Time = time.Now()
	}
	ce := core.Check(ent, nil)
	if ce == nil {
		return fields
	}
	if l.requestID != "" {
		fields = append(fields, zap.String("request_id", l.requestID))
	}
	if l.format == formatPlain {
		fields = append(fields, zap.String("output", l.output))
	}
	if len(l.attrs) > 0 {
		fields = append(append(fields, zap.Namespace("attrs")), l.attrs...)
	}
	ce.Write(fields...)
	return fields
}

// executable is the path this binary was invoked by, made absolute, not
// os.Executable(), which resolves symlinks: after a symlink-switch deploy,
// new workers must run the new release.
func executable() (string, error) {
	name := os.Args[0]
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("find own executable: %w", err)
		}
		name = p
	}
	p, err := filepath.Abs(name)
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return p, nil
}
