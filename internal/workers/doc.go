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
// makes a process a worker; see IsWorker), the control channel at fd 3,
// the listening sockets from fd 4 and the master's log file after them.
// Every worker accepts on the same sockets: the kernel spreads
// connections, and no worker's exit can reset a connection queued on a
// socket the others still hold. The wire format of the control channel is
// documented in internal/ipc.
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
//     Config.MaxRequests reached) starts a replacement, and tells the old
//     worker to drain only once the replacement is ready;
//   - on HUP loads a new Config and starts a new generation; the old one is
//     told to drain only when every new worker is ready. If a new worker
//     fails to boot, the new generation is abandoned and the old keeps
//     serving. Each worker is held to its own generation's Config (boot
//     and silence deadlines, MaxMemory, and the graceful timeout of its
//     drain): a HUP that shortens GracefulTimeout does not cut short the
//     drain of the workers it retires;
//   - notices when it was itself stopped (SIGSTOP, a debugger) or starved:
//     its tick comes over a second late. It then moves every worker's
//     deadlines by that time and logs "master was not running, worker
//     deadlines moved": the heartbeats of that time wait unread in the
//     workers' sockets, and healthy workers must not be aborted for the
//     master's own pause.
//
// # Logs
//
// A worker writes its log lines, its access log's too when that is "-",
// straight to the master's log file, which the master passes it as an
// inherited file (see LogFile; internal/ipc documents the layout and what
// keeps lines whole): no line goes through the master, so a master that
// is stopped never stalls its workers, and the lines of requests served
// meanwhile are in the log at once. On USR1 the master reopens its file,
// then each worker reopens the same path; a worker started later inherits
// the new file. Worker stdout and stderr still go through the master, for
// what is not a log line of the worker's own: the app's prints and
// loggers, a panic, the Go runtime's stack dump after SIGABRT, a library
// printing to stderr. The master logs each such line as a JSON line naming
// the worker, with the level the line gives itself (output.go; the
// worker's own JSON lines pass as they are), so every line in the log is
// one JSON object. While the master is stopped those pipes can fill
// (64 KiB for stderr, up to 1 MiB for stdout), and a worker writing to
// them then waits for it.
//
// # Signals
//
//	TERM        graceful stop: STOPPING=1 to systemd; workers serve on for
//	            Config.ShutdownDelay with ReadinessPath answering 503, then
//	            serve what the kernel has queued, stop accepting, finish
//	            in-flight requests within the graceful timeout; the master
//	            exits 0. A second TERM ends the delay, not the drain
//	INT, QUIT   fast stop, without a delay or ending one
//	HUP         new generation with a reloaded Config, then retire the old
//	TTIN, TTOU  one worker more, one fewer
//	USR1        reopen log files: the master its own (Master.Reopen), then
//	            every worker (Worker.Reopen: its log files)
//	USR2        upgrade the master itself (see below)
//
// Workers take TERM (a stop of the service: the shutdown delay, then the
// drain; every later TERM is the same stop, since under systemd's
// KillMode=control-group each worker gets systemd's TERM and its
// master's), INT (stop now), and the drain frame on the control channel
// (drain at once): a retirement while the service goes on (HUP, TTOU, a
// recycle) skips the delay, and a second TERM to the master ends it.
// The doc of internal/ipc says how a master of this release retires a
// worker of an older one, or one not ready yet. They leave QUIT to the Go
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
// # Metrics and status
//
// With Master.MetricsBind set, the master serves /metrics in Prometheus's
// text format and /status as JSON. Workers count on their Counters (plain
// atomics in fixed arrays: no lock, map or allocation per request, no
// Prometheus client) and each heartbeat carries what they counted since the
// previous one; the master adds these deltas up. A total therefore never goes
// down when a worker exits or is replaced: a draining worker sends a last
// heartbeat before it exits, and a worker that is killed (SIGKILL, a crash)
// loses at most the second since its last one. A master started by USR2
// starts from zero, which Prometheus's rate() takes as a counter reset.
//
// The master writes the text format (version 0.0.4) itself, in
// metrics.go, rather than through the Prometheus Go client: the client
// and its protobuf dependency cost every process of the binary about
// 2 MiB of resident memory (measured idle: master 14.4 → 16.4 MiB,
// workers 17.5 → 19.6 MiB), past the budget of an idle master (15 MiB),
// for a format that is stable and a page of code. The tests read the page
// with the Prometheus client's own parser (expfmt), and cmd/server's
// TestMetricsPassPromtool lints a real master's page with promtool.
//
//	remuda_requests_total{method,code}          counter  requests served; a method outside
//	                                                     GET HEAD POST PUT PATCH DELETE OPTIONS
//	                                                     CONNECT TRACE is "other", as is a code
//	                                                     outside 100–599
//	remuda_request_duration_seconds             histogram from reading the request to the
//	                                                     handler's return (buckets 5 ms to 10 s)
//	remuda_requests_in_flight                   gauge    as of each worker's last heartbeat
//	remuda_workers{state}                       gauge    booting, ready, draining
//	remuda_worker_exits_total{reason}           counter  crash, boot_failed, timeout (a request
//	                                                     past Config.Timeout), silent (no
//	                                                     heartbeat: SIGABRT), max_requests,
//	                                                     memory, reload (retired by HUP),
//	                                                     abandoned (a HUP generation that could
//	                                                     not boot), scale_down (TTOU), stop
//	remuda_reloads_total                        counter  generations started by HUP
//	remuda_upgrades_total                       counter  master upgrades started by USR2
//	remuda_logins_total{outcome}                counter  success, invalid, throttled,
//	                                                     unavailable, error, other (any
//	                                                     other outcome, Counters.Login)
//	remuda_accept_queue_length{addr}            gauge    connections waiting in the kernel
//	remuda_accept_queue_max{addr}               gauge    the listen backlog
//	remuda_master_generation                    gauge    the newest generation
//	remuda_build_info{app,version,revision,goversion}  gauge  always 1: the main module,
//	                                                     Remuda's version, the VCS revision
//	                                                     ("-dirty" if modified; "unknown" if
//	                                                     not stamped) and the Go release
//
// Process and Go runtime figures come twice. The standard names of
// Prometheus's process and Go collectors (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds,
// process_virtual_memory_bytes, process_start_time_seconds, go_goroutines,
// go_threads, go_info, go_gc_duration_seconds, go_memstats_*), unlabelled,
// describe the master itself, the process that answers the scrape, as
// they do for any other target: dashboards made for them work unchanged.
// Each live worker has its own series, labelled with its number (as in the
// logs and /status), under remuda_worker_*: cpu_seconds_total,
// resident_memory_bytes, open_fds, threads and start_time_seconds, which
// the master reads from /proc/PID at the scrape, and goroutines,
// heap_bytes, go_memory_bytes and gc_cycles_total, which the worker's
// heartbeats carry (internal/ipc). Per worker rather than summed, so that
// one leaking worker stands out; sum() gives the whole server. A worker's
// series leave the page when it exits, and its replacement's start from
// zero under another number. They are not added into the master's process_*
// figures: a sum of start times or of open-fd limits means nothing.
//
// The accept queue is the saturation signal. A connection the kernel has
// accepted waits in the listening socket's queue until a worker takes it;
// when every worker is busy the queue grows, then overflows (past
// remuda_accept_queue_max the kernel drops new connections), while the
// request metrics, which only see what workers took, look fine (Gunicorn
// #2295). The master reads it with getsockopt(TCP_INFO) on each TCP listener:
// on a listening socket Linux reports the queue length in tcpi_unacked and the
// backlog in tcpi_sacked. Unix sockets have no such option and no gauge. The
// queue only means something because a worker takes at most
// Config.Connections connections at once (Gunicorn's worker_connections):
// Go's net/http accepts eagerly, so without a cap the connections would pile
// up, unseen, inside one busy worker rather than wait for a free one. A
// draining worker lifts its cap: it serves everything queued when it stops.
//
// /status lists the master (pid, generation, serving_generation, started)
// and each worker: pid, worker number, generation, state, age_seconds, and
// as of its last heartbeat requests (begun), in_flight, rss_bytes and
// last_heartbeat. The master reads each worker's RSS from /proc/PID/statm at
// each heartbeat; above Config.MaxMemory the worker is recycled as for
// MaxRequests (replacement first, then a drain) and counted under "memory".
//
// # Worker
//
// RunWorker reads its Config from the control channel, calls the boot
// function, reports ready, heartbeats every second, and drains when told
// to or when its control channel reaches EOF (the master died).
// Pdeathsig (SIGTERM) is only a backstop for that. Every retirement drains
// the same way (internal/serve's Server.Drain): the connections the kernel
// queued are served, each request still arriving on a keep-alive
// connection is answered with "Connection: close", an idle connection is
// closed after a grace with a FIN, never a reset, connections the app
// hijacked (WebSockets) are waited for, the app told by the channel of
// server.Draining, and the worker logs how its connections ended
// ("drained").
//
// # Hooks
//
// Each process role has its hooks, func fields that do nothing when nil.
// In the master, in this order:
//
//	Master.OnStart   once, after binding and the privilege drop, before the first worker
//	Master.OnReady   once, when the first generation is whole and ready
//	Master.OnReload  after each HUP, when the new generation is whole and ready,
//	                 just before the old one is told to drain
//	Master.OnExit    as Run returns, once every worker has exited (or been killed
//	                 after a failure); not after handing over to a USR2 master
//
// In each worker: the boot function, then serving, then at TERM the
// shutdown delay and the drain (at the drain frame or EOF on the control
// channel, the drain alone), then Worker.Shutdown, then Worker.Close,
// then the exit. The drain and Shutdown share one deadline, the graceful
// timeout counted from the start of the drain, which keeps the worker's exit within
// that timeout and ahead of the master's SIGKILL one second later: a
// Shutdown still running at its deadline is abandoned (logged as
// "shutdown hook abandoned"), Close is skipped, and the worker exits 0 by
// itself, an ordinary "worker exited" for the master. After INT, Shutdown
// runs at once with FastStopShutdown.
//
// The master's hooks run on its loop: while one runs, no signal, frame or
// exit is handled. Their errors are logged and change nothing (OnStart's
// stops Run).
package workers
