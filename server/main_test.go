package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/internal/proctest"
)

// envApp makes the test binary run testApp instead of the tests.
const envApp = "REMUDA_TEST_SERVER_APP"

func TestMain(m *testing.M) {
	if os.Getenv(envApp) != "" {
		testApp()
		return
	}
	os.Exit(proctest.Run(m))
}

func testApp() {
	app := NewApp()
	app.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	app.HandleFunc("GET /stuck", func(http.ResponseWriter, *http.Request) { select {} })
	app.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("secret-detail-xyz") })
	app.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, ClientAddr(r)) })
	Main(app)
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		app    *App // nil: authApp()
		args   []string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{name: "version", args: []string{"version"}, code: ExitOK, stdout: []string{"remuda", "go1."}},
		{name: "no command", args: nil, code: ExitUsage, stderr: []string{"usage:"}},
		{name: "unknown command", args: []string{"serve"}, code: ExitUsage, stderr: []string{`unknown command "serve"`, "usage:"}},
		{name: "bad value", args: []string{"run", "--workers", "lots"}, code: ExitUsage,
			stderr: []string{"--workers", `"lots"`, "from 1 to 1024"}},
		{name: "unknown flag", args: []string{"run", "--wokers", "2"}, code: ExitUsage, stderr: []string{"--wokers", "--workers"}},
		{name: "bad env", args: []string{"check"}, code: ExitUsage, stderr: []string{"SERVER_TIMEOUT", `"soon"`, "duration"}},
		{name: "help", args: []string{"run", "-h"}, code: ExitOK, stdout: []string{"--graceful-timeout", "--max-requests",
			"lifetime of access tokens, at most 1h: one cannot be revoked before it expires"}},
		{name: "access cap", args: []string{"check", "--access-token-lifetime", "2h"}, code: ExitUsage,
			stderr: []string{`--access-token-lifetime "2h"`, "at most 1h", "cannot be revoked"}},
		{name: "body size", app: NewApp(), args: []string{"check", "--prod", "--max-body-size", "10M"}, code: ExitOK,
			stdout: []string{"max_body_size = 10485760"}},
		{name: "check", app: NewApp(), args: []string{"check", "--prod", "--workers", "3"}, code: ExitOK,
			stdout: []string{"prod = true", "workers = 3", "# flag --workers", `timeout = "30s"`}},
		{name: "without auth", app: NewApp(), args: []string{"check", "--database", "sqlite:x.db"}, code: ExitUsage,
			stderr: []string{"unknown flag --database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "bad env" {
				t.Setenv("SERVER_TIMEOUT", "soon")
			}
			var stdout, stderr bytes.Buffer
			app := tt.app
			if app == nil {
				app = authApp()
			}
			code := run(app, "server", tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("server %v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("server %v: stdout %q lacks %q", tt.args, stdout.String(), want)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("server %v: stderr %q lacks %q", tt.args, stderr.String(), want)
				}
			}
		})
	}
}

func TestMiddlewareOrder(t *testing.T) {
	app := NewApp()
	var order []string
	mw := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	app.Use(mw("outer"))
	app.Use(mw("inner"))
	app.HandleFunc("GET /x", func(w http.ResponseWriter, _ *http.Request) { order = append(order, "handler") })
	rec := httptest.NewRecorder()
	app.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if got, want := strings.Join(order, ","), "outer,inner,handler"; got != want {
		t.Errorf("call order %s, want %s", got, want)
	}
	rec = httptest.NewRecorder()
	app.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/x", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /x: %d, want 405", rec.Code)
	}
}

// startDev runs the test app's dev server on a free port.
func startDev(t *testing.T, args ...string) (*proctest.Proc, string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envApp + "=1"}, append([]string{"run", "--bind", addr}, args...)...)
	p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	return p, "http://" + addr
}

// stderr is everything p wrote to stderr so far.
func stderr(p *proctest.Proc) string {
	var b strings.Builder
	for _, l := range p.Lines() {
		b.WriteString(l.Raw + "\n")
	}
	return b.String()
}

func TestDevServer(t *testing.T) {
	d, url := startDev(t)
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("GET /healthz: %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	d.Signal(t, syscall.SIGTERM)
	if code := d.Wait(t, 5*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	out := stderr(d)
	for _, want := range []string{"development server", "Do not use it in production", "/healthz", "INFO"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("dev logs are JSON, want zap's console format:\n%s", out)
	}
}

func TestDevServerTimeout(t *testing.T) {
	d, url := startDev(t, "--timeout", "1s")
	start := time.Now()
	resp, err := http.Get(url + "/stuck")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || time.Since(start) > 2*time.Second {
		t.Errorf("GET /stuck: %d after %v, want 503 within 2s", resp.StatusCode, time.Since(start))
	}
	if resp, err := http.Get(url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("after a timeout, GET /healthz: %v %v, want 200", resp, err)
	}
	time.Sleep(100 * time.Millisecond)
	if out := stderr(d); !strings.Contains(out, "request timed out") || !strings.Contains(out, "would now be recycled") {
		t.Errorf("dev stderr lacks the timeout lines:\n%s", out)
	}
}

func TestDevPanicPage(t *testing.T) {
	_, url := startDev(t)
	req, _ := http.NewRequest("GET", url+"/panic", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(b), "secret-detail-xyz") || !strings.Contains(string(b), "main_test.go") {
		t.Errorf("dev panic: %d %q, want 500 with the message and the stack", resp.StatusCode, b)
	}
}

// TestCommandHelp asks every command of the dispatch for its usage, with
// -h and --help, on stdout with exit 0: what it does and its flags.
func TestCommandHelp(t *testing.T) {
	app := authApp()
	for _, c := range app.commands() {
		for _, arg := range []string{"-h", "--help"} {
			t.Run(c.name+" "+arg, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(app, "myapp", []string{c.name, arg}, &stdout, &stderr)
				if code != ExitOK || stderr.Len() != 0 {
					t.Fatalf("myapp %s %s: exit %d, stderr %q; want 0 and nothing", c.name, arg, code, stderr.String())
				}
				out := stdout.String()
				want := []string{"usage: myapp " + c.name, firstLine(c.about)}
				for _, f := range c.flags {
					want = append(want, "--"+f.name)
				}
				for _, key := range c.reads {
					s, _ := testSettings.lookup(key)
					want = append(want, s.flag(), s.env())
				}
				if c.settings && len(c.reads) == 0 {
					want = append(want, "--graceful-timeout", "--access-token-lifetime DUR")
				}
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("myapp %s %s: stdout lacks %q:\n%s", c.name, arg, w, out)
					}
				}
				if slices.ContainsFunc(commandNames(app), func(n string) bool { return strings.Contains(out, "server "+n) }) {
					t.Errorf("myapp %s %s: usage names the binary server:\n%s", c.name, arg, out)
				}
			})
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(app, "myapp", []string{"help", "createuser"}, &stdout, &stderr); code != ExitOK || !strings.HasPrefix(stdout.String(), "usage: myapp createuser --username NAME") {
		t.Errorf("myapp help createuser: exit %d, stdout %q; want 0 and createuser's usage", code, stdout.String())
	}
}

// authApp is an app with auth's module, and so its commands.
func authApp() *App {
	app := NewApp()
	app.Register(new(auth.Module))
	return app
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestCommandUnknownFlag gives every command a flag it does not know: exit
// 2, naming the flag, and the closest known one where there is one.
func TestCommandUnknownFlag(t *testing.T) {
	app := authApp()
	for _, c := range app.commands() {
		if c.name == "help" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(app, "myapp", []string{c.name, "--bogus"}, &stdout, &stderr)
			if code != ExitUsage || !strings.Contains(stderr.String(), "myapp "+c.name+": unknown flag --bogus") {
				t.Errorf("myapp %s --bogus: exit %d, stderr %q; want %d naming the flag", c.name, code, stderr.String(), ExitUsage)
			}
			if !strings.Contains(stderr.String(), `"myapp `+c.name+` --help"`) {
				t.Errorf("myapp %s --bogus: stderr %q does not point to --help", c.name, stderr.String())
			}
		})
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"createuser", "--usename", "bob"}, "unknown flag --usename (did you mean --username?)"},
		{[]string{"changepassword", "--password-stdn"}, "(did you mean --password-stdin?)"},
		{[]string{"importusers", "--from-djano", "x.json"}, "(did you mean --from-django?)"},
		{[]string{"migrate", "--databse", "sqlite:x"}, "(did you mean --database?)"},
		{[]string{"run", "--wokers", "2"}, "(did you mean --workers?)"},
		{[]string{"version", "--bogus"}, "this command takes no flags"},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"createuser", "--username"}, "--username needs a value, as in --username NAME"},
		{[]string{"createuser", "--database", "sqlite:x"}, "--username is required"},
		{[]string{"importusers"}, "--from-django FILE is required"},
		{[]string{"rn"}, `unknown command "rn" (did you mean run?)`},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(authApp(), "myapp", tt.args, &stdout, &stderr); code != ExitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("myapp %q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), ExitUsage, tt.want)
		}
	}
}

// TestKeyErrorsOfRun starts the prod server with keys it must refuse: run
// exits 2 with one line saying what check says (the setting, where it came
// from, what is allowed, what to do), never the key.
func TestKeyErrorsOfRun(t *testing.T) {
	app := NewApp()
	app.Register(new(auth.Module))
	db := "sqlite:" + filepath.Join(t.TempDir(), "server.db")
	for _, tt := range []struct {
		name, key string
		id        string
		want      []string
	}{
		{"missing", "", "E001", []string{"secret_key is not set", "SERVER_SECRET_KEY", "at least 32 bytes", "openssl rand"}},
		{"short", "abcd3", "E002", []string{"secret_key (env SERVER_SECRET_KEY) is refused", "5 bytes, want at least 32", "openssl rand"}},
		{"placeholder", "django-insecure-0123456789abcdefghijklmnopqrstuvwxyz", "E002", []string{"(env SERVER_SECRET_KEY)", "django-insecure"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SERVER_SECRET_KEY", tt.key)
			var stdout, stderr bytes.Buffer
			code := run(app, "myapp", []string{"run", "--prod", "--bind", "127.0.0.1:0", "--database", db}, &stdout, &stderr)
			out := stderr.String()
			if code != ExitUsage {
				t.Fatalf("run with key %q: exit %d, want %d\n%s", tt.name, code, ExitUsage, out)
			}
			if lines := strings.Count(out, "\n"); lines != 1 || !strings.HasPrefix(out, "myapp run: ") {
				t.Errorf("run with key %q: stderr %q, want one line starting %q", tt.name, out, "myapp run: ")
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("run with key %q: %q lacks %q", tt.name, out, w)
				}
			}
			if strings.Contains(out, "( (") || tt.key != "" && strings.Contains(out, tt.key) {
				t.Errorf("run with key %q: %q is garbled or shows the key", tt.name, out)
			}
			// check says the same thing, as a finding.
			stdout.Reset()
			stderr.Reset()
			run(app, "myapp", []string{"check", "--prod", "--workers", "2", "--database", db}, &stdout, &stderr)
			finding := "error " + tt.id + ": " + strings.TrimSpace(strings.TrimPrefix(out, "myapp run: "))
			if !strings.Contains(stderr.String(), finding) {
				t.Errorf("check with key %q: stderr %q, want %q", tt.name, stderr.String(), finding)
			}
		})
	}
}

// TestPostgresWithoutDriver gives a PostgreSQL database to an app whose
// auth module has no PostgreSQL driver (a binary that does not link pgx):
// run refuses to start, check reports it as an error, and the commands
// that open the store fail, each saying where the setting came from and
// how to register the driver, never the URL (it holds a password).
func TestPostgresWithoutDriver(t *testing.T) {
	t.Setenv("SERVER_SECRET_KEY", goodKey)
	t.Setenv("SERVER_DATABASE", "postgres://remuda:s3cret@127.0.0.1:1/app")
	want := "database (env SERVER_DATABASE) is a PostgreSQL URL, and this binary's auth module has no PostgreSQL driver; register it as users := &auth.Module{Postgres: postgres.Driver{}}"
	for _, tt := range []struct {
		args []string
		code int
		line string
	}{
		{[]string{"run", "--prod", "--bind", "127.0.0.1:0"}, ExitUsage, "myapp run: " + want},
		{[]string{"check", "--prod", "--workers", "2"}, ExitError, "error E006: " + want},
		{[]string{"migrate"}, ExitError, "myapp migrate: " + want},
		{[]string{"flushexpiredtokens"}, ExitError, "myapp flushexpiredtokens: " + want},
	} {
		var stdout, stderr bytes.Buffer
		code := run(authApp(), "myapp", tt.args, &stdout, &stderr)
		if out := stderr.String(); code != tt.code || !strings.Contains(out, tt.line) || strings.Contains(out, "s3cret") {
			t.Errorf("myapp %q without a PostgreSQL driver: exit %d, stderr %q; want %d and %q, without the URL's password", tt.args, code, out, tt.code, tt.line)
		}
	}
}

// TestUnknownEnvWarned sets a misspelled SERVER_* variable: every command
// that reads the settings warns on stderr, naming the closest variable,
// and goes on; check lists it as W018.
func TestUnknownEnvWarned(t *testing.T) {
	t.Setenv("SERVER_WOKERS", "3")
	db := "sqlite:" + filepath.Join(t.TempDir(), "server.db")
	want := "environment variable SERVER_WOKERS is not a setting and is ignored; did you mean SERVER_WORKERS?"
	for _, tt := range []struct {
		args []string
		line string
	}{
		{[]string{"migrate", "--database", db}, "myapp migrate: warning: " + want},
		{[]string{"check", "--database", db}, "warning W018: " + want},
		{[]string{"flushexpiredtokens", "--database", db}, "myapp flushexpiredtokens: warning: " + want},
		// A bad config still gets the warning, which may explain it.
		{[]string{"check", "--workers", "0"}, "myapp check: warning: " + want},
	} {
		wantCode := ExitOK
		if slices.Contains(tt.args, "0") {
			wantCode = ExitUsage
		}
		var stdout, stderr bytes.Buffer
		if code := run(authApp(), "myapp", tt.args, &stdout, &stderr); code != wantCode || !strings.Contains(stderr.String(), tt.line+"\n") {
			t.Errorf("myapp %q with SERVER_WOKERS set: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), wantCode, tt.line)
		}
	}
}

// TestProcessCommandLine runs the binary under another name: usage and
// errors name it, flag errors exit 2, and a dev server that cannot bind
// says so in one line, without a stack trace, and exits 1 as prod does.
func TestProcessCommandLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "myapp")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string // its start
		stderr string // its whole last line
	}{
		{[]string{"check", "--help"}, ExitOK, "usage: myapp check [--prod] [flags]", ""},
		{[]string{"version", "--bogus"}, ExitUsage, "", `Run "myapp version --help" for usage.`},
		{[]string{"run", "--bind", busy}, ExitError, "", "myapp run: listen on " + busy + ": listen tcp " + busy + ": bind: address already in use"},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append(append(os.Environ(), proctest.Env()...), envApp+"=1", "SERVER_RELOAD=0")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		switch {
		case code != tt.code:
			t.Errorf("myapp %q: exit %d, want %d\n%s", tt.args, code, tt.code, stderr.String())
		case !strings.HasPrefix(stdout.String(), tt.stdout):
			t.Errorf("myapp %q: stdout %q, want it to start with %q", tt.args, stdout.String(), tt.stdout)
		case tt.stderr != "" && last != tt.stderr:
			t.Errorf("myapp %q: last line of stderr %q, want %q\n%s", tt.args, last, tt.stderr, stderr.String())
		case strings.Contains(stderr.String(), "goroutine") || strings.Contains(stderr.String(), "main.go:"):
			t.Errorf("myapp %q: stderr holds a stack trace:\n%s", tt.args, stderr.String())
		}
	}
}
