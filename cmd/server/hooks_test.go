package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/server"
)

// The lifecycle hooks (server.App's OnBoot, OnShutdown, OnReady,
// OnReload, OnExit): a test app registers every one, each writes a line
// "<pid> <hook>" to a file the test names, and the test runs the real
// process model through its signals and reads the order back, per process
// and role.

// Environment of the hooks app.
const (
	// envHooksApp makes the test binary run hooksApp, writing its hook
	// lines to the file it names.
	envHooksApp = "REMUDA_TEST_HOOKS_APP"
	// envHooksBlock, if set, makes OnShutdown block and never return,
	// deaf to its context.
	envHooksBlock = "REMUDA_TEST_HOOKS_BLOCK"
)

// hooksApp is an app without auth (no database to set up) whose every
// hook appends one line to the file envHooksApp names. OnShutdown also
// writes how much of its deadline remained when it was called.
func hooksApp() {
	path := os.Getenv(envHooksApp)
	note := func(hook string, more ...any) {
		line := fmt.Sprintln(append([]any{os.Getpid(), hook}, more...)...)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		f.WriteString(line) // one write with O_APPEND: lines never mix
		f.Close()
	}
	app := server.NewApp()
	app.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	app.OnBoot = func(server.Config) error { note("boot"); return nil }
	app.OnReady = func(server.Config) error { note("ready"); return nil }
	app.OnReload = func(server.Config) error { note("reload"); return nil }
	app.OnExit = func(server.Config) error { note("exit"); return nil }
	app.OnShutdown = func(ctx context.Context, cfg server.Config) error {
		deadline, ok := ctx.Deadline()
		if !ok {
			note("shutdown", "no-deadline")
			return nil
		}
		note("shutdown", time.Until(deadline).Milliseconds(), cfg.GracefulTimeout.Milliseconds())
		if os.Getenv(envHooksBlock) != "" {
			select {}
		}
		return nil
	}
	server.Main(app)
}

// hookLine is one line of the hooks file.
type hookLine struct {
	pid  int
	hook string
	args []string
}

func (h hookLine) String() string { return fmt.Sprintf("%d %s", h.pid, h.hook) }

// readHooks reads the hooks file.
func readHooks(t *testing.T, path string) []hookLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []hookLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		pid, err := strconv.Atoi(fs[0])
		if err != nil || len(fs) < 2 {
			t.Fatalf("hooks file line %q: want \"<pid> <hook>\"", sc.Text())
		}
		out = append(out, hookLine{pid: pid, hook: fs[1], args: fs[2:]})
	}
	return out
}

// waitHooks waits until the hooks file has n lines and returns them.
func waitHooks(t *testing.T, path string, n int, what string) []hookLine {
	t.Helper()
	var got []hookLine
	if !proctest.WaitUntil(15*time.Second, func() bool { got = readHooks(t, path); return len(got) >= n }) {
		t.Fatalf("%s: %d hook lines within 15s, want %d: %v", what, len(got), n, got)
	}
	return got
}

// startHooksApp starts the hooks app with args and the hooks file in a
// temporary directory.
func startHooksApp(t *testing.T, env []string, args ...string) (p *proctest.Proc, hooks string) {
	t.Helper()
	hooks = filepath.Join(t.TempDir(), "hooks")
	p = proctest.Start(t, os.Args[0], append(env, envHooksApp+"="+hooks), args...)
	return p, hooks
}

// workerPids maps each worker pid the master started to its generation.
func workerPids(p *proctest.Proc) map[int]int {
	gens := map[int]int{}
	for _, l := range p.Find(proctest.Msg("worker started")) {
		gens[l.Int("worker_pid")] = l.Int("generation")
	}
	return gens
}

// TestHooksOrder runs the hooks app in prod with 2 workers through start,
// HUP, TTOU and TERM. Each worker runs boot then shutdown, the master
// ready, reload and exit, in that order, each in its own process, and
// across processes: the first generation boots before ready; the second
// boots before reload, which comes before the first generation's
// shutdowns; TTOU shuts one worker of the second generation down, TERM the
// other, and exit comes last, after every worker has exited.
func TestHooksOrder(t *testing.T) {
	addr := proctest.FreeAddr(t)
	const graceful = 2 * time.Second
	p, path := startHooksApp(t, nil, "run", "--prod", "--workers", "2", "--bind", addr,
		"--graceful-timeout", graceful.String())
	p.WaitReady(t, 1)
	waitHooks(t, path, 3, "start") // 2 boots, ready

	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
	exited := func(n int, what string) {
		p.WaitFor(t, 10*time.Second, n, what, proctest.Msg("worker exited"))
	}
	exited(2, "first generation exited after HUP")
	waitHooks(t, path, 8, "HUP") // + 2 boots, reload, 2 shutdowns

	p.Signal(t, syscall.SIGTTOU)
	exited(3, "a worker exited after TTOU")
	waitHooks(t, path, 9, "TTOU")

	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("master exit code %d, want 0", code)
	}
	got := readHooks(t, path)
	t.Logf("hooks: %v", got)

	master := p.Pid()
	gens := workerPids(p)
	var first, second []int
	for pid, gen := range gens {
		switch gen {
		case 1:
			first = append(first, pid)
		case 2:
			second = append(second, pid)
		default:
			t.Errorf("worker %d of generation %d, want only generations 1 and 2", pid, gen)
		}
	}
	if len(first) != 2 || len(second) != 2 {
		t.Fatalf("workers started: generation 1 %v, generation 2 %v; want 2 of each", first, second)
	}
	var ttou int
	for _, l := range p.Find(proctest.Msg("stopping worker")) {
		if l.Fields["reason"] == "fewer workers wanted" {
			ttou = l.Int("worker_pid")
		}
	}
	if !slices.Contains(second, ttou) {
		t.Fatalf("TTOU stopped worker %d, want one of generation 2 %v", ttou, second)
	}
	last := second[0]
	if last == ttou {
		last = second[1]
	}

	// Per process: the master's hooks and each worker's, in order.
	byPid := map[int][]string{}
	at := map[string]int{} // "<pid> <hook>" → its index in the file
	for i, h := range got {
		byPid[h.pid] = append(byPid[h.pid], h.hook)
		at[h.String()] = i
	}
	if want := []string{"ready", "reload", "exit"}; !slices.Equal(byPid[master], want) {
		t.Errorf("master %d ran hooks %v, want %v", master, byPid[master], want)
	}
	for pid := range gens {
		if want := []string{"boot", "shutdown"}; !slices.Equal(byPid[pid], want) {
			t.Errorf("worker %d (generation %d) ran hooks %v, want %v", pid, gens[pid], byPid[pid], want)
		}
	}
	for pid, hooks := range byPid {
		if _, worker := gens[pid]; pid != master && !worker {
			t.Errorf("process %d, neither the master nor one of its workers, ran hooks %v", pid, hooks)
		}
	}
	if len(got) != 11 {
		t.Errorf("%d hook lines, want 11 (3 in the master, 2 in each of 4 workers)", len(got))
	}

	// Across processes: each step happens before the next.
	before := func(a, b string) {
		t.Helper()
		ia, oka := at[a]
		ib, okb := at[b]
		if !oka || !okb || ia >= ib {
			t.Errorf("hook %q (line %d, present %v) must come before %q (line %d, present %v)", a, ia, oka, b, ib, okb)
		}
	}
	hook := func(pid int, name string) string { return hookLine{pid: pid, hook: name}.String() }
	for _, w := range first {
		before(hook(w, "boot"), hook(master, "ready"))
		before(hook(master, "reload"), hook(w, "shutdown"))
	}
	for _, w := range second {
		before(hook(master, "ready"), hook(w, "boot"))
		before(hook(w, "boot"), hook(master, "reload"))
	}
	for _, w := range first {
		before(hook(w, "shutdown"), hook(ttou, "shutdown"))
	}
	before(hook(ttou, "shutdown"), hook(last, "shutdown"))
	before(hook(last, "shutdown"), hook(master, "exit"))

	// Each shutdown had a deadline within --graceful-timeout: the drain of
	// an idle worker takes a fraction of it, the hook the rest.
	for _, h := range got {
		if h.hook != "shutdown" {
			continue
		}
		if len(h.args) != 2 {
			t.Errorf("worker %d: shutdown without a deadline (%v)", h.pid, h.args)
			continue
		}
		left, _ := strconv.Atoi(h.args[0])
		if left <= 0 || time.Duration(left)*time.Millisecond > graceful {
			t.Errorf("worker %d: shutdown hook called with %d ms to its deadline, want some, and no more than --graceful-timeout %v", h.pid, left, graceful)
		}
	}
	// Every exit was a normal one, and nothing was abandoned.
	if n := len(p.Find(proctest.Msg("worker exited"))); n != 4 {
		t.Errorf("%d \"worker exited\" lines, want 4", n)
	}
	for _, msg := range []string{"worker killed", "shutdown hook abandoned", "ready hook failed", "reload hook failed", "exit hook failed"} {
		if n := len(p.Find(proctest.Msg(msg))); n != 0 {
			t.Errorf("%d %q lines, want none", n, msg)
		}
	}
	p.AssertJSONLogs(t)
}

// TestShutdownHookDeadline runs a worker whose OnShutdown blocks for ever:
// at its deadline, the end of --graceful-timeout, the worker logs that it
// abandoned the hook and exits by itself, before the master would kill it;
// the master logs an ordinary exit, runs its exit hook and exits 0.
func TestShutdownHookDeadline(t *testing.T) {
	addr := proctest.FreeAddr(t)
	const graceful = time.Second
	p, path := startHooksApp(t, []string{envHooksBlock + "=1"}, "run", "--prod", "--workers", "1",
		"--bind", addr, "--graceful-timeout", graceful.String())
	p.WaitReady(t, 1)
	worker := p.WaitFor(t, 5*time.Second, 1, "worker started", proctest.Msg("worker started"))[0].Int("worker_pid")
	waitHooks(t, path, 2, "start") // boot, ready

	term := time.Now()
	p.Signal(t, syscall.SIGTERM)
	abandoned := p.WaitFor(t, 10*time.Second, 1, `"shutdown hook abandoned"`, proctest.Msg("shutdown hook abandoned"))[0]
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("master exit code %d, want 0", code)
	}
	stopped := time.Since(term)
	if pid := abandoned.Int("pid"); pid != worker {
		t.Errorf("\"shutdown hook abandoned\" logged by pid %d, want the worker %d", pid, worker)
	}
	// The worker exited by itself: the master neither had to kill it nor
	// waited past the graceful timeout for it.
	exits := p.Find(proctest.Msg("worker exited"))
	if len(exits) != 1 || exits[0].Int("worker_pid") != worker {
		t.Errorf("\"worker exited\" lines %d (want 1, for worker %d): %v", len(exits), worker, exits)
	} else if status, _ := exits[0].Fields["status"].(string); status != "exit status 0" {
		t.Errorf("worker exit status %q, want \"exit status 0\"", status)
	}
	for _, msg := range []string{"worker killed", "worker did not stop in time"} {
		if n := len(p.Find(proctest.Msg(msg))); n != 0 {
			t.Errorf("%d %q lines, want none", n, msg)
		}
	}
	// The hook ran from its call to its deadline, which fell within the
	// graceful timeout of the TERM.
	got := readHooks(t, path)
	var hooks []string
	for _, h := range got {
		hooks = append(hooks, h.String())
	}
	want := []string{
		hookLine{pid: worker, hook: "boot"}.String(),
		hookLine{pid: p.Pid(), hook: "ready"}.String(),
		hookLine{pid: worker, hook: "shutdown"}.String(),
		hookLine{pid: p.Pid(), hook: "exit"}.String(),
	}
	if !slices.Equal(hooks, want) {
		t.Fatalf("hooks %v, want %v", hooks, want)
	}
	left, _ := strconv.Atoi(got[2].args[0])
	held, _ := abandoned.Fields["duration"].(float64) // seconds
	t.Logf("TERM to master exit %v; hook called with %d ms left, abandoned after %.3f s", stopped, left, held)
	if d := time.Duration(held * float64(time.Second)); d < time.Duration(left)*time.Millisecond-50*time.Millisecond {
		t.Errorf("hook abandoned after %v, before its deadline (%d ms after its call)", d, left)
	}
	if stopped < graceful {
		t.Errorf("master exited %v after TERM, before the graceful timeout %v the hook was entitled to", stopped, graceful)
	}
}

// TestDevHooks runs the hooks app as the dev server, one process in both
// roles: boot, ready, then at TERM shutdown and exit.
func TestDevHooks(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p, path := startHooksApp(t, nil, "run", "--bind", addr, "--graceful-timeout", "2s")
	waitHooks(t, path, 2, "start")
	if code, body, err := proctest.Get("http://"+addr+"/healthz", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("GET /healthz: %d %q %v, want 200 ok", code, body, err)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("dev server exit code %d, want 0", code)
	}
	got := readHooks(t, path)
	var hooks []string
	for _, h := range got {
		if h.pid != p.Pid() {
			t.Errorf("hook %q ran in process %d, want the dev server %d", h.hook, h.pid, p.Pid())
		}
		hooks = append(hooks, h.hook)
	}
	if want := []string{"boot", "ready", "shutdown", "exit"}; !slices.Equal(hooks, want) {
		t.Errorf("dev server hooks %v, want %v", hooks, want)
	}
}

// TestHooksUSR2 upgrades the master (USR2): the new master runs ready,
// the old one does not run exit (the service goes on in the new master);
// TERM to the new master then runs its exit. Workers of both masters run
// boot, then shutdown.
func TestHooksUSR2(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p, path := startHooksApp(t, nil, "run", "--prod", "--workers", "1", "--bind", addr)
	p.WaitReady(t, 1)
	old := p.Pid()
	p.Signal(t, syscall.SIGUSR2)
	ready := p.WaitFor(t, 15*time.Second, 1, "the new master ready", func(l proctest.Line) bool {
		return l.Msg() == "generation ready" && l.Int("pid") != old
	})
	master := ready[0].Int("pid")
	if code := p.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("old master exit code %d, want 0", code)
	}
	p.WaitFor(t, 10*time.Second, 1, "the old worker exited", proctest.Msg("worker exited"))
	syscall.Kill(master, syscall.SIGTERM)
	if !proctest.WaitUntil(10*time.Second, func() bool { return !proctest.Alive(master) }) {
		t.Fatalf("new master %d still runs 10s after TERM", master)
	}
	got := waitHooks(t, path, 7, "USR2 then TERM")
	byPid := map[int][]string{}
	for _, h := range got {
		byPid[h.pid] = append(byPid[h.pid], h.hook)
	}
	if want := []string{"ready"}; !slices.Equal(byPid[old], want) {
		t.Errorf("old master %d ran hooks %v, want %v (no exit after a handover)", old, byPid[old], want)
	}
	if want := []string{"ready", "exit"}; !slices.Equal(byPid[master], want) {
		t.Errorf("new master %d ran hooks %v, want %v", master, byPid[master], want)
	}
	workers := 0
	for pid, hooks := range byPid {
		if pid == old || pid == master {
			continue
		}
		workers++
		if want := []string{"boot", "shutdown"}; !slices.Equal(hooks, want) {
			t.Errorf("worker %d ran hooks %v, want %v", pid, hooks, want)
		}
	}
	if workers != 2 {
		t.Errorf("%d workers ran hooks, want 2 (one per master): %v", workers, got)
	}
	if len(got) != 7 {
		t.Errorf("%d hook lines, want 7: %v", len(got), got)
	}
}
