package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remuda/remuda/internal/proctest"
)

func TestDevOneProcess(t *testing.T) {
	d, url := startDev(t)
	if code, body, err := proctest.Get(url+"/healthz", 5*time.Second); err != nil || code != 200 {
		t.Fatalf("GET /healthz: %d %q %v, want 200", code, body, err)
	}
	if kids := proctest.Children(d.Pid()); len(kids) != 0 {
		t.Errorf("dev server %d has children %v, want none", d.Pid(), kids)
	}
	out := stderr(d)
	for _, want := range []string{"development", "production"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev banner lacks %q:\n%s", want, out)
		}
	}
	// The test binary cannot be rebuilt: reload says so, once.
	if n := strings.Count(out, "reload on code change unavailable"); n != 1 {
		t.Errorf("%d lines say reload is unavailable, want 1:\n%s", n, out)
	}
}

func TestDebugPage(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	h := debugPage(zap.New(core))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/late":
			io.WriteString(w, "partial")
			panic("late-boom")
		case "/ok":
			io.WriteString(w, "fine")
		default:
			w.Header().Set("Content-Length", "3")
			panic(r.URL.Query().Get("v"))
		}
	}))
	const secret = "Bearer s3cr3t-token-value"
	get := func(path, accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", secret)
		r.Header.Set("Cookie", "session=c00kie-value")
		r.Header.Set("X-Trace", "trace-123")
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	stackLine := regexp.MustCompile(`(?m)^\s+/.*\.go:\d+`)

	tests := []struct {
		name, path, accept string
		ctype              string
		want, notWant      []string
	}{
		{name: "text", path: "/p?v=boom-xyz", ctype: "text/plain",
			want:    []string{"boom-xyz", "GET /p?v=boom-xyz", "X-Trace: trace-123", "dev_test.go:", "goroutine "},
			notWant: []string{"s3cr3t", "c00kie"}},
		{name: "html", path: "/p?v=boom-xyz", accept: "text/html,application/xhtml+xml,*/*;q=0.8", ctype: "text/html",
			want:    []string{"<!DOCTYPE html>", "boom-xyz", "trace-123", "goroutine "},
			notWant: []string{"s3cr3t", "c00kie"}},
		{name: "html escaped", path: "/p?v=%3Cscript%3Ealert(1)%3C/script%3E", accept: "text/html", ctype: "text/html",
			want:    []string{"&lt;script&gt;alert(1)&lt;/script&gt;"},
			notWant: []string{"<script>"}},
		{name: "text not escaped", path: "/p?v=%3Cscript%3E", accept: "application/json", ctype: "text/plain",
			want: []string{"panic: <script>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(tt.path, tt.accept)
			body := w.Body.String()
			if w.Code != 500 {
				t.Errorf("GET %s: %d, want 500", tt.path, w.Code)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("GET %s Accept %q: Content-Type %q, want %s", tt.path, tt.accept, ct, tt.ctype)
			}
			if cl := w.Header().Get("Content-Length"); cl != "" {
				t.Errorf("GET %s: the handler's Content-Length %q was kept", tt.path, cl)
			}
			if !stackLine.MatchString(body) {
				t.Errorf("GET %s: no stack frame line in:\n%s", tt.path, body)
			}
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s Accept %q: body lacks %q:\n%s", tt.path, tt.accept, s, body)
				}
			}
			for _, s := range tt.notWant {
				if strings.Contains(body, s) {
					t.Errorf("GET %s Accept %q: body shows %q:\n%s", tt.path, tt.accept, s, body)
				}
			}
		})
	}
	t.Run("logged with stack", func(t *testing.T) {
		logs.TakeAll()
		get("/p?v=boom-log", "")
		entries := logs.FilterMessage("handler panicked").All()
		if len(entries) != 1 {
			t.Fatalf("%d log lines, want 1", len(entries))
		}
		if e := entries[0]; e.ContextMap()["panic"] != "boom-log" || !strings.Contains(e.Stack, "dev_test.go:") || strings.Contains(e.Stack, "debug.Stack") {
			t.Errorf("log line %v with stack %q, want panic boom-log and the handler's frame", e.ContextMap(), e.Stack)
		}
	})
	t.Run("no panic", func(t *testing.T) {
		if w := get("/ok", ""); w.Code != 200 || w.Body.String() != "fine" {
			t.Errorf("GET /ok: %d %q, want 200 fine", w.Code, w.Body.String())
		}
	})
	for _, path := range []string{"/abort", "/late"} {
		t.Run(path, func(t *testing.T) {
			defer func() {
				if p := recover(); p != http.ErrAbortHandler {
					t.Errorf("GET %s: panic %v, want http.ErrAbortHandler", path, p)
				}
			}()
			get(path, "")
		})
	}
}

// writeDevApp writes the main.go of the reload test's app.
func writeDevApp(t *testing.T, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func devAppSource(answer string) string {
	return fmt.Sprintf(`package main

import (
	"io"
	"net/http"

	"github.com/remuda/remuda/server"
)

func main() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, %q) })
	server.Main(app)
}
`, answer)
}

// TestDevReload builds a real app module, runs it in dev, edits it under
// load, and checks the new code is served by the same process without a
// failed request; then breaks it and checks the old code keeps serving.
func TestDevReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go code")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	repoMod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	// The app requires what Remuda requires (the module cache has it all:
	// no network), and Remuda itself from this tree.
	_, requires, _ := strings.Cut(string(repoMod), "\nrequire")
	mod := t.TempDir()
	gomod := fmt.Sprintf("module example.com/devapp\n\ngo 1.26.0\n\nrequire github.com/remuda/remuda v0.0.0\n\nrequire%s\nreplace github.com/remuda/remuda => %s\n", requires, repo)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	writeDevApp(t, mod, devAppSource("v1"))
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	t.Setenv("GOPROXY", "off")
	bin := filepath.Join(t.TempDir(), "devapp")
	build := exec.Command(goCmd, "build", "-o", bin, ".")
	build.Dir = mod
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("unavailable outside the source tree", func(t *testing.T) {
		elsewhere := t.TempDir()
		t.Chdir(elsewhere)
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, bin, nil, "run", "--bind", addr)
		p.WaitFor(t, 10*time.Second, 1, "unavailable", func(l proctest.Line) bool {
			return strings.Contains(l.Raw, "reload on code change unavailable") && strings.Contains(l.Raw, "no go.mod")
		})
		p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
		if code, body, err := proctest.Get("http://"+addr+"/", 5*time.Second); err != nil || body != "v1" {
			t.Errorf("GET /: %d %q %v, want v1", code, body, err)
		}
	})

	t.Chdir(mod)
	addr := proctest.FreeAddr(t)
	url := "http://" + addr + "/"
	p := proctest.Start(t, bin, nil, "run", "--bind", addr)
	p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	if _, body, err := proctest.Get(url, 5*time.Second); body != "v1" {
		t.Fatalf("GET /: %q %v, want v1", body, err)
	}

	// Fresh connections, one after the other, from 4 clients.
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		lastBody   string
		errs       []string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := proctest.Get(url, 10*time.Second)
				mu.Lock()
				if err != nil || code != 200 {
					failed.Add(1)
					if len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("%d %v", code, err))
					}
				} else {
					ok.Add(1)
					lastBody = body
				}
				mu.Unlock()
			}
		})
	}
	// And keep-alive connections, as a browser or a proxy holds them.
	ctx, cancel := context.WithCancel(context.Background())
	keepAlive := proctest.StartLoad(ctx, url, 4)
	var kaFailed int64
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		cancel()
		wg.Wait()
		t.Logf("fresh connections: %d ok, %d failed %v", ok.Load(), failed.Load(), errs)
		_, kaFailed = keepAlive.Stop(t)
	})
	t.Cleanup(stopLoad)
	served := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		return lastBody == want
	}

	time.Sleep(500 * time.Millisecond) // past the first poll, with load running
	edit := time.Now()
	writeDevApp(t, mod, devAppSource("v2"))
	if !proctest.WaitUntil(20*time.Second, func() bool { return served("v2") }) {
		t.Fatalf("v2 not served within 20s of the edit")
	}
	t.Logf("edit to v2 served: %v", time.Since(edit))
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	if failed.Load() != 0 || kaFailed != 0 {
		t.Errorf("%d requests on fresh connections and %d on keep-alive ones failed during the reload, want 0: %v", failed.Load(), kaFailed, errs)
	}
	if ok.Load() == 0 {
		t.Errorf("no request succeeded")
	}
	reloaded := p.WaitFor(t, 5*time.Second, 1, "reloaded", func(l proctest.Line) bool { return strings.Contains(l.Raw, "reloaded: listening") })
	if want := fmt.Sprintf(`"pid": %d`, p.Pid()); !strings.Contains(reloaded[0].Raw, want) {
		t.Errorf("reloaded line %q lacks %s: want the same process", reloaded[0].Raw, want)
	}
	if !proctest.Alive(p.Pid()) {
		t.Errorf("dev server %d died", p.Pid())
	}
	if kids := proctest.Children(p.Pid()); len(kids) != 0 {
		t.Errorf("after the reload, dev server %d has children %v, want none", p.Pid(), kids)
	}
	if n := strings.Count(stderr(p), "do not use it in production"); n > 1 {
		t.Errorf("banner printed %d times, want once", n)
	}

	// A syntax error: the compiler speaks, and v2 goes on.
	writeDevApp(t, mod, devAppSource("v3")+"\nfunc broken( {\n")
	p.WaitFor(t, 20*time.Second, 1, "build failed", func(l proctest.Line) bool { return strings.Contains(l.Raw, "build failed") })
	p.WaitFor(t, 5*time.Second, 1, "compiler message", func(l proctest.Line) bool {
		return strings.Contains(l.Raw, "main.go:") && strings.Contains(l.Raw, "syntax error")
	})
	if code, body, err := proctest.Get(url, 5*time.Second); err != nil || body != "v2" {
		t.Errorf("after a broken edit, GET /: %d %q %v, want v2", code, body, err)
	}

	// Fixed again: v4 is served.
	writeDevApp(t, mod, devAppSource("v4"))
	if !proctest.WaitUntil(20*time.Second, func() bool {
		_, body, _ := proctest.Get(url, 5*time.Second)
		return body == "v4"
	}) {
		t.Errorf("v4 not served within 20s of the fix")
	}
	p.Signal(t, 15)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestDevReloadOff(t *testing.T) {
	t.Setenv(envReload, "0")
	d, _ := startDev(t)
	if out := stderr(d); !strings.Contains(out, "reload on code change is off") {
		t.Errorf("with %s=0, stderr lacks the reload-off line:\n%s", envReload, out)
	}
}

func TestFindModule(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "cmd", "app")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("// x\nmodule \"example.com/m\"\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, module, want, errHas string
	}{
		{name: "root", dir: root, module: "example.com/m", want: root},
		{name: "below", dir: sub, module: "example.com/m", want: root},
		{name: "other module", dir: sub, module: "example.com/other", errHas: `not the binary's "example.com/other"`},
		{name: "none", dir: "/", module: "example.com/m", errHas: "no go.mod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findModule(tt.dir, tt.module)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("findModule(%s, %s): %q, %v; want an error with %q", tt.dir, tt.module, got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("findModule(%s, %s): %q, %v; want %q", tt.dir, tt.module, got, err, tt.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	root := t.TempDir()
	r := &reloader{root: root}
	write := func(name, body string) {
		t.Helper()
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n")
	write("main.go", "package main\n")
	tests := []struct {
		file    string
		changes bool
	}{
		{"main.go", true},
		{"internal/x/x.go", true},
		{"go.mod", true},
		{"go.sum", true},
		{"main_test.go", false},
		{"testdata/x.go", false},
		{".git/x.go", false},
		{"README.md", false},
		{"nested/go.mod", false},
		{"nested/y.go", false},
	}
	for _, tt := range tests {
		before := r.fingerprint()
		write(tt.file, "package x // "+tt.file+"\n")
		if changed := r.fingerprint() != before; changed != tt.changes {
			t.Errorf("writing %s: fingerprint changed %v, want %v", tt.file, changed, tt.changes)
		}
	}
}
