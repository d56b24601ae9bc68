package workers_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// readPID reads a pidfile.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %s holds %q", path, b)
	}
	return pid
}

// newMaster waits for the master an upgrade started and returns its PID.
func newMaster(t *testing.T, p *proctest.Proc, old int) int {
	t.Helper()
	line := p.WaitFor(t, 20*time.Second, 1, "the new master ready", func(l proctest.Line) bool {
		return l.Msg() == "generation ready" && l.Int("pid") != old
	})[0]
	return line.Int("pid")
}

func TestUSR2UpgradesUnderLoad(t *testing.T) {
	skipIfShort(t)
	pidfile := filepath.Join(t.TempDir(), "server.pid")
	// Workers boot slowly, so that the upgrade lasts long enough for a
	// second USR2 to find it in progress.
	p, url := prod(t, []string{envBootDelay + "=500ms"}, "--workers", "2", "--pidfile", pidfile)
	old := p.Pid()
	oldWorkers := proctest.Children(old)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	l := proctest.StartLoad(ctx, url+"/healthz", 32)
	time.Sleep(2 * time.Second)
	p.Signal(t, syscall.SIGUSR2)
	time.Sleep(100 * time.Millisecond)
	p.Signal(t, syscall.SIGUSR2)
	p.WaitFor(t, 2*time.Second, 1, "the second USR2 refused", proctest.Msg("upgrade refused: another one is in progress"))

	next := newMaster(t, p, old)
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("old master exit code %d, want 0", code)
	}
	ok, failed := l.Stop(t)
	if ok == 0 || failed != 0 {
		t.Errorf("USR2 under load: %d ok, %d failed; want 0 failed", ok, failed)
	}
	if got := readPID(t, pidfile); got != next {
		t.Errorf("pidfile holds %d, want the new master %d", got, next)
	}
	if slices.ContainsFunc(oldWorkers, proctest.Alive) {
		t.Errorf("old workers %v outlived the old master", oldWorkers)
	}
	if got := proctest.Children(next); len(got) != 2 {
		t.Errorf("new master %d has workers %v, want 2", next, got)
	}

	// The new master obeys HUP and TERM.
	before := len(p.Find(proctest.Msg("generation ready")))
	syscall.Kill(next, syscall.SIGHUP)
	p.WaitFor(t, 10*time.Second, before+1, "a generation after HUP", proctest.Msg("generation ready"))
	syscall.Kill(next, syscall.SIGTERM)
	if !proctest.WaitUntil(10*time.Second, func() bool { return !proctest.Alive(next) }) {
		t.Fatalf("new master %d still running 10s after TERM", next)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile left after the new master stopped: %v", err)
	}
	p.AssertJSONLogs(t)
}

func TestUSR2WithANewMasterThatCannotBoot(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	pidfile := filepath.Join(t.TempDir(), "server.pid")
	p, url := prod(t, []string{envBootFailIf + "=" + fail}, "--workers", "2", "--pidfile", pidfile)
	os.WriteFile(fail, nil, 0o644)
	p.Signal(t, syscall.SIGUSR2)
	line := p.WaitFor(t, 20*time.Second, 1, "upgrade failure", proctest.Msg("upgrade failed, this master keeps serving"))[0]
	if !strings.Contains(line.Raw, "exit status 3") {
		t.Errorf("the failure does not give the new master's exit status: %s", line.Raw)
	}
	if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, bootError) }); len(got) == 0 {
		t.Error("the new workers' error is not in the log")
	}
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after a failed upgrade: GET /healthz %d %v, want 200", status, err)
	}
	if got := readPID(t, pidfile); got != p.Pid() {
		t.Errorf("pidfile holds %d, want the old master %d", got, p.Pid())
	}
	if len(proctest.Children(p.Pid())) != 2 {
		t.Errorf("old master has workers %v, want its 2", proctest.Children(p.Pid()))
	}
}

func TestUSR2WithABadBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	proctest.CopyBinary(t, bin)
	addr := proctest.FreeAddr(t)
	p := startBinary(t, bin, nil, "run", "--prod", "--bind", addr, "--workers", "1")
	p.WaitReady(t, 1)
	// A deploy that went wrong: not a program at all.
	os.WriteFile(bin+".new", []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755)
	os.Rename(bin+".new", bin)
	p.Signal(t, syscall.SIGUSR2)
	p.WaitFor(t, 10*time.Second, 1, "upgrade failure", proctest.Msg("upgrade failed, this master keeps serving"))
	if status, _, err := proctest.Get("http://"+addr+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after a bad binary: GET /healthz %d %v, want 200", status, err)
	}
}

// notifications collects the datagrams a master sends to NOTIFY_SOCKET.
type notifications struct {
	mu  sync.Mutex
	got []string
}

func (n *notifications) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.got)
}

func (n *notifications) count(prefix string) int {
	c := 0
	for _, d := range n.all() {
		for line := range strings.Lines(d) {
			if strings.HasPrefix(line, prefix) {
				c++
			}
		}
	}
	return c
}

func (n *notifications) waitFor(t *testing.T, timeout time.Duration, count int, prefix string) {
	t.Helper()
	if !proctest.WaitUntil(timeout, func() bool { return n.count(prefix) >= count }) {
		t.Fatalf("%d × %s within %v: got %d in %q", count, prefix, timeout, n.count(prefix), n.all())
	}
}

// listenNotify is a NOTIFY_SOCKET the test reads, as systemd would.
func listenNotify(t *testing.T) (string, *notifications) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifications{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return path, n
}

func TestSystemdNotify(t *testing.T) {
	skipIfShort(t)
	sock, n := listenNotify(t)
	// As systemd does, WATCHDOG_PID names the main process: a shell that
	// sets it to its own PID, then becomes the master.
	p := proctest.Start(t, "/bin/sh", []string{envApp + "=1", "NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000"},
		"-c", `WATCHDOG_PID=$$ exec "$0" "$@"`, os.Args[0], "run", "--prod", "--bind", proctest.FreeAddr(t), "--workers", "2")
	p.WaitReady(t, 1)
	n.waitFor(t, 2*time.Second, 1, "READY=1")
	n.waitFor(t, 2*time.Second, 1, "STATUS=2 workers ready")

	start := time.Now()
	before := n.count("WATCHDOG=1")
	time.Sleep(3 * time.Second)
	pings := n.count("WATCHDOG=1") - before
	t.Logf("WATCHDOG=1 sent %d times in %v with WATCHDOG_USEC=1000000", pings, time.Since(start).Round(time.Millisecond))
	if pings < 4 {
		t.Errorf("%d WATCHDOG=1 in 3s with WATCHDOG_USEC=1000000, want at least 4", pings)
	}

	p.Signal(t, syscall.SIGHUP)
	n.waitFor(t, 2*time.Second, 1, "RELOADING=1")
	n.waitFor(t, 2*time.Second, 1, "MONOTONIC_USEC=")
	n.waitFor(t, 5*time.Second, 2, "READY=1")

	p.Signal(t, syscall.SIGUSR2)
	next := newMaster(t, p, p.Pid())
	n.waitFor(t, 5*time.Second, 1, fmt.Sprintf("MAINPID=%d", next))
	n.waitFor(t, 5*time.Second, 3, "READY=1")
	if n.count("STOPPING=1") != 0 {
		t.Errorf("STOPPING=1 sent during an upgrade: %q", n.all())
	}
	p.Wait(t, 10*time.Second)
	// The new master pings the watchdog now (the old one has exited).
	before = n.count("WATCHDOG=1")
	time.Sleep(1500 * time.Millisecond)
	if got := n.count("WATCHDOG=1") - before; got < 2 {
		t.Errorf("%d WATCHDOG=1 in 1.5s from the new master, want at least 2", got)
	}

	syscall.Kill(next, syscall.SIGTERM)
	n.waitFor(t, 5*time.Second, 1, "STOPPING=1")
	proctest.WaitUntil(10*time.Second, func() bool { return !proctest.Alive(next) })
	t.Logf("notifications: %q", n.all())
}

func TestWatchdogSilentWhenWorkersAre(t *testing.T) {
	skipIfShort(t)
	sock, n := listenNotify(t)
	p, url := prod(t, []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=1000000", "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1"},
		"--workers", "1", "--timeout", "30s")
	n.waitFor(t, 3*time.Second, 2, "WATCHDOG=1")
	go proctest.Get(url+"/wedge", 10*time.Second)
	time.Sleep(2500 * time.Millisecond) // the last heartbeat ages out
	before := n.count("WATCHDOG=1")
	time.Sleep(2 * time.Second)
	if got := n.count("WATCHDOG=1") - before; got != 0 {
		t.Errorf("%d WATCHDOG=1 in 2s while the only worker is wedged, want none", got)
	}
	p.Signal(t, syscall.SIGKILL)
}

func TestSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate (Debian package systemd): %v", err)
	}
	addr := proctest.FreeAddr(t)
	// The launched process gets only the variables named with -E; without
	// a value, systemd-socket-activate passes on its own.
	p := proctest.Start(t, activate, nil, "-l", addr, "-E", envApp+"=1", "-E", proctest.EnvRun, "-E", "GORACE",
		os.Args[0], "run", "--prod", "--workers", "2", "--bind", "127.0.0.1:1")
	// It starts the server at the first connection.
	var status int
	var body string
	proctest.WaitUntil(10*time.Second, func() bool {
		status, body, err = proctest.Get("http://"+addr+"/healthz", 5*time.Second)
		return err == nil
	})
	if status != 200 || body != "ok" {
		t.Fatalf("GET /healthz through the socket systemd-socket-activate passed: %d %q %v", status, body, err)
	}
	master := p.WaitFor(t, 5*time.Second, 1, "master starting", proctest.Msg("master starting"))[0]
	if !strings.Contains(master.Raw, addr) || strings.Contains(master.Raw, "127.0.0.1:1\"") {
		t.Errorf("master does not serve the passed socket %s: %s", addr, master.Raw)
	}
	if got := proctest.Children(master.Int("pid")); len(got) != 2 {
		t.Errorf("socket-activated master has workers %v, want 2", got)
	}
}
