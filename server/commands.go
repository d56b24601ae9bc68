package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"

	"go.uber.org/zap"

	"github.com/remuda/remuda/module"
)

// A command is one subcommand of Main: `NAME CMD [flags]`, where NAME is
// the binary's name as invoked. Every command answers -h and --help with
// its usage on stdout (exit 0), and refuses an unknown flag or argument
// (exit ExitUsage), naming the closest flag it knows.
type command struct {
	name     string
	synopsis string // what follows NAME CMD in its usage line
	summary  string // one line, in the list of commands
	about    string // what it does, in its --help
	// settings: it takes the app's settings (their flags, SERVER_*
	// variables and the config file: settingTable.load), reads those named by reads and
	// ignores the others, so that one environment serves every command.
	// run and check list every setting in their --help.
	settings bool
	reads    []string
	flags    []ownFlag // its flags besides the settings'
	run      func(inv *invocation) int
}

// ownFlag is a flag of one command, not a setting.
type ownFlag struct {
	name string // without dashes
	arg  string // the value's name in usage; "" for a boolean flag
	help string
}

// invocation is one run of a command.
type invocation struct {
	app  *App
	prog string // the binary's name as invoked, for usage and messages
	cmd  *command
	args []string // the arguments after the command's name
	cfg  Config   // the settings, for a command that takes them
	// own holds the command's own flags given, by name ("true" for a
	// boolean one).
	own            map[string]string
	stdin          *os.File
	stdout, stderr io.Writer
}

// errorf prints "NAME CMD: message" on stderr.
func (inv *invocation) errorf(format string, args ...any) {
	fmt.Fprintf(inv.stderr, "%s %s: %s\n", inv.prog, inv.cmd.name, fmt.Sprintf(format, args...))
}

// builtinCommands are the server's own commands, in the order of the
// usage; App.commands puts the modules' after the first two.
var builtinCommands = []*command{
	{name: "run", synopsis: "[--prod] [flags]", settings: true,
		summary: "serve (dev: one process; --prod: master + workers)",
		about: `Serves the app. Without --prod: the development server, one process that
rebuilds and re-executes itself when the Go sources change, logs in colour and
shows panics in the browser. With --prod: the production runner, a master that
binds the sockets and supervises --workers worker processes (signals: TERM,
INT, QUIT, HUP, TTIN, TTOU, USR1, USR2; see the README).
Exit status: 0 stopped by a signal, 1 the server failed (a port in use),
2 a bad command line, setting or key, 3 the first workers could not boot.`,
		run: runCommand},
	{name: "check", synopsis: "[--prod] [flags]", settings: true,
		summary: "validate the config, print it, run the deploy checklist",
		about: `Loads the settings as run would, prints them on stdout as TOML, each with
where its value came from, then the deploy checklist on stderr (errors E…,
warnings W…, each saying what to do). Serves nothing.
Exit status: 0 no error found, 1 an error found, 2 a bad flag, variable or key.`,
		run: checkCommand},
	{name: "version", summary: "print the module's, Remuda's and Go's versions",
		about: `Prints the app's module path and version, Remuda's version and Go's.`,
		run: func(inv *invocation) int {
			fmt.Fprintln(inv.stdout, version())
			return ExitOK
		}},
	{name: "help", synopsis: "[COMMAND]", summary: "this list, or a command's usage",
		about: `Prints the list of commands, or the usage of COMMAND (as COMMAND --help).`},
}

// commands are app's commands: the server's (run, check, version, help),
// with its modules' (module.Commander) before version and help.
func (a *App) commands() []*command {
	all := slices.Clone(builtinCommands[:2])
	for _, m := range a.modules {
		if c, ok := m.(module.Commander); ok {
			for _, mc := range c.Commands() {
				all = append(all, moduleCommand(mc))
			}
		}
	}
	return append(all, builtinCommands[2:]...)
}

// moduleCommand is a module's command as Main runs it: it takes the
// settings and reads those mc names.
func moduleCommand(mc module.Command) *command {
	flags := make([]ownFlag, len(mc.Flags))
	for i, f := range mc.Flags {
		flags[i] = ownFlag{f.Name, f.Arg, f.Help}
	}
	return &command{
		name: mc.Name, synopsis: mc.Synopsis, summary: mc.Summary, about: mc.About,
		settings: true, reads: mc.Reads, flags: flags,
		run: func(inv *invocation) int {
			return mc.Run(module.Invocation{
				Env:    moduleEnv(inv.cfg, zap.NewNop(), nil),
				Flags:  inv.own,
				Stdin:  inv.stdin,
				Stdout: inv.stdout,
				Stderr: inv.stderr,
				Errorf: inv.errorf,
				Help:   inv.prog + " " + inv.cmd.name + " --help",
			})
		},
	}
}

// lookupCommand returns app's command named name, or nil.
func lookupCommand(app *App, name string) *command {
	for _, c := range app.commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// progName is the binary's name as invoked (argv[0]'s last element), which
// usage and messages use: `myapp run`, not `server run`.
func progName() string {
	if len(os.Args) == 0 || os.Args[0] == "" {
		return "server"
	}
	return filepath.Base(os.Args[0])
}

// run is Main without the exit: prog is the binary's name as invoked,
// args the arguments after it.
func run(app *App, prog string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stderr, app, prog)
		return ExitUsage
	}
	name, args := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		mainUsage(stdout, app, prog)
		return ExitOK
	case "help":
		return help(app, prog, args, stdout, stderr)
	}
	cmd := lookupCommand(app, name)
	if cmd == nil {
		hint := ""
		if near := nearest(name, commandNames(app)); near != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", near)
		}
		fmt.Fprintf(stderr, "%s: unknown command %q%s\n", prog, name, hint)
		mainUsage(stderr, app, prog)
		return ExitUsage
	}
	inv := &invocation{app: app, prog: prog, cmd: cmd, args: args, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	var settings settingTable
	if cmd.settings {
		settings = app.settings()
	}
	flags, err := parseFlags(args, settings, cmd.flags)
	switch {
	case errors.Is(err, flag.ErrHelp):
		cmd.usage(stdout, prog, app.settings())
		return ExitOK
	case err != nil:
		inv.errorf("%v", err)
		fmt.Fprintf(stderr, "Run %q for usage.\n", prog+" "+cmd.name+" --help")
		return ExitUsage
	}
	inv.own = flags.own
	if cmd.settings {
		inv.cfg, err = settings.configFrom(flags, os.Getenv)
		// First, as a misspelled variable may explain a bad config; check
		// lists them among its findings (W018) when it gets that far.
		if err != nil || cmd.name != "check" {
			for _, w := range settings.unknownEnv(os.Environ()) {
				inv.errorf("warning: %s", w)
			}
		}
		if err != nil {
			inv.errorf("%v", err)
			return ExitUsage
		}
	}
	return cmd.run(inv)
}

// help is `NAME help [COMMAND]`.
func help(app *App, prog string, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
		lookupCommand(app, "help").usage(stdout, prog, app.settings())
		return ExitOK
	case len(args) == 0:
		mainUsage(stdout, app, prog)
		return ExitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "%s help: want one command, got %d arguments\n", prog, len(args))
		return ExitUsage
	}
	cmd := lookupCommand(app, args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "%s help: unknown command %q\n", prog, args[0])
		mainUsage(stderr, app, prog)
		return ExitUsage
	}
	cmd.usage(stdout, prog, app.settings())
	return ExitOK
}

func commandNames(app *App) []string {
	commands := app.commands()
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// mainUsage lists the commands.
func mainUsage(w io.Writer, app *App, prog string) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\ncommands:\n", prog)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range app.commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun %q for a command's flags.\n", prog+" COMMAND --help")
}

// usage prints the command's usage: its synopsis, what it does, its
// flags, of its own and of settings, the app's.
func (c *command) usage(w io.Writer, prog string, settings settingTable) {
	line := prog + " " + c.name
	if c.synopsis != "" {
		line += " " + c.synopsis
	}
	fmt.Fprintf(w, "usage: %s\n\n%s\n", line, c.about)
	if len(c.flags) > 0 || len(c.reads) > 0 {
		fmt.Fprintln(w, "\nflags:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range c.flags {
			name := "--" + f.name
			if f.arg != "" {
				name += " " + f.arg
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, f.help)
		}
		if len(c.reads) > 0 {
			fmt.Fprintf(tw, "  --config PATH\tTOML file of the settings (SERVER_CONFIG)\n")
		}
		for _, key := range c.reads {
			s, _ := settings.lookup(key)
			fmt.Fprintf(tw, "  %s %s\t%s (%s)\n", s.flag(), s.arg, s.help, s.env())
		}
		tw.Flush()
	}
	switch {
	case len(c.reads) > 0:
		fmt.Fprintf(w, "\nThe other settings of %q are accepted and ignored, so that one\nenvironment (SERVER_* variables, the config file) serves every command.\n", prog+" run --help")
	case c.settings:
		fmt.Fprintln(w)
		settings.usage(w)
	}
}

// runCommand is `NAME run`.
func runCommand(inv *invocation) int {
	if err := validateModules(inv.app, inv.cfg); err != nil {
		inv.errorf("%v", err)
		return ExitUsage
	}
	return runServer(inv.app, inv.cfg, inv.args)
}

// checkCommand is `NAME check`.
func checkCommand(inv *invocation) int {
	return check(inv, inv.app.settings().unknownEnv(os.Environ()))
}
