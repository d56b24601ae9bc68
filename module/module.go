// Package module states what a Remuda module is: a part of an app that the
// server boots and stops with the app, whose settings join the server's,
// whose commands join the binary's command line and whose findings join
// `server check`'s deploy checklist.
// Package auth's Module (djangorestframework-simplejwt's endpoints and the
// users' store) is one.
//
// The contract has a package of its own so that the server and a module
// each depend on it and neither on the other, as database/sql and its
// drivers do through database/sql/driver: package server runs the modules
// an app registers (App.Register) knowing only these interfaces, so a
// binary links only the modules it registers, and a module need not import
// package server.
//
// A module's life in `server run`:
//
//	Validate (once, before anything binds: a refusal exits 2)
//	Start    (prod: once in the master, after its sockets are bound and its
//	          privileges dropped, before the first worker)
//	Boot     (every process that serves: the dev server, each prod worker,
//	          before App.OnBoot) … serve … drain → App.OnShutdown → close
//
// Every method but Name and Boot is optional: the server calls it when the
// module implements the interface that declares it.
package module

import (
	"encoding/json"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
)

// Module is what App.Register takes.
type Module interface {
	// Name names the module in errors and logs ("auth").
	Name() string
	// Boot runs in every process that serves requests, before App.OnBoot:
	// open what the module's handlers need here. An error aborts that
	// process's boot (in prod the master retries the worker with backoff).
	// close, if non-nil, runs once the process has stopped serving, after
	// App.OnShutdown, unless that hook overran its deadline and was
	// abandoned (it may still be using what close would close).
	Boot(env Env) (close func() error, err error)
}

// Validator is a module that can refuse a configuration before anything
// binds: `server run` prints Validate's error after the command's name and
// exits 2, as for a bad setting.
type Validator interface {
	Validate(env Env) error
}

// Starter is a module with work to do once per server in the prod master,
// after its sockets are bound and its privileges dropped (files it creates
// belong to the workers' user), before its first worker starts: a master
// started by USR2 runs it too. An error stops the master.
type Starter interface {
	Start(env Env) error
}

// Checker is a module with items in the deploy checklist of `server check`.
type Checker interface {
	Check(env Env) []Finding
}

// Configurable is a module with settings of its own. The server reads
// them as it reads its own: a flag --NAME (underscores as dashes), an
// environment variable SERVER_NAME and a key of the TOML file, by the
// same precedence; it refuses a value out of the Setting's bounds before
// anything starts, naming where it came from; it lists them in the usage
// of `run` and prints them in `server check`; and it gives their values
// to the module in Env.Settings, by name. App.Register panics on a name
// that another setting has, or on a Default of a type not listed below.
type Configurable interface {
	Settings() []Setting
}

// Setting declares one setting of a module.
type Setting struct {
	// Name is the TOML key, lower case with underscores ("database").
	Name string
	// Default is the value when no flag, variable or file gives one, in
	// both modes. Its type is the setting's: bool, string or
	// time.Duration.
	Default any
	// Arg names the flag's value in usage ("URL"); "" for a bool.
	Arg string
	// Help is the setting's line in usage.
	Help string
	// Want says what is allowed, after "want" in the error that refuses a
	// value ("a key of at least 32 bytes").
	Want string
	// Enum, if non-nil, lists the values a string setting may take.
	Enum []string
	// A time.Duration setting is above 0, or 0 too if ZeroOK, and at most
	// MaxDuration (if 0, the server's limit for every duration: 24h).
	MaxDuration time.Duration
	ZeroOK      bool
	// Check, if non-nil, refuses a value that the bounds above let
	// through: it gets the value, of Default's type, and says why it is
	// refused, or returns nil.
	Check func(v any) error
	// Secret is never printed: `server check` says only whether it is
	// set, and an error about it hides its value.
	Secret bool
	// Credentials is a URL whose password (user:PASSWORD@, or libpq's
	// password= parameter) is never printed.
	Credentials bool
}

// Commander is a module that adds commands to the binary (auth adds
// createuser, changepassword, importusers, flushexpiredtokens, migrate).
type Commander interface {
	Commands() []Command
}

// Env is what the server tells a module about the process it runs in.
type Env struct {
	// Prod tells the production runner (--prod) from the dev server.
	Prod bool
	// Settings are the effective settings, the server's and every
	// module's, as a JSON object keyed by the settings' names (the TOML
	// keys: "workers", "database", …); a module decodes the ones it reads.
	// Durations are JSON numbers of nanoseconds (time.Duration).
	Settings json.RawMessage
	// From says where the setting named key got its value: "default",
	// "file", "env SERVER_SECRET_KEY", "flag --database"; "" when unknown.
	// Never nil.
	From func(key string) string
	// Shown is the value of the setting named key as `server check`
	// prints it, a TOML value with secrets hidden ("5m", "(hidden)"), for
	// messages; "" for a name that is no setting. Never nil.
	Shown func(key string) string
	// Logger is the process's logger. Never nil.
	Logger *zap.Logger
	// CountLogin, if non-nil, counts a login attempt by outcome in the
	// server's metrics (remuda_logins_total{outcome}): a prod worker's.
	CountLogin func(outcome string)
}

// Finding is one item of the deploy checklist, in the manner of Django's
// check --deploy: an ID to look up, an error (check then exits non-zero)
// or a warning, and a sentence that says what is wrong and how to fix it.
type Finding struct {
	ID  string
	Err bool
	Msg string
}

// Command is a command a module adds to the binary: `NAME CMD [flags]`.
type Command struct {
	Name     string
	Synopsis string // what follows NAME CMD in its usage line
	Summary  string // one line, in the list of commands
	About    string // what it does, in its --help
	// Reads names the settings it reads (their flags are listed in its
	// --help); the others are accepted and ignored, so that one
	// environment serves every command.
	Reads []string
	Flags []Flag // its own flags
	Run   func(inv Invocation) int
}

// Flag is a command's own flag, not a setting.
type Flag struct {
	Name string // without dashes
	Arg  string // the value's name in usage; "" for a boolean flag
	Help string
}

// Invocation is one run of a Command.
type Invocation struct {
	Env
	// Flags holds the command's own flags given, by name ("true" for a
	// boolean one).
	Flags  map[string]string
	Stdin  *os.File
	Stdout io.Writer
	Stderr io.Writer
	// Errorf prints "NAME CMD: message" on Stderr.
	Errorf func(format string, args ...any)
	// Help is the command line that prints the command's usage.
	Help string
}

// Exit statuses of a Command's Run, those of the binary.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed
	ExitUsage = 2 // a bad flag or value
)
