package server

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/remuda/remuda/module"
)

// Module is a part of an app that the server boots, stops and checks with
// it, and whose commands join the binary's: package auth's Module
// (simplejwt's endpoints) is one. The contract is package module's; the
// server knows a module only through it, so a binary links only the
// modules its app registers.
type Module = module.Module

// Register adds m to the app. In every process that serves, the modules
// boot in the order registered, before OnBoot, and close in the reverse
// order after OnShutdown; see package module for the rest of their life.
// The settings of m (module.Configurable) join the server's. Register
// before Main. It panics if m declares a setting the server cannot hold:
// one with the name of another, or a Default of another type than bool,
// string or time.Duration.
func (a *App) Register(m Module) {
	t, err := a.settings().withModule(m)
	if err != nil {
		panic("server: Register: " + err.Error())
	}
	a.modules = append(a.modules, m)
	a.moduleSettings = t
}

// settings are the app's: the server's, then its modules'.
func (a *App) settings() settingTable {
	if a.moduleSettings == nil {
		return serverSettings
	}
	return a.moduleSettings
}

// moduleEnv is what a module is told of a process that runs with cfg.
func moduleEnv(cfg Config, log *zap.Logger, countLogin func(outcome string)) module.Env {
	settings, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // Config is plain data: it always encodes
	}
	return module.Env{
		Prod:     cfg.Prod,
		Settings: settings,
		From:     func(key string) string { return cfg.sources[key] },
		Shown: func(key string) string {
			if s, ok := cfg.settings.lookup(key); ok {
				return s.shown(cfg)
			}
			return ""
		},
		Logger:     log,
		CountLogin: countLogin,
	}
}

// validateModules asks each module that validates whether it can run with
// cfg, before anything binds.
func validateModules(app *App, cfg Config) error {
	env := moduleEnv(cfg, zap.NewNop(), nil)
	for _, m := range app.modules {
		if v, ok := m.(module.Validator); ok {
			if err := v.Validate(env); err != nil {
				return err
			}
		}
	}
	return nil
}

// startModules runs the Start of each module that has one, in the prod
// master.
func startModules(app *App, cfg Config, log *zap.Logger) error {
	env := moduleEnv(cfg, log, nil)
	for _, m := range app.modules {
		if s, ok := m.(module.Starter); ok {
			if err := s.Start(env); err != nil {
				return fmt.Errorf("%s: %w", m.Name(), err)
			}
		}
	}
	return nil
}

// bootModules boots app's modules in a serving process. closeAll closes
// those booted, last booted first; after an error, those booted are
// closed already.
func bootModules(app *App, cfg Config, log *zap.Logger, countLogin func(outcome string)) (closeAll func() error, err error) {
	env := moduleEnv(cfg, log, countLogin)
	var closers []func() error
	closeAll = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	for _, m := range app.modules {
		c, err := m.Boot(env)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("boot %s: %w", m.Name(), err)
		}
		if c != nil {
			closers = append(closers, c)
		}
	}
	return closeAll, nil
}

// moduleFindings are the modules' items of the deploy checklist.
func moduleFindings(app *App, cfg Config) []module.Finding {
	env := moduleEnv(cfg, zap.NewNop(), nil)
	var fs []module.Finding
	for _, m := range app.modules {
		if c, ok := m.(module.Checker); ok {
			fs = append(fs, c.Check(env)...)
		}
	}
	return fs
}
