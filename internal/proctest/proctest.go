// Package proctest runs real processes for tests: a Remuda master or dev
// server started from a test binary that impersonates an app, its stderr
// parsed as log lines, its children found in /proc, and keep-alive HTTP
// load against it. Only tests import it.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
)

// EnvRun marks every process a test run starts with the run's PID, so
// that Leftovers finds them and only them.
const EnvRun = "REMUDA_TEST_RUN"

var run = strconv.Itoa(os.Getpid())

// Env is what Start adds to a process's environment: the run mark, and a
// race detector that does not sleep a second at exit (its default, which
// would skew stop timings under -race).
func Env() []string {
	return []string{EnvRun + "=" + run, "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
}

// Proc is a started process with its stderr parsed line by line.
type Proc struct {
	Cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []Line
	cond   chan struct{} // closed and replaced at each new line
	done   chan struct{} // closed when the process has exited
	status *os.ProcessState
}

// Line is one stderr line: its fields if it is a JSON object.
type Line struct {
	Raw    string
	Fields map[string]any
}

// Msg is the line's "msg" field.
func (l Line) Msg() string { s, _ := l.Fields["msg"].(string); return s }

// Int is a numeric field.
func (l Line) Int(key string) int {
	f, _ := l.Fields[key].(float64)
	return int(f)
}

// Msg matches lines with that message.
func Msg(m string) func(Line) bool {
	return func(l Line) bool { return l.Msg() == m }
}

// Start runs bin with args, its environment the test's plus Env() plus
// env. The process gets a process group of its own, and the whole group
// (workers, and a master that USR2 started, included) is killed when the
// test ends; its log is printed if the test failed. Lines written to its
// stderr by anyone in the group are collected, also after it exited.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), Env()...), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A pipe of our own rather than StderrPipe: the process may exit while
	// others (its workers, or the master a USR2 started) still write to it.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stderr.Close()
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, cond: make(chan struct{}), done: make(chan struct{})}
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		defer stderr.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := Line{Raw: sc.Text()}
			json.Unmarshal(sc.Bytes(), &l.Fields)
			p.mu.Lock()
			p.lines = append(p.lines, l)
			close(p.cond)
			p.cond = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		cmd.Wait()
		// Its last lines may still be in the pipe: wait for them, unless
		// others (a master USR2 started) keep the pipe open.
		select {
		case <-eof:
		case <-time.After(500 * time.Millisecond):
		}
		p.mu.Lock()
		p.status = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			for _, l := range p.Lines() {
				t.Log(l.Raw)
			}
		}
	})
	return p
}

// Pid is the process's PID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Lines returns the lines so far.
func (p *Proc) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Find returns the lines for which match is true.
func (p *Proc) Find(match func(Line) bool) []Line {
	var out []Line
	for _, l := range p.Lines() {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// WaitFor waits until n lines match, and returns them. It goes on waiting
// after the process exits: others in its group may still write.
func (p *Proc) WaitFor(t testing.TB, timeout time.Duration, n int, what string, match func(Line) bool) []Line {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		cond, status := p.cond, p.status
		p.mu.Unlock()
		if got := p.Find(match); len(got) >= n {
			return got
		}
		select {
		case <-cond:
		case <-deadline:
			t.Fatalf("no %d × %s within %v (got %d; process status %v)", n, what, timeout, len(p.Find(match)), status)
		}
	}
}

// WaitReady waits until a master has had n generations whole and ready.
func (p *Proc) WaitReady(t testing.TB, n int) {
	t.Helper()
	p.WaitFor(t, 15*time.Second, n, `"generation ready"`, Msg("generation ready"))
}

// Wait waits for the process to exit and returns its exit code.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.status.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("process %d still running after %v", p.Pid(), timeout)
		return -1
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// AssertJSONLogs checks that every stderr line is one JSON object with
// level, ts and msg.
func (p *Proc) AssertJSONLogs(t testing.TB) {
	t.Helper()
	for _, l := range p.Lines() {
		if l.Fields == nil || l.Fields["level"] == nil || l.Fields["ts"] == nil || l.Fields["msg"] == nil {
			t.Errorf("stderr line is not a JSON object with level, ts and msg: %q", l.Raw)
		}
	}
}

// Children lists the live (not zombie) child processes of pid.
func Children(pid int) []int {
	var out []int
	for _, child := range pids() {
		if st, ppid := stat(child); st != "" && st != "Z" && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// Alive reports whether pid is a live process (not a zombie).
func Alive(pid int) bool {
	st, _ := stat(pid)
	return st != "" && st != "Z"
}

// Run runs the tests and then fails the run if a process it started
// outlived them: the whole of a TestMain that impersonates nothing.
func Run(m *testing.M) int {
	code := m.Run()
	if left := Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "processes outlived the tests: %v\n", left)
		code = 1
	}
	return code
}

// Leftovers lists the live processes this test run started, after giving
// killed ones a second to die. TestMain reports them: no process may
// outlive the tests.
func Leftovers() []int {
	var left []int
	WaitUntil(time.Second, func() bool {
		left = left[:0]
		mark := []byte(EnvRun + "=" + run + "\x00")
		for _, pid := range pids() {
			if pid == os.Getpid() || !Alive(pid) {
				continue
			}
			env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
			if bytes.HasPrefix(env, mark) || bytes.Contains(env, append([]byte{0}, mark...)) {
				left = append(left, pid)
			}
		}
		return len(left) == 0
	})
	return left
}

func pids() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// stat returns a process's state letter and parent PID ("" if gone).
func stat(pid int) (state string, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid
}

// WaitUntil polls cond every 20 ms until it holds or timeout passes.
func WaitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// FreeAddr returns a 127.0.0.1 address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Get fetches url on a fresh connection and returns status and body.
func Get(url string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Load drives GET requests over keep-alive connections with clients that
// never retry (loadgen): a connection reset or closed under a request
// fails it, as it would fail a POST or wrk's request.
type Load struct {
	load *loadgen.Load
}

// StartLoad requests url (http://host:port/path) over conns connections
// until ctx is done.
func StartLoad(ctx context.Context, url string, conns int) *Load {
	addr := strings.TrimPrefix(url, "http://")
	addr, _, _ = strings.Cut(addr, "/")
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	return &Load{load: loadgen.Start(ctx, conns, dial, loadgen.Get(url))}
}

// Stop waits for the load to end, logs and returns its counts.
func (l *Load) Stop(t testing.TB) (ok, failed int64) {
	t.Helper()
	r := l.load.Wait()
	t.Logf("load: %v", r)
	return r.OK(), r.Failed
}

// BusyLoops starts n processes that spin on the CPU until the test ends,
// so that what the test measures competes for the cores, as a reload on a
// busy production machine does.
func BusyLoops(t testing.TB, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.Env = append(os.Environ(), Env()...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
}

// Memory is a memory field of /proc/PID/status (VmRSS, VmHWM, …), in bytes.
func Memory(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d: %s %q: %w", pid, field, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no %s in its status", pid, field)
}

// MiB is n bytes in MiB, for messages.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }

// RaceEnabled reports whether this binary, and so any server it starts
// of itself, was built with -race: memory bounds then mean nothing.
func RaceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// CopyBinary writes a copy of the running test binary to path, executable
// by anyone: a release to swap, or a program another user may run.
func CopyBinary(t testing.TB, path string) {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, self, 0o755); err != nil {
		t.Fatal(err)
	}
}
