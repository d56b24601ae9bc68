package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/remuda/remuda/module"
)

// recorder is a module that writes what the server asks of it into a
// shared log, and fails its boot or its validation when told to.
type recorder struct {
	name           string
	log            *[]string
	failBoot       bool
	refuse         string // Validate's error, if any
	finding        module.Finding
	seenDatabase   string // the database setting, as Boot decoded it
	commandRanWith map[string]string
}

func (m *recorder) Name() string { return m.name }

func (m *recorder) Boot(env module.Env) (func() error, error) {
	*m.log = append(*m.log, "boot "+m.name)
	if m.failBoot {
		return nil, errors.New("no database")
	}
	m.seenDatabase = settingOf(env, "database")
	return func() error { *m.log = append(*m.log, "close "+m.name); return nil }, nil
}

func (m *recorder) Validate(module.Env) error {
	if m.refuse != "" {
		return errors.New(m.refuse)
	}
	return nil
}

func (m *recorder) Check(module.Env) []module.Finding { return []module.Finding{m.finding} }

func (m *recorder) Commands() []module.Command {
	return []module.Command{{Name: m.name + "cmd", Summary: "the " + m.name + " command", About: "Runs.",
		Reads: []string{"database"}, Flags: []module.Flag{{Name: "loud", Help: "say it loud"}},
		Run: func(inv module.Invocation) int {
			m.commandRanWith = inv.Flags
			fmt.Fprintf(inv.Stdout, "ran with database %s\n", settingOf(inv.Env, "database"))
			return module.ExitOK
		}}}
}

// settingOf is the text of one setting in env, as a module decodes it.
func settingOf(env module.Env, key string) string {
	var settings map[string]any
	if err := json.Unmarshal(env.Settings, &settings); err != nil {
		return "undecodable: " + err.Error()
	}
	return fmt.Sprint(settings[key])
}

// TestModules registers two modules and checks every part of their life
// the server runs: boot in order and close in reverse, a failed boot
// closing those booted before it, Validate refusing `run` with exit 2,
// Check's findings in `check`, and their commands in the usage and at work
// with the settings they read.
func TestModules(t *testing.T) {
	var log []string
	a := &recorder{name: "alpha", log: &log, finding: module.Finding{ID: "W901", Msg: "alpha says hello"}}
	b := &recorder{name: "beta", log: &log, finding: module.Finding{ID: "E902", Err: true, Msg: "beta is unhappy"}}
	app := NewApp()
	app.Register(a)
	app.Register(b)
	cfg, err := loadConfig([]string{"--database", "sqlite:/tmp/x.db"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("boot and close", func(t *testing.T) {
		log = nil
		closeAll, err := bootModules(app, cfg, zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		closeAll()
		if got, want := strings.Join(log, ", "), "boot alpha, boot beta, close beta, close alpha"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if a.seenDatabase != "sqlite:/tmp/x.db" {
			t.Errorf("alpha's boot read database %q, want sqlite:/tmp/x.db", a.seenDatabase)
		}
	})
	t.Run("failed boot", func(t *testing.T) {
		log = nil
		b.failBoot = true
		defer func() { b.failBoot = false }()
		_, err := bootModules(app, cfg, zap.NewNop(), nil)
		if err == nil || !strings.Contains(err.Error(), "boot beta: no database") {
			t.Errorf("got error %v, want one naming beta and its error", err)
		}
		if got, want := strings.Join(log, ", "), "boot alpha, boot beta, close alpha"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("validate", func(t *testing.T) {
		b.refuse = "beta needs a key"
		defer func() { b.refuse = "" }()
		var stdout, stderr bytes.Buffer
		// A certificate that does not exist stops run at once if Validate
		// is ever not asked first: the test cannot end up serving.
		code := run(app, "myapp", []string{"run", "--bind", "127.0.0.1:0", "--certfile", "/nonexistent.pem", "--keyfile", "/nonexistent.pem"}, &stdout, &stderr)
		if code != ExitUsage || !strings.Contains(stderr.String(), "myapp run: beta needs a key") {
			t.Errorf("run: exit %d, stderr %q; want %d and the refusal", code, stderr.String(), ExitUsage)
		}
	})
	t.Run("check", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(app, "myapp", []string{"check"}, &stdout, &stderr)
		for _, want := range []string{"warning W901: alpha says hello", "error E902: beta is unhappy"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("check: stderr %q, want %q", stderr.String(), want)
			}
		}
		if code != ExitError {
			t.Errorf("check with a module's error: exit %d, want %d", code, ExitError)
		}
	})
	t.Run("commands", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		run(app, "myapp", []string{"help"}, &stdout, &stderr)
		if !strings.Contains(stdout.String(), "alphacmd  the alpha command") {
			t.Errorf("usage lacks alpha's command:\n%s", stdout.String())
		}
		stdout.Reset()
		code := run(app, "myapp", []string{"betacmd", "--loud", "--database", "sqlite:/tmp/y.db"}, &stdout, &stderr)
		if code != ExitOK || stdout.String() != "ran with database sqlite:/tmp/y.db\n" || b.commandRanWith["loud"] != "true" {
			t.Errorf("betacmd: exit %d, stdout %q, flags %v; want 0, the database given and loud", code, stdout.String(), b.commandRanWith)
		}
	})
}
