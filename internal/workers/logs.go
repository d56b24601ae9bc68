package workers

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/ipc"
)

// Logs. A worker writes its log lines to the master's log file itself, not
// through the master: a master stopped by SIGSTOP or a debugger, or just
// slow, must not stall its workers, and a pipe it no longer reads fills
// within milliseconds under load, after which every worker blocks in
// write(2). The master hands each worker a duplicate of the file it writes
// to (Master.LogFile: its stderr, or its log file as last reopened) after
// the listeners, and says so in the config frame; internal/ipc's doc has
// the layout and what keeps lines whole. The worker's stdout and stderr
// stay pipes to the master for what is not a log line of its own (the
// app's prints and loggers, a panic, a stack dump after SIGABRT), which
// the master logs as JSON lines, keeping the level the app gave them
// (Master.relay, output.go). An app that logs through slog or the log
// package does not use them: the server routes both to the worker's own
// logger.

// logFile is this worker's log file, from its master; see LogFile.
var logFile *os.File

// LogFile returns, in a worker, the file its master writes its log to: the
// master's stderr, or its log file as it was when the worker started. A
// worker's loggers write their lines there themselves, each line in one
// Write and none kept in a buffer across lines (lines of several processes
// then never mix within a line; see internal/ipc). After USR1 the worker
// reopens its log file at its path (Worker.Reopen), as the master did just
// before it passed the signal on.
//
// LogFile is nil outside a worker, before RunWorker has read its config
// (so: call it from the boot function), and under a master of an older
// release, which passes none: log to stderr then, which the master relays.
func LogFile() *os.File { return logFile }

// inheritLog takes the log file that the config frame hello announces, at
// the fd after the listeners, and makes it close-on-exec, so that programs
// the app starts do not inherit it.
func inheritLog(hello ipc.Frame) error {
	if !hello.Log {
		return nil
	}
	fd := ipc.LogFD(hello.Listeners)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("log file at fd %d: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	logFile = os.NewFile(uintptr(fd), "log")
	return nil
}

// logFile returns the file the master hands its workers for their logs.
func (m *Master) logFile() *os.File {
	if m.LogFile != nil {
		if f := m.LogFile(); f != nil {
			return f
		}
	}
	return os.Stderr
}
