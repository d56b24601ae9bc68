// Package workers is Remuda's process model: a master (the arbiter) that
// binds the listening sockets and supervises worker processes, and the
// runtime each worker runs.
//
// # Master
//
// Master.Run binds every address, then starts Config.Workers workers by
// re-executing the binary it was invoked as (argv[0] made absolute, not
// os.Executable, so that a symlink-switch deploy reaches new workers) with:
// the control-protocol version in the environment (the only thing that
// makes a process a worker; see IsWorker), the control channel at fd 3 and
// the listening sockets from fd 4. Every worker accepts on the same
// sockets: the kernel spreads connections, and no worker's exit can reset a
// connection queued on a socket the others still hold. The wire format of
// the control channel is documented in internal/ipc.
//
// The master's loop reads like Gunicorn's arbiter: one goroutine owns all
// state and reacts to signals, worker frames, worker exits and a 100 ms
// tick. It keeps the newest generation at the wanted size, and
//
//   - gives a booting worker Config.BootTimeout to report ready, separate
//     from Config.Timeout, so a slow boot is never a crash loop;
//   - sends SIGABRT to a ready worker silent for Config.Timeout (at least
//     three heartbeats), which makes the Go runtime print every goroutine's
//     stack, and SIGKILL after 5 s;
//   - replaces a worker that exits, at once for a lone failure and with
//     exponential backoff (up to 10 s) when failures repeat;
//   - exits with ErrBootFailed when the first generation fails to boot three
//     times: no fork storm, and the worker's own error in the last line;
//   - on a worker's "recycle" frame (a request past Config.Timeout, or
//     Config.MaxRequests reached) starts a replacement, and sends the old
//     worker TERM only once the replacement is ready;
//   - on HUP loads a new Config and starts a new generation; the old one is
//     told to drain only when every new worker is ready. If a new worker
//     fails to boot, the new generation is abandoned and the old keeps
//     serving.
//
// Worker stderr goes through the master: JSON lines pass as they are, any
// other line (a panic, a stack dump) is wrapped in a JSON line naming the
// worker, so every line on the master's stderr is one JSON object.
//
// # Signals
//
//	TERM        graceful stop: workers serve what the kernel has queued, stop
//	            accepting, finish in-flight requests within the graceful
//	            timeout; the master exits 0
//	INT, QUIT   fast stop
//	HUP         new generation with a reloaded Config, then retire the old
//	TTIN, TTOU  one worker more, one fewer
//	USR1        workers reopen their log files
//	USR2        upgrade the master itself (see below)
//
// Workers take TERM (drain) and INT (stop now). They leave QUIT to the Go
// runtime, which relays it between threads while dumping stacks after a
// SIGABRT.
//
// # Upgrades and systemd
//
// USR2 starts a new master from the binary on disk through
// cloudflare/tableflip. It inherits every listening socket (the list
// travels in REMUDA_LISTENERS, so sockets that systemd passed are kept
// too), boots its first generation, writes the pidfile, sends
// MAINPID=<pid> and READY=1 to NOTIFY_SOCKET, and tells the old master,
// which then drains its workers and exits 0, telling systemd nothing more.
// If the new master fails (a bad binary, a bad config, workers that cannot
// boot, no ready within the boot timeout plus 10 s), the old one keeps
// serving and logs why. A second USR2 during an upgrade is refused.
//
// With LISTEN_FDS and LISTEN_PID (socket activation) the master takes its
// sockets from systemd instead of binding. It sends READY=1 once its first
// generation is ready, RELOADING=1 with MONOTONIC_USEC on HUP and READY=1
// when the new generation took over (or was abandoned), STOPPING=1 on
// TERM, INT and QUIT, STATUS= with the number of ready workers, and
// WATCHDOG=1 every half WATCHDOG_USEC, but only while some worker has
// heartbeaten within the last two seconds: a wedged service is restarted
// by systemd. Workers get none of the NOTIFY_SOCKET and WATCHDOG_
// variables: only the master speaks for the service.
//
// # Worker
//
// RunWorker reads its Config from the control channel, calls the boot
// function, reports ready, heartbeats every second, and drains when told
// to or when its control channel reaches EOF (the master died).
// Pdeathsig (SIGTERM) is only a backstop for that.
package workers
