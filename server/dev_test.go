package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remuda/remuda/internal/loadgen"
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
	// The banner names the binary as it was run.
	for _, want := range []string{"development", "production", `"` + filepath.Base(os.Args[0]) + ` run --prod"`} {
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

// devAppSource is an app whose handler answers "<answer> pid <PID>": an
// answer tells which code served it, and in which process.
func devAppSource(answer string) string {
	return fmt.Sprintf(`package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/remuda/remuda/server"
)

func main() {
	app := server.NewApp()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "%%s pid %%d", %q, os.Getpid()) })
	server.Main(app)
}
`, answer)
}

// TestDevReload builds a real app module, runs it in dev, and edits its
// handler 6 times, one edit a compile error, under a load of clients that
// never retry, on keep-alive and on fresh connections. Every good edit is
// served within seconds by the same process, the bad one leaves the
// previous code serving with the compiler's message in the log, no request
// fails, and every answer comes from the code before or after the edit
// being made.
func TestDevReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go code")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	began := time.Now()
	mod, bin := buildDevApp(t, goCmd, "devapp", devAppSource("v1"))
	t.Logf("first build: %v", time.Since(began))

	t.Run("unavailable outside the source tree", func(t *testing.T) {
		elsewhere := t.TempDir()
		t.Chdir(elsewhere)
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, bin, nil, "run", "--bind", addr, "--access-log", "")
		p.WaitFor(t, 10*time.Second, 1, "unavailable", func(l proctest.Line) bool {
			return strings.Contains(l.Raw, "reload on code change unavailable") && strings.Contains(l.Raw, "no go.mod")
		})
		p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
		if code, body, err := proctest.Get("http://"+addr+"/", 5*time.Second); err != nil || !strings.HasPrefix(body, "v1 ") {
			t.Errorf("GET /: %d %q %v, want v1", code, body, err)
		}
	})

	t.Chdir(mod)
	// The dev server's TMPDIR: its build directory is made there.
	tmp := t.TempDir()
	addr := proctest.FreeAddr(t)
	// No access log: the load's hundred thousand lines would only cost CPU.
	p := proctest.Start(t, bin, []string{"TMPDIR=" + tmp}, "run", "--bind", addr, "--access-log", "")
	p.WaitFor(t, 10*time.Second, 1, "listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	pid := p.Pid()
	answer := func(v string) string { return fmt.Sprintf("%s pid %d", v, pid) }

	// The edits, in order; serves is the code that answers once the edit is
	// taken: a broken edit leaves the previous one.
	edits := []struct {
		name, src, serves string
	}{
		{name: "v2", src: devAppSource("v2"), serves: "v2"},
		{name: "v3", src: devAppSource("v3"), serves: "v3"},
		{name: "broken", src: devAppSource("v4") + "\nfunc broken( {\n", serves: "v3"},
		{name: "v4 (the fix)", src: devAppSource("v4"), serves: "v4"},
		{name: "v5", src: devAppSource("v5"), serves: "v5"},
		{name: "v6", src: devAppSource("v6"), serves: "v6"},
	}
	// Phase i runs from edit i (0: the start) to the next: a request begun
	// in it is answered by the code before the edit or after it.
	allowed := [][]string{{answer("v1")}}
	for i, e := range edits {
		prev := allowed[i][len(allowed[i])-1]
		allowed = append(allowed, []string{prev, answer(e.serves)})
	}

	// The swaps compete for the 2 cores with 2 busy loops, from the first
	// edit to the last (the app's first build above, which may compile
	// Remuda and its dependencies, runs without: the rebuilds that follow
	// only compile main.go and link).
	proctest.BusyLoops(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := startDevLoad(ctx, addr, allowed, 4, 4)
	stopLoad := sync.OnceValue(func() map[string]devCount {
		cancel()
		return load.wait()
	})
	t.Cleanup(func() { stopLoad() })
	if !proctest.WaitUntil(10*time.Second, func() bool { return load.answered(answer("v1")) }) {
		t.Fatalf("v1 not answered by the load within 10s")
	}

	took := make([]time.Duration, len(edits))
	for i, e := range edits {
		// Every kind of client has had an answer in the phase that ends
		// here (on a busy machine one kind may start late): each phase is
		// then checked for both.
		if !proctest.WaitUntil(10*time.Second, func() bool { return load.everyKindAnswered(i) }) {
			t.Fatalf("phase %d: not every kind of client answered within 10s", i)
		}
		phase := i + 1
		load.phase.Store(int64(phase))
		edit := time.Now()
		writeDevApp(t, mod, e.src)
		if e.name == "broken" {
			// The compiler speaks, and the previous code goes on serving:
			// the load sees more answers, each checked against it.
			p.WaitFor(t, 30*time.Second, 1, "build failed", func(l proctest.Line) bool { return strings.Contains(l.Raw, "build failed") })
			p.WaitFor(t, 5*time.Second, 1, "the compiler's message", func(l proctest.Line) bool {
				return strings.Contains(l.Raw, "main.go:") && strings.Contains(l.Raw, "syntax error")
			})
			took[i] = time.Since(edit)
			n := load.answers(phase)
			if !proctest.WaitUntil(10*time.Second, func() bool { return load.answers(phase) >= n+100 }) {
				t.Fatalf("after the broken edit, fewer than 100 answers in 10s")
			}
			continue
		}
		want := answer(e.serves)
		// (Not proctest.Alive to give up early: during the exec, the PID
		// may look like a zombie's for an instant.)
		stopped := func(l proctest.Line) bool { return strings.Contains(l.Raw, "server stopped") }
		proctest.WaitUntil(30*time.Second, func() bool { return load.answered(want) || len(p.Find(stopped)) > 0 })
		if !load.answered(want) {
			t.Fatalf("edit %s: %q not served within 30s; the server says %q", e.name, want, p.Find(stopped))
		}
		took[i] = load.firstSeen(want).Sub(edit)
	}
	// A last moment of load on the last code, then the figures.
	n := load.answers(len(edits))
	proctest.WaitUntil(5*time.Second, func() bool {
		return load.answers(len(edits)) >= n+100 && load.everyKindAnswered(len(edits))
	})
	counts := stopLoad()
	for i, e := range edits {
		what := "served"
		if e.name == "broken" {
			what = "build failed, compiler's message logged"
		}
		t.Logf("edit %d, %s: %s after %v", i+1, e.name, what, took[i].Round(time.Millisecond))
	}
	for _, kind := range []string{"keep-alive", "fresh"} {
		c := counts[kind]
		t.Logf("%s connections: %d ok (%d over a reused connection), %d failed, %d wrong answers; ok by phase %v", kind, c.ok, c.reused, c.failed, c.wrong, c.okByPhase)
		if c.failed != 0 || c.wrong != 0 {
			t.Errorf("%s connections: %d requests failed and %d got a wrong answer, want 0: %q", kind, c.failed, c.wrong, c.errs)
		}
		for phase, ok := range c.okByPhase {
			if ok == 0 {
				t.Errorf("%s connections: no answer in phase %d", kind, phase)
			}
		}
	}
	if c := counts["fresh"]; c.reused != 0 {
		t.Errorf("%d requests of the fresh-connection clients went over a reused connection, want 0", c.reused)
	}
	if c := counts["keep-alive"]; c.reused == 0 {
		t.Errorf("no request of the keep-alive clients reused a connection")
	}

	// One process all along: every reload in it, and nothing else.
	reloaded := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, "reloaded: listening") })
	if len(reloaded) != len(edits)-1 {
		t.Errorf("%d reloads, want %d", len(reloaded), len(edits)-1)
	}
	for _, l := range reloaded {
		if want := fmt.Sprintf(`"pid": %d`, pid); !strings.Contains(l.Raw, want) {
			t.Errorf("reloaded line %q lacks %s: want the same process", l.Raw, want)
		}
	}
	if errs := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, "ERROR") }); len(errs) != 0 {
		t.Errorf("error lines in the log: %q", errs)
	}
	if !proctest.Alive(pid) {
		t.Fatalf("dev server %d died", pid)
	}
	if kids := proctest.Children(pid); len(kids) != 0 {
		t.Errorf("dev server %d has children %v, want none", pid, kids)
	}
	if n := strings.Count(stderr(p), "do not use it in production"); n > 1 {
		t.Errorf("banner printed %d times, want once", n)
	}
	// The build directory holds the running binary and nothing else: each
	// reload removed its predecessor, each failed build its file.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	buildDirs, _ := filepath.Glob(filepath.Join(tmp, "remuda-dev-*"))
	if len(buildDirs) != 1 || filepath.Dir(exe) != buildDirs[0] {
		t.Errorf("build directories %q, running binary %s: want one, holding it", buildDirs, exe)
	} else if ents, _ := os.ReadDir(buildDirs[0]); len(ents) != 1 {
		t.Errorf("build directory holds %d files, want only the running binary %s", len(ents), filepath.Base(exe))
	}

	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "remuda-dev-*")); len(left) != 0 {
		t.Errorf("build directory %q left after the stop", left)
	}
	t.Logf("test duration %v", time.Since(began).Round(time.Millisecond))
}

// devLoad polls the dev server with clients that never retry
// (loadgen.Client: net/http's Client would resend a request that failed on
// a reused connection, and hide the very failures looked for), some on
// keep-alive connections, some on a fresh connection per request. Every
// answer is checked against the answers allowed in the phase its request
// began in.
type devLoad struct {
	phase   atomic.Int64 // set by the test before each edit
	allowed [][]string   // by phase
	wg      sync.WaitGroup

	mu     sync.Mutex
	counts map[string]devCount
	seen   map[string]time.Time // when each answer first came
}

// devCount is what one kind of client got.
type devCount struct {
	ok, failed, wrong int64
	reused            int64   // ok over a connection that had carried an answer
	okByPhase         []int64 // ok, by the phase the request began in
	errs              []string
}

func startDevLoad(ctx context.Context, addr string, allowed [][]string, keepAlive, fresh int) *devLoad {
	l := &devLoad{allowed: allowed, counts: map[string]devCount{}, seen: map[string]time.Time{}}
	start := time.Now()
	client := func(kind string, closeEach bool) {
		c := &loadgen.Client{Dial: func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }}
		defer c.Close()
		for ctx.Err() == nil {
			phase := l.phase.Load()
			req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
			if err != nil {
				panic(err)
			}
			req.Close = closeEach // the server closes after the answer
			resp, err := c.Do(req)
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("status %d: %.200s", resp.Status, resp.Body)
			}
			l.record(kind, phase, time.Since(start), resp, err)
		}
	}
	for range keepAlive {
		l.wg.Go(func() { client("keep-alive", false) })
	}
	for range fresh {
		l.wg.Go(func() { client("fresh", true) })
	}
	return l
}

func (l *devLoad) record(kind string, phase int64, at time.Duration, resp *loadgen.Response, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts[kind]
	if c.okByPhase == nil {
		c.okByPhase = make([]int64, len(l.allowed))
	}
	note := func(s string) {
		if len(c.errs) < 10 {
			c.errs = append(c.errs, fmt.Sprintf("%.3fs phase %d: %s", at.Seconds(), phase, s))
		}
	}
	var body string
	if err == nil {
		body = string(resp.Body)
	}
	switch {
	case err != nil:
		c.failed++
		note(err.Error())
	case !slices.Contains(l.allowed[phase], body):
		c.wrong++
		note(fmt.Sprintf("answer %q, want one of %q", body, l.allowed[phase]))
	default:
		c.ok++
		c.okByPhase[phase]++
		if resp.Reused {
			c.reused++
		}
		if _, ok := l.seen[body]; !ok {
			l.seen[body] = time.Now()
		}
	}
	l.counts[kind] = c
}

// answered reports whether the answer has come.
func (l *devLoad) answered(answer string) bool {
	return !l.firstSeen(answer).IsZero()
}

// firstSeen is when the answer first came, or zero.
func (l *devLoad) firstSeen(answer string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[answer]
}

// everyKindAnswered reports whether each kind of client has had a good
// answer to a request begun in the phase.
func (l *devLoad) everyKindAnswered(phase int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, kind := range []string{"keep-alive", "fresh"} {
		if c := l.counts[kind]; c.okByPhase == nil || c.okByPhase[phase] == 0 {
			return false
		}
	}
	return true
}

// answers is the number of good answers to requests begun in the phase.
func (l *devLoad) answers(phase int) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, c := range l.counts {
		if c.okByPhase != nil {
			n += c.okByPhase[phase]
		}
	}
	return n
}

// wait waits for the clients to end (ctx must be done) and returns the
// counts by kind: "keep-alive" and "fresh".
func (l *devLoad) wait() map[string]devCount {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
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

// buildDevApp writes an app module named name with main.go source into a
// temporary directory, requiring what Remuda requires (the module cache
// has it all: no network) and Remuda itself from this tree, and builds
// it. It returns the module's directory and the binary. The dev server's
// rebuilds inherit the GOFLAGS it sets: without DWARF (-w) a link takes
// half the time.
func buildDevApp(t *testing.T, goCmd, name, source string) (mod, bin string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	repoMod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	_, requires, _ := strings.Cut(string(repoMod), "\nrequire")
	mod = t.TempDir()
	gomod := fmt.Sprintf("module example.com/%s\n\ngo 1.26.0\n\nrequire github.com/remuda/remuda v0.0.0\n\nrequire%s\nreplace github.com/remuda/remuda => %s\n", name, requires, repo)
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
	writeDevApp(t, mod, source)
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod -ldflags=-w"))
	t.Setenv("GOPROXY", "off")
	bin = filepath.Join(t.TempDir(), name)
	build := exec.Command(goCmd, "build", "-o", bin, ".")
	build.Dir = mod
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return mod, bin
}

// TestDevServesAsProd runs the dev server with the settings it ignored
// before it booted as a prod worker does (bootApp): it refuses a body over
// --max-body-size (413) and a request line over --limit-request-line
// (414), adds the security headers, holds no more than
// --worker-connections connections, and serves HTTPS with --certfile and
// --keyfile. (Its panics still get the debug page: TestDevPanicPage.)
func TestDevServesAsProd(t *testing.T) {
	t.Run("limits", func(t *testing.T) {
		d, url := startDev(t, "--max-body-size", "1K", "--limit-request-line", "100", "--worker-connections", "1")
		addr := strings.TrimPrefix(url, "http://")
		// (Over 256 KiB: net/http answers without waiting for the body.)
		if got := rawRequest(t, addr, []byte("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")); !strings.HasPrefix(got, "HTTP/1.1 413") {
			t.Errorf("a 1 MiB body over --max-body-size 1K: %q, want 413", got)
		}
		line := "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\nHost: x\r\n\r\n"
		if got := rawRequest(t, addr, []byte(line)); !strings.HasPrefix(got, "HTTP/1.1 414") {
			t.Errorf("a request line over --limit-request-line 100: %q, want 414", got)
		}
		// No idle connection left behind to hold the one slot.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options %q, want nosniff", got)
		}

		// One connection held open (idle, keep-alive) takes the only
		// slot: a second one waits in the accept queue until it closes.
		held, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		if got := rawExchange(t, held, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Fatalf("the held connection: %q, want 200", got)
		}
		waiting, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer waiting.Close()
		answered := make(chan string, 1)
		go func() { answered <- rawExchange(t, waiting, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") }()
		select {
		case got := <-answered:
			t.Fatalf("a second connection over --worker-connections 1 was answered %q while the first was open", got)
		case <-time.After(500 * time.Millisecond):
		}
		held.Close()
		if got := <-answered; !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("the waiting connection, once the held one closed: %q, want 200", got)
		}
		if out := stderr(d); strings.Contains(out, "ERROR") {
			t.Errorf("error lines in the log:\n%s", out)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		certFile, keyFile, pool := proctest.SelfSigned(t)
		_, url := startDev(t, "--certfile", certFile, "--keyfile", keyFile)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
		https := "https://" + strings.TrimPrefix(url, "http://")
		resp, err := c.Get(https + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("GET over TLS: %d %s HSTS %q, want 200 over HTTP/2 with HSTS", resp.StatusCode, resp.Proto, resp.Header.Get("Strict-Transport-Security"))
		}
	})
}

// rawExchange writes req on c and returns the status line of the answer
// ("" if none came within 5 s).
func rawExchange(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		return ""
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [64]byte
	n, _ := c.Read(b[:])
	line, _, _ := strings.Cut(string(b[:n]), "\r\n")
	return line
}

// TestDevSignals: the dev server, one worker with no master
// (workers.Solo), reopens its log files on USR1, as a prod worker does,
// and takes a second signal during its drain as a stop at once.
func TestDevSignals(t *testing.T) {
	t.Run("USR1 reopens the logs", func(t *testing.T) {
		dir := t.TempDir()
		errLog, accessLog := filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log")
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, os.Args[0], []string{envApp + "=1", envReload + "=0"}, "run", "--bind", addr,
			"--error-log", errLog, "--access-log", accessLog)
		has := func(path, s string) bool {
			b, _ := os.ReadFile(path)
			return strings.Contains(string(b), s)
		}
		if !proctest.WaitUntil(10*time.Second, func() bool { return has(errLog, "listening") }) {
			t.Fatalf("no listening line in %s", errLog)
		}
		for _, path := range []string{errLog, accessLog} {
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
		}
		p.Signal(t, syscall.SIGUSR1)
		if !proctest.WaitUntil(5*time.Second, func() bool { return has(errLog, "logs reopened") }) {
			t.Fatalf("no %q line in the new %s", "logs reopened", errLog)
		}
		if code, _, err := proctest.Get("http://"+addr+"/healthz", 5*time.Second); code != 200 {
			t.Fatalf("GET /healthz after USR1: %d %v", code, err)
		}
		// The access log is flushed every second.
		if !proctest.WaitUntil(5*time.Second, func() bool { return has(accessLog, "/healthz") }) {
			t.Errorf("no request line in the new %s", accessLog)
		}
		p.Signal(t, syscall.SIGTERM)
		if code := p.Wait(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("second signal ends the drain", func(t *testing.T) {
		const graceful = 30 * time.Second
		d, url := startDev(t, "--graceful-timeout", graceful.String(), "--timeout", "60s")
		go http.Get(url + "/stuck") // in flight until the process ends
		time.Sleep(200 * time.Millisecond)
		d.Signal(t, syscall.SIGTERM)
		d.WaitFor(t, 5*time.Second, 1, "draining", func(l proctest.Line) bool { return strings.Contains(l.Raw, "draining") })
		time.Sleep(500 * time.Millisecond)
		if !proctest.Alive(d.Pid()) {
			t.Fatal("the dev server exited at TERM with a request in flight, want a drain")
		}
		d.Signal(t, syscall.SIGINT)
		start := time.Now()
		if code := d.Wait(t, graceful/3); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		t.Logf("exited %v after the second signal", time.Since(start).Round(time.Millisecond))
		if got := d.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, "stopping now") }); len(got) != 1 {
			t.Errorf("%d lines say stopping now, want 1", len(got))
		}
	})
}
