package server

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/internal/safefile"
)

// Logs are never sampled. zap's production preset drops repeated messages
// past 100 a second; at 3 a.m. a missing line costs more than its bytes, and
// a goroutine dump relayed from a hung worker is hundreds of lines with the
// same message.

// newLogger builds a logger writing to stderr: zap's development console
// in dev, JSON lines with level, ts and msg in prod; every line carries the
// pid. A worker that failed before it had its own logger says why with it:
// its stderr is a pipe to the master, which relays the lines to the error
// log.
func newLogger(cfg Config) (*zap.Logger, error) {
	return buildLogger(cfg, zapcore.Lock(os.Stderr))
}

// logOutput is where an error log writes.
type logOutput struct {
	zapcore.WriteSyncer
	// File returns the file it writes to, as last reopened: the master
	// hands it to its workers, which write their lines there themselves.
	File func() *os.File
	// Reopen reopens the file at its path, for USR1 after logrotate moved
	// it; nil for stderr.
	Reopen func() error
}

// newErrorLog builds the logger of the process that writes cfg.ErrorLog
// (the dev server, or the prod master), and where it writes, for the
// master to relay its workers' stderr there too.
func newErrorLog(cfg Config) (*zap.Logger, logOutput, error) {
	if cfg.ErrorLog == "-" {
		out := logOutput{WriteSyncer: zapcore.Lock(os.Stderr), File: func() *os.File { return os.Stderr }}
		log, err := buildLogger(cfg, out)
		return log, out, err
	}
	f := &reopenFile{path: cfg.ErrorLog, owner: logOwner(cfg)}
	if err := f.Reopen(); err != nil {
		return nil, logOutput{}, err
	}
	log, err := buildLogger(cfg, f)
	if err != nil {
		f.Close()
		return nil, logOutput{}, err
	}
	return log, logOutput{WriteSyncer: f, File: f.File, Reopen: f.Reopen}, nil
}

// workerOutput is where a worker writes its own log and, for "-", its
// access log: file, the master's log file (workers.LogFile), into which
// the worker writes each line itself in one write(2), so that no line
// waits for a master that is stopped (see internal/ipc on lines kept
// whole). When cfg.ErrorLog is a path, reopen reopens it there (USR1: the
// master reopened it just before): the worker runs as the same user as
// its master by then (--user), so it can open whatever its master could,
// and the master created the new file already. The worker cannot ask the
// master for its new descriptor (that would take passing fds on the
// control channel), nor open the master's through /proc/PID/fd (a master
// that changed user is not dumpable: its /proc entries are root's).
//
// With file nil (a master of an older release, which passes none) the
// lines go to stderr, which the master relays, and there is nothing to
// reopen.
func workerOutput(cfg Config, file *os.File) (out zapcore.WriteSyncer, reopen func() error) {
	switch {
	case file == nil:
		return zapcore.Lock(os.Stderr), nil
	case cfg.ErrorLog == "-":
		return zapcore.Lock(file), nil
	}
	f := &reopenFile{path: cfg.ErrorLog, owner: logOwner(cfg), f: file}
	return f, f.Reopen
}

func buildLogger(cfg Config, out zapcore.WriteSyncer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", cfg.LogLevel, err)
	}
	core := zapcore.NewCore(encoder(cfg.Prod), out, level)
	opts := []zap.Option{zap.Fields(zap.Int("pid", os.Getpid())), zap.AddCaller(), zap.ErrorOutput(out)}
	if !cfg.Prod {
		opts = append(opts, zap.Development(), zap.AddStacktrace(zapcore.ErrorLevel))
	}
	return zap.New(core, opts...), nil
}

// Access-log buffering, for a file: lines are written in chunks of up to
// accessLogBuffer bytes, at least every accessLogFlush, and when the
// process exits or reopens the file. A write(2) per request would cost
// about as much as serving a small request; nginx buffers its access log
// the same way (access_log … buffer= flush=). Chunks hold whole lines and
// the file is opened O_APPEND, so the workers' lines never mix within a
// line; across workers they arrive a chunk at a time, not in time order.
// A worker killed by SIGKILL loses its unwritten lines, at most the last
// second's. With "-" lines are written one by one, where the error log
// goes (in a worker, its master's log file, which may be a pipe: a write
// over 4 KiB there could be split, a buffered chunk would be).
const (
	accessLogBuffer = 64 << 10
	accessLogFlush  = time.Second
)

// reopenAll returns a func that calls every non-nil reopen and joins their
// errors, or nil if there is none.
func reopenAll(reopens ...func() error) func() error {
	reopens = slices.DeleteFunc(reopens, func(f func() error) bool { return f == nil })
	if len(reopens) == 0 {
		return nil
	}
	return func() error {
		var errs []error
		for _, f := range reopens {
			errs = append(errs, f())
		}
		return errors.Join(errs...)
	}
}

// newAccessLog builds the access log for cfg.AccessLog: nil when empty,
// stderr for "-" (in the mode's encoding), else JSON lines appended to a
// file, buffered, that reopen flushes and reopens (USR1, after
// logrotate). The caller calls the logger's Sync before it exits.
func newAccessLog(cfg Config) (log *zap.Logger, reopen func() error, err error) {
	return accessLogTo(cfg, zapcore.Lock(os.Stderr))
}

// accessLogTo is newAccessLog with "-" meaning std rather than stderr: a
// worker's log output (workerOutput).
func accessLogTo(cfg Config, std zapcore.WriteSyncer) (log *zap.Logger, reopen func() error, err error) {
	pid := zap.Fields(zap.Int("pid", os.Getpid()))
	switch cfg.AccessLog {
	case "":
		return nil, nil, nil
	case "-":
		return zap.New(zapcore.NewCore(encoder(cfg.Prod), std, zap.InfoLevel), pid), nil, nil
	}
	f := &reopenFile{path: cfg.AccessLog, owner: logOwner(cfg)}
	if err := f.Reopen(); err != nil {
		return nil, nil, err
	}
	buf := &zapcore.BufferedWriteSyncer{WS: f, Size: accessLogBuffer, FlushInterval: accessLogFlush}
	reopen = func() error {
		buf.Sync() // the lines so far belong in the file being rotated
		return f.Reopen()
	}
	return zap.New(zapcore.NewCore(encoder(true), buf, zap.InfoLevel), pid), reopen, nil
}

func encoder(prod bool) zapcore.Encoder {
	if !prod {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		return zapcore.NewConsoleEncoder(ec)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.SecondsDurationEncoder
	return zapcore.NewJSONEncoder(ec)
}

// reopenFile is a log file opened for appending that can be reopened at
// the same path, so logrotate's rename-then-signal works. Each Write is
// one write(2) under its lock: whole lines never interleave.
type reopenFile struct {
	path  string
	owner *syscall.Credential // --user, or nil: see openLog
	mu    sync.Mutex
	f     *os.File
}

// logFileMode is the mode a log file is created with, less the umask.
const logFileMode = 0o640

// openLog opens the log file at path for appending, creating it if there
// is none. It refuses, with an error naming path, a symbolic link, a file
// owned by a user other than this process's, root or owner (the user a
// prod master becomes: --user), a file every user may write, a file with
// other hard links, and anything but a regular file or a device of root's
// (/dev/null): a file planted at the path by another user is never
// written through nor taken over (internal/safefile). logrotate's
// `create 0640 USER GROUP` makes files owner's, which pass.
//
// A file created by root (a master before it drops privileges) is given to
// owner, as Gunicorn does, so that the master and its workers can reopen it
// on USR1 once they run as owner. Group- and other-readability follow the
// mode and umask.
func openLog(path string, owner *syscall.Credential) (*os.File, error) {
	var owners []int
	if owner != nil {
		owners = append(owners, int(owner.Uid))
	}
	f, created, err := safefile.OpenAppend(path, logFileMode, owners...)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err) // the PathError names the file
	}
	if created && owner != nil && os.Geteuid() == 0 && owner.Uid != 0 {
		if err := f.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			f.Close()
			return nil, fmt.Errorf("open log: %w", err)
		}
	}
	return f, nil
}

// logOwner is the user the log files of cfg may belong to besides this
// process's and root: the prod --user, which a master started as root
// becomes; nil if none (or unknown: the master refuses to start then).
func logOwner(cfg Config) *syscall.Credential {
	if !cfg.Prod {
		return nil
	}
	cred, err := credential(cfg)
	if err != nil {
		return nil
	}
	return cred
}

func (r *reopenFile) Reopen() error {
	f, err := openLog(r.path, r.owner)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// File returns the file as last reopened.
func (r *reopenFile) File() *os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}
