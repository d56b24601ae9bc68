package server

import (
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logs are never sampled. zap's production preset drops repeated messages
// past 100 a second; at 3 a.m. a missing line costs more than its bytes, and
// a goroutine dump relayed from a hung worker is hundreds of lines with the
// same message.

// newLogger builds the process's logger, writing to stderr: zap's
// development console in dev, JSON lines with level, ts and msg in prod;
// every line carries the pid. A worker logs with it: its stderr is a pipe
// to the master, which relays the lines to the error log.
func newLogger(cfg Config) (*zap.Logger, error) {
	return buildLogger(cfg, zapcore.Lock(os.Stderr))
}

// newErrorLog builds the logger of the process that writes cfg.ErrorLog
// (the dev server, or the prod master). out is where it writes, for the
// master to relay its workers' lines there too; reopen reopens the file at
// its path (nil for stderr), for USR1 after logrotate moved it.
func newErrorLog(cfg Config) (log *zap.Logger, out zapcore.WriteSyncer, reopen func() error, err error) {
	if cfg.ErrorLog == "-" {
		out = zapcore.Lock(os.Stderr)
		log, err = buildLogger(cfg, out)
		return log, out, nil, err
	}
	f := &reopenFile{path: cfg.ErrorLog}
	if err := f.Reopen(); err != nil {
		return nil, nil, nil, err
	}
	if log, err = buildLogger(cfg, f); err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	return log, f, f.Reopen, nil
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
// second's. On stderr ("-") lines are written one by one: stderr is a pipe
// the worker's other logs share, where a write over 4 KiB could be split.
const (
	accessLogBuffer = 64 << 10
	accessLogFlush  = time.Second
)

// newAccessLog builds the access log for cfg.AccessLog: nil when empty,
// stderr for "-" (in the mode's encoding), else JSON lines appended to a
// file, buffered, that reopen flushes and reopens (USR1, after
// logrotate). The caller calls the logger's Sync before it exits.
func newAccessLog(cfg Config) (log *zap.Logger, reopen func() error, err error) {
	pid := zap.Fields(zap.Int("pid", os.Getpid()))
	switch cfg.AccessLog {
	case "":
		return nil, nil, nil
	case "-":
		return zap.New(zapcore.NewCore(encoder(cfg.Prod), zapcore.Lock(os.Stderr), zap.InfoLevel), pid), nil, nil
	}
	f := &reopenFile{path: cfg.AccessLog}
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
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopenFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err) // the PathError names the file
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
