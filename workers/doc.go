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
//	USR2        reserved for the master upgrade (logged and ignored for now)
//
// Workers take TERM (drain) and INT (stop now). They leave QUIT to the Go
// runtime, which relays it between threads while dumping stacks after a
// SIGABRT.
//
// # Worker
//
// RunWorker reads its Config from the control channel, calls the boot
// function, reports ready, heartbeats every second, and drains when told
// to or when its control channel reaches EOF (the master died).
// Pdeathsig (SIGTERM) is only a backstop for that.
package workers
