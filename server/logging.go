package server

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/internal/safefile"
	"github.com/remuda/remuda/internal/serve"
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

// accessLogTo builds the access log for cfg.AccessLog: nil when empty,
// std for "-" (in the mode's encoding: where the error log goes, see
// bootApp), else JSON lines appended to a file, buffered, that reopen
// flushes and reopens (USR1, after logrotate). The caller calls the
// logger's Sync before it exits.
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

// The app's log lines. A handler logs through Logger(r), a *zap.Logger
// that writes where the server's own lines go, with the request id; or
// through log/slog, whose default handler every process of `server run`
// points at the same logger (routeSlog), and which then carries the log
// package's lines too. Either way the app's lines are named "app" (the
// "logger" key), carry the pid (and, from a request's context, the
// request id and the worker's number and generation), and keep the
// server's level: a line below --log-level is dropped. slog's attributes
// go under "attrs", so that no key of the app's replaces one of ours
// (pid, level, ts, msg, request_id).

// appLogger is the name of the loggers of the app's lines.
const appLogger = "app"

// Logger returns a logger for the request r: the logger of the server
// that serves it, in dev and in prod, named "app" and with the request's
// id as request_id (the X-Request-ID of its answer). Outside a Remuda
// server, as under net/http/httptest, it returns zap.L(), zap's global
// logger: a no-op unless the program replaced it (zap.ReplaceGlobals,
// with zaptest.NewLogger in a test, for one).
func Logger(r *http.Request) *zap.Logger {
	return LoggerFrom(r.Context())
}

// LoggerFrom is Logger for code that has the request's context (or one
// derived from it) rather than the request.
func LoggerFrom(ctx context.Context) *zap.Logger {
	id, log := serve.RequestFrom(ctx)
	if log == nil {
		return zap.L()
	}
	return log.Named(appLogger).With(zap.String("request_id", id))
}

// slogAtInit is slog's default logger as the program started: slog's
// own, unless a package initialised before this one replaced it.
var slogAtInit = slog.Default()

// routeSlog makes log/slog's default logger, and with it the log
// package's (at INFO: slog.SetDefault's doing), write through log; it
// returns a func that puts back the previous default. Call it once per
// process, before the app's boot hook and handlers run. An app that set
// a default of its own before (in main, before Main) keeps it: routeSlog
// then does nothing.
func routeSlog(log *zap.Logger) (restore func()) {
	if slog.Default() != slogAtInit {
		return func() {}
	}
	prev, prevOut, prevFlags := slog.Default(), stdlog.Writer(), stdlog.Flags()
	slog.SetDefault(slog.New(newSlogHandler(log.Core())))
	return func() {
		slog.SetDefault(prev)
		stdlog.SetOutput(prevOut)
		stdlog.SetFlags(prevFlags)
	}
}

// slogHandler is a slog.Handler writing to a zap core: the process's, or,
// for a record logged with a request's context, that of the server
// serving the request, with the request's id.
type slogHandler struct {
	core zapcore.Core
	// with is what WithAttrs and WithGroup added, in order: attributes
	// (under the groups open when they were added) and group openings.
	with []withItem
}

// withItem is an attribute from WithAttrs, or, with group set, the
// opening of a group from WithGroup.
type withItem struct {
	attr  slog.Attr
	group string
}

func newSlogHandler(core zapcore.Core) *slogHandler { return &slogHandler{core: core} }

// zapLevel maps a slog level to zap's: below INFO is debug, up to WARN
// (excluded) info, up to ERROR warn, ERROR and above error. slog's custom
// levels (INFO+2, ERROR+4) fall in the band of the level they are
// written from.
func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l < slog.LevelInfo:
		return zapcore.DebugLevel
	case l < slog.LevelWarn:
		return zapcore.InfoLevel
	case l < slog.LevelError:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.core.Enabled(zapLevel(l))
}

func (h *slogHandler) Handle(ctx context.Context, rec slog.Record) error {
	core := h.core
	var fields []zap.Field
	if ctx != nil {
		if id, log := serve.RequestFrom(ctx); log != nil {
			core = log.Core()
			fields = append(fields, zap.String("request_id", id))
		}
	}
	ent := zapcore.Entry{Level: zapLevel(rec.Level), Time: rec.Time, LoggerName: appLogger, Message: rec.Message}
	if ent.Time.IsZero() {
		ent.Time = time.Now()
	}
	if rec.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{rec.PC}).Next()
		ent.Caller = zapcore.NewEntryCaller(f.PC, f.File, f.Line, f.File != "")
		ent.Caller.Function = f.Function
	}
	ce := core.Check(ent, nil)
	if ce == nil {
		return nil
	}
	fields = h.appendAttrs(fields, rec)
	ce.Write(fields...)
	return nil
}

// appendAttrs appends the handler's attributes and rec's, under the
// "attrs" namespace, with slog's rules: a group opened by WithGroup is
// left out when nothing follows it, attributes with an empty key and no
// value are left out, a group attribute with an empty key is inlined.
func (h *slogHandler) appendAttrs(fields []zap.Field, rec slog.Record) []zap.Field {
	if len(h.with) == 0 && rec.NumAttrs() == 0 {
		return fields
	}
	start := len(fields)
	fields = append(fields, zap.Namespace("attrs"))
	// Groups opened since the last attribute, written only once one
	// follows.
	var pending []string
	flush := func() {
		for _, g := range pending {
			fields = append(fields, zap.Namespace(g))
		}
		pending = pending[:0]
	}
	for _, w := range h.with {
		if w.group != "" {
			pending = append(pending, w.group)
			continue
		}
		if f, ok := zapField(w.attr); ok {
			flush()
			fields = append(fields, f)
		}
	}
	rec.Attrs(func(a slog.Attr) bool {
		if f, ok := zapField(a); ok {
			flush()
			fields = append(fields, f)
		}
		return true
	})
	if len(fields) == start+1 {
		fields = fields[:start] // nothing under "attrs"
	}
	return fields
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	with := slices.Clip(h.with)
	for _, a := range attrs {
		with = append(with, withItem{attr: a})
	}
	return &slogHandler{core: h.core, with: with}
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &slogHandler{core: h.core, with: append(slices.Clip(h.with), withItem{group: name})}
}

// zapField is a as a typed zap field, and false for what slog leaves out:
// an empty attribute, an empty group.
func zapField(a slog.Attr) (zap.Field, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return zap.String(a.Key, v.String()), true
	case slog.KindInt64:
		return zap.Int64(a.Key, v.Int64()), true
	case slog.KindUint64:
		return zap.Uint64(a.Key, v.Uint64()), true
	case slog.KindFloat64:
		return zap.Float64(a.Key, v.Float64()), true
	case slog.KindBool:
		return zap.Bool(a.Key, v.Bool()), true
	case slog.KindDuration:
		return zap.Duration(a.Key, v.Duration()), true
	case slog.KindTime:
		return zap.Time(a.Key, v.Time()), true
	case slog.KindGroup:
		attrs := v.Group()
		if len(attrs) == 0 {
			return zap.Field{}, false
		}
		if a.Key == "" {
			return zap.Inline(slogGroup(attrs)), true
		}
		return zap.Object(a.Key, slogGroup(attrs)), true
	}
	x := v.Any()
	if a.Key == "" && x == nil {
		return zap.Field{}, false
	}
	if err, ok := x.(error); ok {
		return zap.NamedError(a.Key, err), true
	}
	return zap.Any(a.Key, x), true
}

// slogGroup is a slog group's attributes as a zap object.
type slogGroup []slog.Attr

func (g slogGroup) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for _, a := range g {
		if f, ok := zapField(a); ok {
			f.AddTo(enc)
		}
	}
	return nil
}
