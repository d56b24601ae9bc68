package workers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/server"
)

// The test binary impersonates a Remuda app: started with envApp set it
// runs testApp, whose server.Main makes it a master (the test starts it
// with "run --prod") or, re-executed by that master, a worker.
const envApp = "REMUDA_TEST_APP"

// testRun marks the processes this test run starts (envApp's value), so
// that leftovers finds them and only them.
var testRun = strconv.Itoa(os.Getpid())

// Knobs of the test app, read at boot in every worker.
const (
	envBootDelay  = "REMUDA_TEST_BOOT_DELAY"   // sleep this long in OnBoot
	envBootFailIf = "REMUDA_TEST_BOOT_FAIL_IF" // fail OnBoot while this file exists
)

// bootError is what the test app's OnBoot returns when told to fail.
const bootError = "connect to database: connection refused"

func TestMain(m *testing.M) {
	if os.Getenv(envApp) != "" {
		testApp()
		return
	}
	code := m.Run()
	// Killed processes take a moment to die: give them a second.
	waitUntil(time.Second, func() bool { return len(leftovers()) == 0 })
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "processes outlived the tests: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// noRaceExitSleep keeps a process built with -race from sleeping a second
// at exit (the race detector's default), which would skew stop timings.
func noRaceExitSleep() string {
	return "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// leftovers lists the processes still running as the test app: a master
// or worker some test failed to stop.
func leftovers() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		mark := envApp + "=" + testRun + "\x00"
		if bytes.Contains(env, []byte("\x00"+mark)) || bytes.HasPrefix(env, []byte(mark)) {
			out = append(out, pid)
		}
	}
	return out
}

func testApp() {
	app := server.NewApp()
	app.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	app.HandleFunc("GET /pid", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, os.Getpid()) })
	app.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		io.WriteString(w, "slept")
	})
	// stuck never returns: the per-request timeout must answer for it.
	app.HandleFunc("GET /stuck", func(http.ResponseWriter, *http.Request) { select {} })
	// wedge spins without a function call; run with GOMAXPROCS=1 and
	// GODEBUG=asyncpreemptoff=1 it holds the only P forever, so the whole
	// worker, heartbeat included, falls silent: a hung process.
	app.HandleFunc("GET /wedge", func(http.ResponseWriter, *http.Request) { spin() })
	app.OnBoot = func(server.Config) error {
		if d, err := time.ParseDuration(os.Getenv(envBootDelay)); err == nil {
			time.Sleep(d)
		}
		if f := os.Getenv(envBootFailIf); f != "" {
			if _, err := os.Stat(f); err == nil {
				return errors.New(bootError)
			}
		}
		return nil
	}
	server.Main(app)
}

//go:noinline
func spin() {
	for {
	}
}

// proc is a master (or dev server) started by a test, with its stderr
// parsed line by line.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []logLine
	cond   chan struct{} // closed and replaced at each new line
	done   chan struct{} // closed when the process has exited
	status *os.ProcessState
}

// logLine is one stderr line: its fields if it is JSON, raw always.
type logLine struct {
	raw    string
	fields map[string]any
}

func (l logLine) msg() string { s, _ := l.fields["msg"].(string); return s }

func (l logLine) int(key string) int {
	f, _ := l.fields[key].(float64)
	return int(f)
}

// start runs the test app with args (e.g. "run", "--prod", ...) and env
// added to the test's environment. Every process it starts, workers
// included (they share its process group), is killed when the test ends.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBinary(t, os.Args[0], env, args...)
}

func startBinary(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), envApp+"="+testRun, noRaceExitSleep()), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, cond: make(chan struct{}), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := logLine{raw: sc.Text()}
			json.Unmarshal(sc.Bytes(), &l.fields)
			p.mu.Lock()
			p.lines = append(p.lines, l)
			close(p.cond)
			p.cond = make(chan struct{})
			p.mu.Unlock()
		}
		cmd.Wait()
		p.mu.Lock()
		p.status = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			for _, l := range p.snapshot() {
				t.Log(l.raw)
			}
		}
	})
	return p
}

func (p *proc) snapshot() []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]logLine(nil), p.lines...)
}

// find returns the lines for which match is true.
func (p *proc) find(match func(logLine) bool) []logLine {
	var out []logLine
	for _, l := range p.snapshot() {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor waits until n lines match, and returns them.
func (p *proc) waitFor(t *testing.T, timeout time.Duration, n int, what string, match func(logLine) bool) []logLine {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		cond := p.cond
		p.mu.Unlock()
		if got := p.find(match); len(got) >= n {
			return got
		}
		select {
		case <-cond:
		case <-p.done:
			if got := p.find(match); len(got) >= n {
				return got
			}
			t.Fatalf("process exited (%v) before %d × %s", p.status, n, what)
		case <-deadline:
			t.Fatalf("no %d × %s within %v (got %d)", n, what, timeout, len(p.find(match)))
		}
	}
}

// msg matches lines with that message.
func msg(m string) func(logLine) bool {
	return func(l logLine) bool { return l.msg() == m }
}

// waitReady waits until n generations are whole and ready.
func (p *proc) waitReady(t *testing.T, n int) {
	t.Helper()
	p.waitFor(t, 15*time.Second, n, `"generation ready"`, msg("generation ready"))
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.status.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("process %d still running after %v", p.cmd.Process.Pid, timeout)
		return -1
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// assertJSONLogs checks that every stderr line is one JSON object with
// level, ts and msg.
func (p *proc) assertJSONLogs(t *testing.T) {
	t.Helper()
	for _, l := range p.snapshot() {
		if l.fields == nil || l.fields["level"] == nil || l.fields["ts"] == nil || l.fields["msg"] == nil {
			t.Errorf("stderr line is not a JSON object with level, ts and msg: %q", l.raw)
		}
	}
}

// children lists the live (not zombie) child processes of pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		rest := string(b[bytes.LastIndexByte(b, ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	return len(rest) > 0 && rest[0] != 'Z'
}

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get fetches url with a fresh connection and returns status and body.
func get(url string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// load drives GET url over conns keep-alive connections until ctx is done.
// A request fails when it errors or is not answered 200.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
}

func startLoad(ctx context.Context, url string, conns int) *load {
	l := &load{}
	for range conns {
		// One transport per goroutine: one keep-alive connection each, as
		// many clients (or nginx's upstream keepalive pool) would hold.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 10 {
					l.errs = append(l.errs, time.Now().Format("15:04:05.000000 ")+err.Error())
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stop waits for the load to end and reports it.
func (l *load) stop(t *testing.T) (ok, failed int64) {
	t.Helper()
	l.wg.Wait()
	ok, failed = l.ok.Load(), l.failed.Load()
	t.Logf("load: %d ok, %d failed %v", ok, failed, l.errs)
	return ok, failed
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
