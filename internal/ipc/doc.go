// Package ipc is the control channel between a Remuda master and its workers.
//
// # Roles and handshake
//
// The master starts a worker by re-executing its own binary with:
//
//   - the environment variable REMUDA_WORKER_PROTOCOL set to the protocol
//     version (Version, currently "2"). Its presence is what makes the
//     process a worker; the worker reads it and unsets it, so that programs
//     the app starts do not think they are workers too. A worker whose
//     version differs refuses to start and exits with code ExitProtocol: the
//     master must then be upgraded too (USR2), since only a master speaking
//     the new version can run the new workers;
//   - fd 2 (stderr): a pipe the master reads (see Logs);
//   - fd 3: its end of a unix stream socketpair, the control channel;
//   - fd 4 to 3+n: the n listening sockets, in the order of --bind;
//   - fd 4+n (LogFD(n)), when the config frame says "log": the master's
//     log file (its stderr, or its --error-log file as last reopened),
//     the same open file as the master's.
//
// # Logs
//
// A worker writes its log lines (JSON, one per line) to the log file
// itself, each in one write(2), never through the master: a master that
// is stopped (SIGSTOP, a debugger) must not stall the workers, and a pipe
// it no longer reads fills in milliseconds under load.
// Lines of several processes never mix within a line while a line fits
// one write that the kernel keeps whole: on a pipe up to PIPE_BUF (4 KiB;
// a longer line may be split and another process's line land in between
// its pieces), on a regular file opened O_APPEND on a local filesystem
// whatever its length. After USR1 (logrotate) the master reopens the file
// at its path, then signals the workers, which reopen the same path: both
// run as the same user (--user) by then, so a worker can reopen what its
// master could. A worker started later inherits the master's new file.
//
// Stdout and stderr stay pipes the master reads for what is not a log
// line of the worker's own: the app's prints, a panic, the Go runtime's
// stack dump after SIGABRT, a library printing to stderr. The master
// writes each of their lines to the log as JSON (the worker's own JSON
// lines as they are, any other as a JSON line naming the worker, with the
// level the line gives itself: internal/workers/output.go). While the master is
// stopped a pipe can fill (64 KiB; stdout is asked for 1 MiB); a worker
// writing there then waits for the master.
//
// Version 2 changed the keys of the config frame's "config" (a
// workers.Config, whose members now carry the settings' names, such as
// "graceful_timeout"): a worker of version 1 would read none of them and
// run on the defaults, so it must refuse a master of version 2, and the
// other way round.
//
// Version 1 gained "log" and its fd without changing the version: an older
// worker ignores both (an unknown member, an fd it never looks at) and
// logs to stderr, which its master relays as before; a newer worker under
// a master that sends no "log" does the same. Either way a HUP can run it,
// where a new version would make the operator upgrade the master (USR2)
// first.
//
// # Frames
//
// Each frame is one JSON object on one line, terminated by '\n', at most
// MaxFrameSize bytes including the newline. Every frame has a "type"; the
// other members depend on it and unknown members are ignored, so a later
// version may add members without breaking this one.
//
// Master to worker, exactly once, first:
//
//	{"type":"config","worker":7,"generation":2,"listeners":2,"log":true,"config":{...}}
//
// "worker" is the worker's number (unique within a master's life),
// "generation" counts HUPs, "listeners" is how many listening sockets follow
// the control channel (fds 4 to 3+listeners), "log" says that the master's
// log file follows them (fd 4+listeners), "config" is the application's
// configuration, opaque to this package (secrets included: this is why it
// travels here and never in argv or the environment).
//
// Worker to master:
//
//	{"type":"ready","accepts":["drain"]}               booted, serving
//	{"type":"heartbeat","requests":1234,"active":3}    every second
//	{"type":"recycle","reason":"timeout"}              replace me, then drain me
//	{"type":"failed","error":"open db: no such file"}  boot failed; exit follows
//
// A ready frame's "accepts" lists the frame types the worker takes from
// its master after config: a master sends a worker no other (an older
// worker reads an unknown type as a broken channel, and drains as if its
// master were gone).
//
// A heartbeat's "requests" counts every request the worker began, "active"
// those in flight. Its optional "metrics" member carries what the worker
// counted since its previous heartbeat (a metrics.Delta: requests by
// method and code, a duration histogram, logins by outcome), which the
// master adds to its totals:
//
//	{"type":"heartbeat","requests":1234,"active":3,"metrics":{
//	  "requests":{"GET 200":41,"GET 404":7},
//	  "duration":[30,8,3,2,4,1,0,0,0,0,0,0],"duration_sum":0.734,
//	  "logins":{"success":1}}}
//
// Deltas, not running totals, so that a worker's exit never makes a total
// go down. A draining worker sends one last heartbeat before it exits; a
// worker killed (SIGKILL, a crash) loses what it counted since its last
// one, at most a second's worth. Decode refuses a delta with an unknown
// method, a code outside 100–599 (other than "other"), another number of
// duration buckets or an unknown login outcome. A delta is bounded (every
// method × every code is about 5000 entries, under 100 KB), well within
// MaxFrameSize.
//
// A heartbeat's optional "runtime" member carries the worker's Go runtime
// as it is (a metrics.Runtime, read through runtime/metrics without
// stopping the world), which the master shows per worker on /metrics:
//
//	{"type":"heartbeat","requests":1234,"active":3,"runtime":{
//	  "goroutines":12,"heap_bytes":2097152,"memory_bytes":9437184,"gc_cycles":31}}
//
// Version 1 gained "runtime" without changing the version, as it gained
// "log": an older master ignores the member, and a newer master shows no
// runtime figures for an older worker that sends none.
//
// Master to worker, after config, only to a worker whose ready frame
// accepts it:
//
//	{"type":"drain"}                                   drain now
//
// The master stops a worker with signals: SIGTERM drains it (finish
// in-flight requests within the graceful timeout), SIGINT stops it at
// once. SIGTERM is a stop of the whole service, which under systemd
// (KillMode=control-group) reaches every worker from systemd too: a
// worker whose Config has a shutdown delay first spends the delay serving
// as before with its readiness endpoint answering 503, and takes every
// further SIGTERM as part of the same stop. A worker retired while the
// service goes on (HUP, TTOU, a recycle) must skip the delay, and that is
// what the drain frame says: the master sends it instead of SIGTERM to a
// worker that accepts it, and ends a stop's delay with it on a second
// TERM of its own. A worker that does not accept it (an older release, or
// one not ready yet) gets SIGTERM, and the master allows for the delay
// before it kills; once ready, it is sent the drain frame.
//
// Version 2 gained "accepts" and the drain frame without changing the
// version, as it gained "log": an older master never sends the frame and
// ignores the member; a newer master never sends it to an older worker.
//
// SIGQUIT keeps the Go runtime's meaning (dump the goroutines and exit),
// which the runtime itself relies on when a SIGABRT dumps them. A worker
// that reads EOF on the control channel knows the master is gone and
// drains, without a delay.
package ipc
