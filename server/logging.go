package server

import (
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logs are never sampled. zap's production preset drops repeated messages
// past 100 a second; at 3 a.m. a missing line costs more than its bytes, and
// a goroutine dump relayed from a hung worker is hundreds of lines with the
// same message.

// newLogger builds the process's logger: zap's development console in dev,
// JSON lines with level, ts and msg in prod; every line carries the pid.
func newLogger(cfg Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", cfg.LogLevel, err)
	}
	core := zapcore.NewCore(encoder(cfg.Prod), zapcore.Lock(os.Stderr), level)
	opts := []zap.Option{zap.Fields(zap.Int("pid", os.Getpid())), zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(os.Stderr))}
	if !cfg.Prod {
		opts = append(opts, zap.Development(), zap.AddStacktrace(zapcore.ErrorLevel))
	}
	return zap.New(core, opts...), nil
}

// newAccessLog builds the access log for cfg.AccessLog: nil when empty,
// stderr for "-" (in the mode's encoding), else JSON lines appended to a
// file that reopen reopens (USR1, after logrotate).
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
	return zap.New(zapcore.NewCore(encoder(true), f, zap.InfoLevel), pid), f.Reopen, nil
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
// the same path, so logrotate's rename-then-signal works.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopenFile) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
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

func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}
