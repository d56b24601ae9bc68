package workers_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/internal/workers"
)

// prod starts the test app as a prod master on a free port and waits
// until its first generation is ready.
func prod(t *testing.T, env []string, flags ...string) (p *proctest.Proc, url string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p = start(t, env, append([]string{"run", "--prod", "--bind", addr}, flags...)...)
	p.WaitReady(t, 1)
	return p, "http://" + addr
}

func TestTwoWorkersServe(t *testing.T) {
	p, url := prod(t, nil, "--workers", "2")
	if got := proctest.Children(p.Pid()); len(got) != 2 {
		t.Fatalf("master has children %v, want exactly 2", got)
	}
	status, body, err := proctest.Get(url+"/healthz", 2*time.Second)
	if err != nil || status != 200 || body != "ok" {
		t.Fatalf("GET /healthz: %d %q %v, want 200 \"ok\"", status, body, err)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	p.AssertJSONLogs(t)
}

func TestKilledWorkerIsReplaced(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 8)

	time.Sleep(500 * time.Millisecond)
	before := proctest.Children(p.Pid())
	victim := before[0]
	killed := time.Now()
	syscall.Kill(victim, syscall.SIGKILL)
	replaced := proctest.WaitUntil(time.Second, func() bool {
		now := proctest.Children(p.Pid())
		return len(now) == 2 && !slices.Contains(now, victim)
	})
	took := time.Since(killed)
	p.WaitFor(t, time.Second, 1, "ready replacement", func(l proctest.Line) bool {
		return l.Msg() == "worker ready" && l.Int("worker") == 3
	})
	p.WaitFor(t, time.Second, 1, `the death logged with status "signal KILL"`, func(l proctest.Line) bool {
		return l.Msg() == "worker died" && l.Int("worker_pid") == victim && l.Fields["status"] == "signal KILL"
	})
	if !replaced {
		t.Fatalf("worker %d killed: not replaced within 1s (children %v)", victim, proctest.Children(p.Pid()))
	}
	t.Logf("worker %d replaced in %v", victim, took)
	ok, _ := l.Stop(t)
	if ok == 0 {
		t.Error("no request succeeded under load")
	}
	if !proctest.Alive(p.Pid()) {
		t.Fatal("master died")
	}
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after the kill: GET /healthz %d %v, want 200", status, err)
	}
	p.AssertJSONLogs(t)
}

func TestTTINTTOU(t *testing.T) {
	p, _ := prod(t, nil, "--workers", "2")
	master := p.Pid()
	p.Signal(t, syscall.SIGTTIN)
	if !proctest.WaitUntil(5*time.Second, func() bool { return len(proctest.Children(master)) == 3 }) {
		t.Fatalf("after TTIN: %d workers, want 3", len(proctest.Children(master)))
	}
	p.WaitFor(t, 5*time.Second, 3, "3 ready workers", proctest.Msg("worker ready"))
	p.Signal(t, syscall.SIGTTOU)
	if !proctest.WaitUntil(5*time.Second, func() bool { return len(proctest.Children(master)) == 2 }) {
		t.Fatalf("after TTOU: %d workers, want 2", len(proctest.Children(master)))
	}
	// Signals are logged by name, as the README writes them.
	for _, name := range []string{"TTIN", "TTOU"} {
		p.WaitFor(t, time.Second, 1, name+" logged", func(l proctest.Line) bool { return l.Msg() == "signal" && l.Fields["signal"] == name })
	}
}

func TestHUPUnderLoadFailsNothing(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "2", "--graceful-timeout", "5s")
	master := p.Pid()
	first := proctest.Children(master)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 32)
	time.Sleep(1500 * time.Millisecond)
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
	time.Sleep(1500 * time.Millisecond)
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 3)
	ok, failed := l.Stop(t)

	// Retired workers drain within the graceful timeout (5s).
	if !proctest.WaitUntil(6*time.Second, func() bool { return !slices.ContainsFunc(first, proctest.Alive) }) {
		t.Errorf("workers of the first generation %v still running after two HUPs (children %v)", first, proctest.Children(master))
	}
	// The second generation may still be draining.
	if !proctest.WaitUntil(6*time.Second, func() bool { return len(proctest.Children(master)) == 2 }) {
		t.Errorf("after two HUPs: workers %v, want 2", proctest.Children(master))
	}
	if ok == 0 || failed != 0 {
		t.Errorf("two HUPs under load: %d ok, %d failed; want 0 failed", ok, failed)
	}
	p.AssertJSONLogs(t)
}

func TestStuckRequestGets503AndWorkerIsRecycled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	const timeout, graceful = 2 * time.Second, 1 * time.Second
	p, url := prod(t, nil, "--workers", "2", "--timeout", "2s", "--graceful-timeout", "1s", "--access-log", "-")
	master := p.Pid()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 4)

	sent := time.Now()
	status, body, err := proctest.Get(url+"/stuck", 10*time.Second)
	answered := time.Since(sent)
	if err != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("GET /stuck: %d %q %v, want 503", status, body, err)
	}
	if answered > 3*time.Second {
		t.Errorf("GET /stuck answered after %v, want within 3s", answered)
	}
	t.Logf("stuck request answered 503 after %v", answered)

	// The worker that timed out.
	timedOut := p.WaitFor(t, time.Second, 1, `"request timed out"`, proctest.Msg("request timed out"))[0]
	stuck := timedOut.Int("pid")
	for _, key := range []string{"method", "path", "request_id", "age"} {
		if timedOut.Fields[key] == nil {
			t.Errorf("timeout line lacks %q: %s", key, timedOut.Raw)
		}
	}
	if timedOut.Fields["path"] != "/stuck" || timedOut.Fields["method"] != "GET" {
		t.Errorf("timeout line names %v %v, want GET /stuck", timedOut.Fields["method"], timedOut.Fields["path"])
	}
	// The access line follows the 503 on the wire: wait for it, then
	// check there is one.
	access503 := func(l proctest.Line) bool {
		return l.Msg() == "request" && l.Fields["path"] == "/stuck" && l.Int("status") == 503
	}
	p.WaitFor(t, 5*time.Second, 1, "the 503's access line", access503)
	access := p.Find(access503)
	if len(access) != 1 || access[0].Fields["request_id"] != timedOut.Fields["request_id"] {
		t.Errorf("access-log lines for the 503: %v, want one with request_id %v", access, timedOut.Fields["request_id"])
	}

	limit := timeout + graceful + time.Second
	gone := proctest.WaitUntil(limit-time.Since(sent), func() bool {
		now := proctest.Children(master)
		return len(now) == 2 && !slices.Contains(now, stuck)
	})
	if !gone {
		t.Fatalf("stuck worker %d still there %v after the request (children %v), want gone and replaced within %v",
			stuck, time.Since(sent), proctest.Children(master), limit)
	}
	t.Logf("stuck worker replaced %v after the request was sent", time.Since(sent))
	time.Sleep(300 * time.Millisecond)
	cancel()
	if ok, failed := l.Stop(t); ok == 0 || failed != 0 {
		t.Errorf("other requests: %d ok, %d failed; want all served", ok, failed)
	}
	p.AssertJSONLogs(t)
}

func TestTERMServesQueuedAndInFlight(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "1", "--graceful-timeout", "5s")
	master := p.Pid()
	addr := strings.TrimPrefix(url, "http://")
	worker := proctest.Children(master)[0]

	inflight := make(chan error, 1)
	go func() {
		status, body, err := proctest.Get(url+"/sleep?d=2500ms", 10*time.Second)
		if err == nil && (status != 200 || body != "slept") {
			err = fmt.Errorf("got %d %q, want 200 \"slept\"", status, body)
		}
		inflight <- err
	}()
	time.Sleep(300 * time.Millisecond)

	// Freeze the worker so that new connections wait in the kernel's
	// accept queue, as they do behind a busy server.
	syscall.Kill(worker, syscall.SIGSTOP)
	const queued = 30
	conns := make([]net.Conn, queued)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			syscall.Kill(worker, syscall.SIGCONT)
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		conns[i] = c
	}
	p.Signal(t, syscall.SIGTERM)
	p.WaitFor(t, 2*time.Second, 1, "TERM logged", func(l proctest.Line) bool { return l.Msg() == "signal" && l.Fields["signal"] == "TERM" })
	syscall.Kill(worker, syscall.SIGCONT)

	served := 0
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("queued connection %d: %v", i, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			served++
		}
	}
	if served != queued {
		t.Errorf("connections queued when TERM arrived: %d of %d served, want all", served, queued)
	}
	t.Logf("queued connections served after TERM: %d of %d", served, queued)

	// The queued connections may be answered before the worker has even
	// taken its TERM (on a busy machine): wait for its drain to begin,
	// then past the time it keeps accepting.
	p.WaitFor(t, 5*time.Second, 1, "the worker draining", proctest.Msg("draining"))
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			t.Errorf("a connection made after TERM was served: %s", resp.Status)
		}
		c.Close()
	}
	if err := <-inflight; err != nil {
		t.Errorf("request in flight at TERM: %v", err)
	}
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	if proctest.Alive(worker) {
		t.Errorf("worker %d outlived its master", worker)
	}
	p.AssertJSONLogs(t)
}

func TestMasterKilledTakesWorkersDown(t *testing.T) {
	p, _ := prod(t, nil, "--workers", "2")
	workers := proctest.Children(p.Pid())
	p.Signal(t, syscall.SIGKILL)
	p.Wait(t, 2*time.Second)
	killed := time.Now()
	if !proctest.WaitUntil(2*time.Second, func() bool {
		return !slices.ContainsFunc(workers, proctest.Alive)
	}) {
		t.Fatalf("workers %v still alive 2s after their master was killed", slices.DeleteFunc(workers, func(pid int) bool { return !proctest.Alive(pid) }))
	}
	t.Logf("workers gone %v after the master was killed", time.Since(killed))
}

func TestSilentWorkerIsAbortedWithStackDump(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, []string{"GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1"}, "--workers", "1", "--timeout", "2s")
	master := p.Pid()
	wedged := proctest.Children(master)[0]
	go proctest.Get(url+"/wedge", 10*time.Second)

	silent := p.WaitFor(t, 8*time.Second, 1, `"worker silent, aborting it"`, proctest.Msg("worker silent, aborting it"))[0]
	if silent.Int("worker_pid") != wedged {
		t.Errorf("aborted worker_pid %d, want %d", silent.Int("worker_pid"), wedged)
	}
	dump := func(want string) func(proctest.Line) bool {
		return func(l proctest.Line) bool {
			out, _ := l.Fields["output"].(string)
			return l.Msg() == "worker output" && l.Int("worker_pid") == wedged && strings.Contains(out, want)
		}
	}
	p.WaitFor(t, 5*time.Second, 1, "SIGABRT in the relayed output", dump("SIGABRT"))
	p.WaitFor(t, 5*time.Second, 1, "the wedged goroutine in the stack dump", dump("spin"))
	p.WaitFor(t, 5*time.Second, 2, "replacement ready", proctest.Msg("worker ready"))
	// The whole dump, from its first line on, is error: no warning lines
	// in the middle of it.
	lines := p.Find(dump(""))
	for _, l := range lines {
		if l.Fields["level"] != "error" || l.Fields["stream"] != "stderr" {
			t.Errorf("a line of the dump at %v on %v, want error on stderr: %s", l.Fields["level"], l.Fields["stream"], l.Raw)
		}
	}
	t.Logf("%d lines of dump relayed", len(lines))
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after the abort: GET /healthz %d %v, want 200", status, err)
	}
	p.AssertJSONLogs(t)
}

func TestSlowBootIsNotATimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	p, url := prod(t, []string{envBootDelay + "=2500ms"}, "--workers", "2", "--timeout", "1s", "--boot-timeout", "10s")
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("GET /healthz %d %v, want 200", status, err)
	}
	if got := p.Find(proctest.Msg("worker boot timed out")); len(got) != 0 {
		t.Errorf("a boot of 2.5s under --timeout 1s timed out: %v", got[0].Raw)
	}
	if got := len(p.Find(proctest.Msg("worker started"))); got != 2 {
		t.Errorf("%d workers started, want 2 (no respawn)", got)
	}
}

func TestBootFailureStopsMaster(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	os.WriteFile(flag, nil, 0o644)
	started := time.Now()
	p := start(t, []string{envBootFailIf + "=" + flag}, "run", "--prod", "--bind", proctest.FreeAddr(t), "--workers", "2")
	code := p.Wait(t, 10*time.Second)
	t.Logf("master exited %d after %v", code, time.Since(started))
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if n := len(p.Find(proctest.Msg("worker started"))); n > 5 {
		t.Errorf("%d workers spawned, want a handful at most", n)
	}
	if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, bootError) && l.Msg() == "boot failed" }); len(got) == 0 {
		t.Errorf("the master's last line does not carry the worker's error %q", bootError)
	}
	p.AssertJSONLogs(t)
}

func TestHUPKeepsOldGenerationWhenNewCannotBoot(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	p, url := prod(t, []string{envBootFailIf + "=" + flag}, "--workers", "2")
	before := proctest.Children(p.Pid())
	os.WriteFile(flag, nil, 0o644)
	p.Signal(t, syscall.SIGHUP)
	p.WaitFor(t, 10*time.Second, 1, `"new generation failed to boot"`, proctest.Msg("new generation failed to boot, keeping the old one"))
	proctest.WaitUntil(2*time.Second, func() bool { return len(proctest.Children(p.Pid())) == 2 })
	if after := proctest.Children(p.Pid()); !slices.Equal(slices.Sorted(slices.Values(after)), slices.Sorted(slices.Values(before))) {
		t.Errorf("workers %v after a failed HUP, want the old ones %v", after, before)
	}
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after a failed HUP: GET /healthz %d %v, want 200", status, err)
	}
	// Once the app can boot again, a HUP goes through.
	os.Remove(flag)
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	p := start(t, nil, "run", "--prod", "--bind", addr)
	if code := p.Wait(t, 5*time.Second); code == 0 {
		t.Errorf("exit code 0 with %s in use, want non-zero", addr)
	}
	if got := p.Find(func(l proctest.Line) bool {
		return strings.Contains(l.Raw, addr) && strings.Contains(l.Raw, "address already in use")
	}); len(got) == 0 {
		t.Errorf("no line names %s as in use", addr)
	}
}

func TestHUPRunsNewReleaseBehindSymlink(t *testing.T) {
	dir := t.TempDir()
	for _, rel := range []string{"r1", "r2"} {
		os.Mkdir(filepath.Join(dir, rel), 0o755)
		proctest.CopyBinary(t, filepath.Join(dir, rel, "app"))
	}
	current := filepath.Join(dir, "current")
	os.Symlink("r1", current)
	addr := proctest.FreeAddr(t)
	p := startBinary(t, filepath.Join(current, "app"), nil, "run", "--prod", "--bind", addr, "--workers", "2")
	p.WaitReady(t, 1)
	assertExe := func(want string) {
		t.Helper()
		for _, pid := range proctest.Children(p.Pid()) {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != want {
				t.Errorf("worker %d runs %s, want %s", pid, exe, want)
			}
		}
	}
	assertExe(filepath.Join(dir, "r1", "app"))

	// A deploy: switch the symlink atomically, then HUP.
	os.Symlink("r2", current+".new")
	if err := os.Rename(current+".new", current); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
	proctest.WaitUntil(5*time.Second, func() bool { return len(proctest.Children(p.Pid())) == 2 })
	assertExe(filepath.Join(dir, "r2", "app"))
}

func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "2", "--max-requests", "300", "--max-requests-jitter", "50")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 16)
	ok, failed := l.Stop(t)
	recycled := p.Find(proctest.Msg("worker asks to be recycled"))
	replaced := p.Find(func(l proctest.Line) bool { return l.Msg() == "stopping worker" && l.Fields["reason"] == "replaced" })
	t.Logf("%d requests: %d recycle requests, %d workers replaced", ok, len(recycled), len(replaced))
	if len(replaced) < 4 {
		t.Errorf("%d workers replaced over %d requests with --max-requests 300, want at least 4", len(replaced), ok)
	}
	if failed != 0 {
		t.Errorf("recycling under load: %d failed requests, want 0", failed)
	}
	p.AssertJSONLogs(t)
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.sock")
	staleSocket(t, path)
	p := start(t, nil, "run", "--prod", "--bind", "unix:"+path, "--workers", "1")
	p.WaitReady(t, 1)
	checkSocketMode(t, path)
	resp, err := unixClient(path).Get("http://unix/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz over %s: %v %v", path, resp, err)
	}
	resp.Body.Close()

	// A second server on the same live socket must refuse, not steal it.
	q := start(t, nil, "run", "--prod", "--bind", "unix:"+path)
	if code := q.Wait(t, 5*time.Second); code == 0 {
		t.Error("a second master bound a live unix socket")
	}
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 10*time.Second)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after stop: %v", err)
	}
}

// staleSocket leaves at path the socket file of a process that died:
// nothing accepts on it.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
}

// checkSocketMode checks that the unix socket at path has mode 0660
// (serve.UnixSocketMode).
func checkSocketMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o660 {
		t.Errorf("socket %s: mode %v, want 0660", path, mode)
	}
}

// unixClient is an HTTP client that connects to the unix socket at path,
// whatever the URL's host.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{Dial: func(string, string) (net.Conn, error) { return net.Dial("unix", path) }}}
}

func TestIPv6AndPIDFile(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pidfile := filepath.Join(t.TempDir(), "server.pid")
	p := start(t, nil, "run", "--prod", "--bind", addr, "--bind", proctest.FreeAddr(t), "--workers", "1", "--pidfile", pidfile)
	p.WaitReady(t, 1)
	if status, _, err := proctest.Get("http://"+addr+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("GET /healthz on %s: %d %v", addr, status, err)
	}
	b, _ := os.ReadFile(pidfile)
	if got, want := strings.TrimSpace(string(b)), fmt.Sprint(p.Pid()); got != want {
		t.Errorf("pidfile holds %q, want %q", got, want)
	}
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t, 10*time.Second)
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile left after stop: %v", err)
	}
}

func TestAccessLogLine(t *testing.T) {
	p, url := prod(t, nil, "--workers", "1", "--access-log", "-")
	req, _ := http.NewRequest("GET", url+"/healthz", nil)
	req.Header.Set("User-Agent", "remuda-test")
	req.Header.Set("X-Request-ID", "req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-ID"); got != "req-42" {
		t.Errorf("X-Request-ID echoed %q, want req-42", got)
	}
	line := p.WaitFor(t, 2*time.Second, 1, "access-log line", proctest.Msg("request"))[0]
	want := map[string]any{"method": "GET", "path": "/healthz", "status": 200.0, "bytes": 2.0, "user_agent": "remuda-test", "request_id": "req-42"}
	for k, v := range want {
		if line.Fields[k] != v {
			t.Errorf("access log %s = %v, want %v (%s)", k, line.Fields[k], v, line.Raw)
		}
	}
	for _, k := range []string{"ts", "duration", "remote_addr", "pid"} {
		if line.Fields[k] == nil {
			t.Errorf("access log lacks %s: %s", k, line.Raw)
		}
	}
	if line.Int("pid") != proctest.Children(p.Pid())[0] {
		t.Errorf("access log pid %d, want the worker's %v", line.Int("pid"), proctest.Children(p.Pid()))
	}
}

func TestTERMStopsAtGracefulTimeout(t *testing.T) {
	p, url := prod(t, nil, "--workers", "1", "--graceful-timeout", "1s")
	worker := proctest.Children(p.Pid())[0]
	go proctest.Get(url+"/sleep?d=20s", 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	termAt := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 5*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	took := time.Since(termAt)
	t.Logf("TERM with a 20s request in flight and --graceful-timeout 1s: master exited after %v", took)
	if took < time.Second || took > 3*time.Second {
		t.Errorf("master exited %v after TERM, want about the 1s graceful timeout", took)
	}
	if proctest.Alive(worker) {
		t.Errorf("worker %d outlived its master", worker)
	}
	dropped := p.WaitFor(t, time.Second, 1, "the dropped request logged", proctest.Msg("drained: connections dropped at the graceful timeout"))[0]
	if dropped.Int("dropped") != 1 || dropped.Int("requests_in_flight") != 1 {
		t.Errorf("drain line %s, want 1 connection dropped with 1 request in flight", dropped.Raw)
	}
}

func TestINTStopsAtOnce(t *testing.T) {
	p, url := prod(t, nil, "--workers", "2")
	workers := proctest.Children(p.Pid())
	go proctest.Get(url+"/sleep?d=20s", 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	intAt := time.Now()
	p.Signal(t, syscall.SIGINT)
	if code := p.Wait(t, 3*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	t.Logf("INT with a 20s request in flight: master exited after %v", time.Since(intAt))
	if slices.ContainsFunc(workers, proctest.Alive) {
		t.Errorf("workers %v outlived their master", workers)
	}
}

func TestUSR1ReopensAccessLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	p, url := prod(t, nil, "--workers", "1", "--access-log", logPath)
	proctest.Get(url+"/healthz?n=1", 2*time.Second)
	// logrotate: move the file away, then signal.
	os.Rename(logPath, logPath+".1")
	p.Signal(t, syscall.SIGUSR1)
	time.Sleep(300 * time.Millisecond)
	proctest.Get(url+"/healthz?n=2", 2*time.Second)
	var fresh []byte
	proctest.WaitUntil(2*time.Second, func() bool {
		fresh, _ = os.ReadFile(logPath)
		return bytes.Contains(fresh, []byte(`"path":"/healthz"`))
	})
	old, _ := os.ReadFile(logPath + ".1")
	if lines := bytes.Count(old, []byte("\n")); lines != 1 {
		t.Errorf("rotated file holds %d lines, want 1: %s", lines, old)
	}
	if lines := bytes.Count(fresh, []byte("\n")); lines != 1 {
		t.Errorf("reopened file holds %d lines, want 1: %s", lines, fresh)
	}
}

// TestAccessLogFlushedAtStop checks that the buffered access log loses
// nothing when the server stops: every request has its line once the
// master has exited, without waiting for the buffer's flush interval.
func TestAccessLogFlushedAtStop(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	p, url := prod(t, nil, "--workers", "2", "--access-log", logPath)
	const n = 50
	for i := range n {
		if status, _, err := proctest.Get(fmt.Sprintf("%s/healthz?n=%d", url, i), 2*time.Second); status != 200 {
			t.Fatalf("request %d: %d %v", i, status, err)
		}
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("master exit %d, want 0", code)
	}
	b, _ := os.ReadFile(logPath)
	if lines := bytes.Count(b, []byte(`"path":"/healthz"`)); lines != n {
		t.Errorf("access log holds %d lines after the stop, want %d", lines, n)
	}
}

func TestWorkerOfAnotherProtocolRefusesToStart(t *testing.T) {
	cmd := exec.Command(os.Args[0], "run", "--prod")
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envApp+"=1", "REMUDA_WORKER_PROTOCOL=0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != workers.ExitProtocol {
		t.Fatalf("worker with protocol 0: %v, want exit code %d", err, workers.ExitProtocol)
	}
	if !bytes.Contains(out, []byte("upgrade the master")) {
		t.Errorf("its error does not tell to upgrade the master: %s", out)
	}
}

func TestHUPRereadsConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.toml")
	os.WriteFile(file, []byte("workers = 2\n"), 0o644)
	p, _ := prod(t, nil, "--config", file)
	master := p.Pid()
	if n := len(proctest.Children(master)); n != 2 {
		t.Fatalf("%d workers from the file's workers = 2", n)
	}
	os.WriteFile(file, []byte("workers = 3\n"), 0o644)
	p.Signal(t, syscall.SIGHUP)
	p.WaitReady(t, 2)
	if !proctest.WaitUntil(5*time.Second, func() bool { return len(proctest.Children(master)) == 3 }) {
		t.Errorf("after HUP with workers = 3 in the file: %d workers, want 3", len(proctest.Children(master)))
	}
	// A broken file keeps the running generation.
	os.WriteFile(file, []byte("workers = \"many\"\n"), 0o644)
	p.Signal(t, syscall.SIGHUP)
	line := p.WaitFor(t, 5*time.Second, 1, "reload error", proctest.Msg("reload config, keeping the running one"))[0]
	if !strings.Contains(line.Raw, "workers") || !strings.Contains(line.Raw, "many") {
		t.Errorf("reload error does not name the key and value: %s", line.Raw)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(proctest.Children(master)); n != 3 {
		t.Errorf("after a HUP with a broken file: %d workers, want the 3 running", n)
	}
}
