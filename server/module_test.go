package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/module"
)

// recorder is a module with a setting of its own, NAME_dir, that writes
// what the server asks of it into a shared log, and fails its boot or its
// validation when told to.
type recorder struct {
	name           string
	log            *[]string
	failBoot       bool
	refuse         string // Validate's error, if any
	finding        module.Finding
	seenDir        string // its dir setting, as Boot decoded it
	commandRanWith map[string]string
}

func (m *recorder) Name() string { return m.name }

func (m *recorder) Settings() []module.Setting {
	return []module.Setting{{Name: m.name + "_dir", Default: "/var/lib/" + m.name, Arg: "DIR",
		Help: "where " + m.name + " keeps its files", Want: "an absolute path",
		Check: func(v any) error {
			if !strings.HasPrefix(v.(string), "/") {
				return errors.New("the path is relative")
			}
			return nil
		}}}
}

func (m *recorder) Boot(env module.Env) (func() error, error) {
	*m.log = append(*m.log, "boot "+m.name)
	if m.failBoot {
		return nil, errors.New("no database")
	}
	m.seenDir = settingOf(env, m.name+"_dir")
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
		Reads: []string{m.name + "_dir"}, Flags: []module.Flag{{Name: "loud", Help: "say it loud"}},
		Run: func(inv module.Invocation) int {
			m.commandRanWith = inv.Flags
			fmt.Fprintf(inv.Stdout, "ran with %s_dir %s\n", m.name, settingOf(inv.Env, m.name+"_dir"))
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
// the server runs: their settings read with the server's, boot in order
// and close in reverse, a failed boot closing those booted before it,
// Validate refusing `run` with exit 2, Check's findings in `check`, and
// their commands in the usage and at work with the settings they read.
func TestModules(t *testing.T) {
	var log []string
	a := &recorder{name: "alpha", log: &log, finding: module.Finding{ID: "W901", Msg: "alpha says hello"}}
	b := &recorder{name: "beta", log: &log, finding: module.Finding{ID: "E902", Err: true, Msg: "beta is unhappy"}}
	app := NewApp()
	app.Register(a)
	app.Register(b)
	cfg, err := app.settings().load([]string{"--alpha-dir", "/srv/a"}, env(nil))
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
		if a.seenDir != "/srv/a" || b.seenDir != "/var/lib/beta" {
			t.Errorf("boots read alpha_dir %q and beta_dir %q, want /srv/a (the flag) and /var/lib/beta (the default)", a.seenDir, b.seenDir)
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
		code := run(app, "myapp", []string{"betacmd", "--loud", "--beta-dir", "/srv/b"}, &stdout, &stderr)
		if code != ExitOK || stdout.String() != "ran with beta_dir /srv/b\n" || b.commandRanWith["loud"] != "true" {
			t.Errorf("betacmd: exit %d, stdout %q, flags %v; want 0, the directory given and loud", code, stdout.String(), b.commandRanWith)
		}
		stdout.Reset()
		run(app, "myapp", []string{"betacmd", "--help"}, &stdout, &stderr)
		if !strings.Contains(stdout.String(), "--beta-dir DIR  where beta keeps its files (SERVER_BETA_DIR)") {
			t.Errorf("betacmd --help does not list the setting it reads:\n%s", stdout.String())
		}
	})
}

// withSettings is a module that declares the settings it is given.
type withSettings []module.Setting

func (withSettings) Name() string                          { return "kit" }
func (withSettings) Boot(module.Env) (func() error, error) { return nil, nil }
func (m withSettings) Settings() []module.Setting          { return m }
func (withSettings) Check(env module.Env) []module.Finding { return nil }
func (withSettings) Validate(env module.Env) error         { return nil }
func (withSettings) Commands() []module.Command            { return nil }

// TestModuleSettings checks that a module's settings are read as the
// server's are: by flag, variable and file in that precedence, bounded,
// refused with the source and what is allowed, hidden when secret,
// listed in the usage, printed by check, and sent to the workers; and
// that Register refuses one the server cannot hold.
func TestModuleSettings(t *testing.T) {
	kit := withSettings{
		{Name: "kit_token", Default: "", Arg: "TOKEN", Help: "the kit's token", Want: "a token", Secret: true},
		{Name: "kit_wait", Default: 5 * time.Second, Arg: "DUR", Help: "how long the kit waits", Want: "a duration above 0 and at most 1m", MaxDuration: time.Minute},
		{Name: "kit_loud", Default: false, Help: "whether the kit shouts", Want: "true or false"},
	}
	app := NewApp()
	app.Register(kit)
	settings := app.settings()

	file := writeFile(t, "kit_wait = 7\nkit_loud = true\n")
	cfg, err := settings.load([]string{"--config", file, "--kit-loud=false"}, env(map[string]string{"SERVER_KIT_TOKEN": "s3cret-token", "SERVER_KIT_WAIT": "9s"}))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{"kit_token": "s3cret-token", "kit_wait": 9 * time.Second, "kit_loud": false} {
		if got := valueAt(cfg.modules[name]); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if v, ok := cfg.Setting("kit_wait"); !ok || v != 9*time.Second {
		t.Errorf("cfg.Setting(kit_wait) = %v, %t; want 9s, true", v, ok)
	}
	if v, ok := cfg.Setting("workers"); ok {
		t.Errorf("cfg.Setting(workers) = %v, true; want false: the server's settings are fields", v)
	}
	var toml bytes.Buffer
	if err := writeConfig(&toml, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`kit_wait = "9s" +# env SERVER_KIT_WAIT`, "kit_loud = false +# flag --kit-loud", `# kit_token = \(set, 12 bytes\) +# env SERVER_KIT_TOKEN`} {
		if !regexp.MustCompile(want).MatchString(toml.String()) {
			t.Errorf("check's TOML lacks %q:\n%s", want, toml.String())
		}
	}
	if strings.Contains(toml.String(), "s3cret") {
		t.Errorf("check's TOML shows the secret:\n%s", toml.String())
	}

	// The workers get the same values, typed.
	got, err := appConfig(app, workersConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withoutSources(got), withoutSources(cfg)) {
		t.Errorf("a worker's config:\ngot  %+v\nwant %+v", got, cfg)
	}

	for _, tt := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"--kit-wait", "2m"}, nil, `--kit-wait "2m": want a duration above 0 and at most 1m`},
		{[]string{"--kit-wait", "0"}, nil, `--kit-wait "0": want a duration above 0 and at most 1m`},
		{nil, map[string]string{"SERVER_KIT_LOUD": "very"}, `SERVER_KIT_LOUD "very": want true or false`},
		{[]string{"--kit-token", "\x00"}, nil, `--kit-token (hidden): it contains a NUL byte; want a token`},
		{[]string{"--config", writeFile(t, "kit_wait = [1]\n")}, nil, "kit_wait = [1]: want a duration above 0 and at most 1m"},
	} {
		_, err := settings.load(tt.args, env(tt.vars))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("load(%q, %v): error %v, want one containing %q", tt.args, tt.vars, err, tt.want)
		}
	}

	var usage bytes.Buffer
	settings.usage(&usage)
	if !regexp.MustCompile(`--kit-wait DUR +5s +5s +how long the kit waits`).MatchString(usage.String()) {
		t.Errorf("usage lacks the kit's setting:\n%s", usage.String())
	}

	for _, tt := range []struct {
		setting module.Setting
		want    string
	}{
		{module.Setting{Name: "workers", Default: ""}, "setting workers: another setting has that name"},
		{module.Setting{Name: "kit_wait", Default: ""}, "setting kit_wait: another setting has that name"},
		{module.Setting{Name: "kit_count", Default: 3}, "setting kit_count: Default 3: want a bool, a string or a time.Duration"},
		{module.Setting{Name: "Kit-Mode", Default: ""}, `setting "Kit-Mode": want a name in lower case with underscores`},
		{module.Setting{Name: "config", Default: ""}, `setting "config": the name is the server's (--config)`},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("Register of a module with setting %+v: panic %v, want one containing %q", tt.setting, r, tt.want)
				}
			}()
			app.Register(withSettings{tt.setting})
		}()
	}
}
