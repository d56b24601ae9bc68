package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

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
		{name: "help", args: []string{"run", "-h"}, code: ExitOK, stdout: []string{"--graceful-timeout", "--max-requests"}},
		{name: "check", args: []string{"check", "--prod", "--workers", "3"}, code: ExitOK,
			stdout: []string{"prod = true", "workers = 3", "# flag --workers", `timeout = "30s"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "bad env" {
				t.Setenv("SERVER_TIMEOUT", "soon")
			}
			var stdout, stderr bytes.Buffer
			code := run(NewApp(), "server", tt.args, &stdout, &stderr)
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
