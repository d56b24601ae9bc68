package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/workers"
	"github.com/remuda/remuda/module"
)

// Exit codes of Main.
const (
	ExitOK    = module.ExitOK
	ExitError = module.ExitError // the server failed while running
	ExitUsage = module.ExitUsage // a bad command, flag, environment variable or config key
	// ExitBootFailed: a worker or the dev server could not boot, or the
	// master's first generation could not (Gunicorn's arbiter uses 3 too).
	ExitBootFailed = workers.ExitBootFailed
	// ExitProtocol: a worker started by a master of another version.
	ExitProtocol = workers.ExitProtocol
)

// Main is the command line of a Remuda binary (`server run`, `check`,
// `version`, …: see commands); it runs in the master and in every worker,
// and exits the process. A worker is told apart by its environment (see
// package workers), never by a flag.
func Main(app *App) {
	if workers.IsWorker() {
		os.Exit(runWorker(app))
	}
	os.Exit(run(app, progName(), os.Args[1:], os.Stdout, os.Stderr))
}

// runServer runs the dev server or the prod master until it stops.
func runServer(app *App, cfg Config, args []string) int {
	log, logOut, err := newErrorLog(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s run: %v\n", progName(), err)
		return ExitUsage
	}
	defer log.Sync()
	defer routeSlog(log)()
	// Each worker loads them again; a bad pair is a usage error here,
	// not a boot failure there.
	if _, err = tlsConfig(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s run: %v\n", progName(), err)
		return ExitUsage
	}
	if !cfg.Prod {
		err = runDev(app, cfg, log, logOut)
	} else {
		var cred *syscall.Credential
		if cred, err = credential(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "%s run: %v\n", progName(), err)
			return ExitUsage
		}
		m := &workers.Master{
			Credential:  cred,
			Binds:       cfg.Bind,
			Backlog:     cfg.Backlog,
			Config:      workersConfig(cfg),
			PIDFile:     cfg.PIDFile,
			Logger:      log,
			Stderr:      logOut,
			LogFile:     logOut.File,
			Reopen:      logOut.Reopen,
			MetricsBind: cfg.MetricsBind,
			OnStart:     func() error { return startModules(app, cfg, log) },
			// HUP: flags and environment are the master's own and cannot
			// change; the config file is read again.
			Reload: func() (workers.Config, error) {
				next, err := app.settings().load(args, os.Getenv)
				if err != nil {
					return workers.Config{}, err
				}
				if !slices.Equal(next.Bind, cfg.Bind) || next.PIDFile != cfg.PIDFile ||
					next.MetricsBind != cfg.MetricsBind || next.ErrorLog != cfg.ErrorLog {
					log.Warn("bind, pidfile, metrics_bind and error_log changes take a restart or USR2; keeping the old ones")
				}
				// Workers write to the master's log file and reopen it at
				// this path on USR1: it must stay the master's.
				next.ErrorLog = cfg.ErrorLog
				return workersConfig(next), nil
			},
			OnReady:  masterHook(app, app.OnReady),
			OnReload: masterHook(app, app.OnReload),
			OnExit:   masterHook(app, app.OnExit),
		}
		err = m.Run()
	}
	switch {
	case err == nil:
		return ExitOK
	case !cfg.Prod:
		// One line for the developer at the terminal, without the dev
		// logger's stack trace of this call, which says nothing of the
		// cause: a port in use, a log file refused, a boot that failed
		// (exit 3, as a prod master whose workers cannot boot).
		fmt.Fprintf(os.Stderr, "%s run: %v\n", progName(), err)
		if errors.Is(err, workers.ErrBootFailed) {
			return ExitBootFailed
		}
		return ExitError
	case errors.Is(err, workers.ErrBootFailed):
		log.Error("boot failed", zap.Error(err))
		return ExitBootFailed
	default:
		log.Error("server stopped", zap.Error(err))
		return ExitError
	}
}

// workersConfig is the part of cfg the process model reads (the
// workers.Config it embeds), with the whole of cfg as the payload every
// worker boots from.
func workersConfig(cfg Config) workers.Config {
	app, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // Config is plain data: it always encodes
	}
	wc := cfg.Config
	wc.App = app
	return wc
}

// appConfig is the Config of app a generation runs with, out of its
// workers.Config (see workersConfig).
func appConfig(app *App, wc workers.Config) (Config, error) {
	cfg := app.settings().defaults(false)
	if err := json.Unmarshal(wc.App, &cfg); err != nil {
		return Config{}, fmt.Errorf("decode config: %w", err)
	}
	return cfg, nil
}

// masterHook adapts one of App's master hooks to workers.Master's; nil
// stays nil.
func masterHook(app *App, hook func(Config) error) func(workers.Config) error {
	if hook == nil {
		return nil
	}
	return func(wc workers.Config) error {
		cfg, err := appConfig(app, wc)
		if err != nil {
			return err
		}
		return hook(cfg)
	}
}

// runWorker is Main in a worker process.
func runWorker(app *App) int {
	err := workers.RunWorker(func(wc workers.Config) (*workers.Worker, error) {
		cfg, err := appConfig(app, wc)
		if err != nil {
			return nil, err
		}
		// The worker writes its lines to its master's log file itself,
		// the access log's too when it is "-": none waits for a master
		// that is stopped.
		out, reopenLog := workerOutput(cfg, workers.LogFile())
		log, err := buildLogger(cfg, out)
		if err != nil {
			return nil, err
		}
		routeSlog(log) // for the worker's life: the app's slog and log lines
		return bootApp(app, cfg, log, out, reopenLog)
	})
	if err == nil {
		return ExitOK
	}
	// The worker's own logger may not exist yet; this line goes to the
	// master, which relays it.
	log, _ := newLogger(Config{Prod: true, LogLevel: "info"})
	log.Error("worker stopped", zap.Error(err))
	switch {
	case errors.Is(err, workers.ErrProtocol):
		return ExitProtocol
	case errors.Is(err, workers.ErrBootFailed):
		return ExitBootFailed
	default:
		return ExitError
	}
}

// version names the binary's module, Remuda's version and Go's.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "server (no build info) " + runtime.Version()
	}
	remuda := bi.Main.Version
	for _, d := range bi.Deps {
		if d.Path == "github.com/remuda/remuda" {
			remuda = d.Version
		}
	}
	return fmt.Sprintf("%s %s remuda %s %s", bi.Main.Path, bi.Main.Version, remuda, runtime.Version())
}
