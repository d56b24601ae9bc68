package workers_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/loadgen"
	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/internal/workers"
)

// answer is one request of a delayLoad.
type answer struct {
	path       string
	fresh      bool // sent on a connection dialed for it
	begin, end time.Time
	status     int   // 0 when it failed
	err        error // why it failed
}

// delayLoad requests a server through a stop with clients that never
// retry (loadgen.Client), and keeps every answer with its times.
type delayLoad struct {
	addr string
	wg   sync.WaitGroup
	mu   sync.Mutex
	all  []answer
}

// client requests path in a loop until ctx ends: over one keep-alive
// connection (a new one only after the server closed the last), or, if
// fresh, over a new connection each time, as a load balancer's health
// check or a new user does. It pauses pause between requests.
func (l *delayLoad) client(ctx context.Context, path string, fresh bool, pause time.Duration) {
	l.wg.Go(func() {
		c := loadgen.TCP(l.addr)
		defer c.Close()
		open := false // c holds a connection an answer came on
		for ctx.Err() == nil {
			if fresh {
				c.Close()
				open = false
			}
			req, _ := http.NewRequest("GET", "http://"+l.addr+path, nil)
			a := answer{path: path, fresh: !open, begin: time.Now()}
			resp, err := c.Do(req)
			a.end = time.Now()
			if err != nil {
				a.err, open = err, false
			} else {
				a.status, open = resp.Status, !resp.Close
			}
			l.mu.Lock()
			l.all = append(l.all, a)
			l.mu.Unlock()
			if err != nil || pause > 0 {
				time.Sleep(max(pause, 10*time.Millisecond))
			}
		}
	})
}

func (l *delayLoad) answers() []answer {
	l.wg.Wait()
	return l.all
}

// notifyTimes is a NOTIFY_SOCKET the test reads as systemd would, keeping
// the time the kernel received each datagram (SO_TIMESTAMP): a datagram
// sent before an HTTP answer was written has an earlier time than the
// moment a client read that answer, however late the test's goroutines run.
type notifyTimes struct {
	mu  sync.Mutex
	got []string
	at  []time.Time
}

func listenNotifyTimes(t *testing.T) (string, *notifyTimes) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1) })
	if serr != nil {
		t.Fatalf("SO_TIMESTAMP: %v", serr)
	}
	n := &notifyTimes{}
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 256)
		for {
			k, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			at := time.Now()
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				// A struct timeval of a 64-bit platform: seconds and
				// microseconds, each 8 bytes.
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMP && len(m.Data) == 16 {
					sec, usec := binary.NativeEndian.Uint64(m.Data), binary.NativeEndian.Uint64(m.Data[8:])
					at = time.Unix(int64(sec), int64(usec)*1000)
				}
			}
			n.mu.Lock()
			n.got = append(n.got, string(buf[:k]))
			n.at = append(n.at, at)
			n.mu.Unlock()
		}
	}()
	return path, n
}

// first is when the first datagram with a line starting with prefix came.
func (n *notifyTimes) first(prefix string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, d := range n.got {
		for line := range strings.Lines(d) {
			if strings.HasPrefix(line, prefix) {
				return n.at[i], true
			}
		}
	}
	return time.Time{}, false
}

// TestShutdownDelayUnderLoad: with --shutdown-delay 3s, a TERM under load
// from clients that never retry, with two busy loops competing for the
// cores. systemd hears STOPPING=1 first; then for the 3 s /readyz answers
// 503 while /healthz answers 200 on kept and on new connections, with no
// failure; then the drain: the last 200 comes about 3 s after the TERM,
// and connections made after it are refused. The TERM goes to the master,
// or to every process of the server at once, as systemd's stop does
// (KillMode=control-group): the workers then get the master's TERM too.
func TestShutdownDelayUnderLoad(t *testing.T) {
	skipIfShort(t)
	t.Run("TERM to the master", func(t *testing.T) { testShutdownDelayUnderLoad(t, false) })
	t.Run("TERM to every process", func(t *testing.T) { testShutdownDelayUnderLoad(t, true) })
}

func testShutdownDelayUnderLoad(t *testing.T, everyProcess bool) {
	const delay = 3 * time.Second
	sock, notes := listenNotifyTimes(t)
	proctest.BusyLoops(t, 2)
	p, url := prod(t, []string{"NOTIFY_SOCKET=" + sock}, "--workers", "2", "--shutdown-delay", "3s", "--graceful-timeout", "5s")
	if !proctest.WaitUntil(5*time.Second, func() bool { _, ok := notes.first("READY=1"); return ok }) {
		t.Fatal("no READY=1 within 5s")
	}
	workerPIDs := proctest.Children(p.Pid())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := &delayLoad{addr: strings.TrimPrefix(url, "http://")}
	for range 4 {
		load.client(ctx, "/healthz", false, 0)
	}
	for range 2 {
		load.client(ctx, "/healthz", true, 20*time.Millisecond)
	}
	load.client(ctx, workers.ReadinessPath, true, 50*time.Millisecond)
	load.client(ctx, workers.ReadinessPath, false, 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	term := time.Now()
	if everyProcess {
		syscall.Kill(-p.Pid(), syscall.SIGTERM) // its process group
	} else {
		p.Signal(t, syscall.SIGTERM)
	}
	code := p.Wait(t, 15*time.Second)
	exited := time.Since(term)
	time.Sleep(200 * time.Millisecond) // the clients see the sockets closed
	cancel()
	all := load.answers()
	since := func(at time.Time) time.Duration { return at.Sub(term) }

	if code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	if alive := slices.DeleteFunc(workerPIDs, func(pid int) bool { return !proctest.Alive(pid) }); len(alive) > 0 {
		t.Errorf("workers %v outlived their master", alive)
	}
	stopping, ok := notes.first("STOPPING=1")
	if !ok {
		t.Fatalf("no STOPPING=1 sent")
	}

	var (
		first503, last200                 time.Time // on the readiness endpoint; on /healthz
		firstRefused                      time.Time // a new connection to /healthz that failed
		ready200, ready503, readyAfter503 int
		okKept, okFresh, okFreshInDelay   int
		failed                            []string
	)
	for _, a := range all {
		inDelay := a.begin.After(term) && since(a.begin) < delay
		if a.path == workers.ReadinessPath {
			switch {
			case a.status == 503:
				ready503++
				if first503.IsZero() || a.end.Before(first503) {
					first503 = a.end
				}
			case a.status == 200 && a.begin.Before(term):
				ready200++
			case a.status == 200:
				readyAfter503++ // checked against first503 below
			case a.err != nil && a.fresh && since(a.begin) >= delay:
			default:
				failed = append(failed, fmt.Sprintf("%s at %v: %d %v", a.path, since(a.begin), a.status, a.err))
			}
			continue
		}
		switch {
		case a.status == 200:
			if a.fresh {
				okFresh++
				if inDelay {
					okFreshInDelay++
				}
			} else {
				okKept++
			}
			if a.end.After(last200) {
				last200 = a.end
			}
		case a.err != nil && a.fresh && since(a.begin) >= delay:
			// Refused once the drain has begun: the service is stopping.
			if firstRefused.IsZero() || a.begin.Before(firstRefused) {
				firstRefused = a.begin
			}
		default:
			failed = append(failed, fmt.Sprintf("%s at %v (fresh %v): %d %v", a.path, since(a.begin), a.fresh, a.status, a.err))
		}
	}
	// A 200 on the readiness endpoint after its first 503 would be a
	// worker that has not heard of the stop: only those begun before the
	// first 503 are allowed.
	for _, a := range all {
		if a.path == workers.ReadinessPath && a.status == 200 && a.begin.After(first503) {
			t.Errorf("%s answered 200 at %v, after the first 503 at %v", a.path, since(a.begin), since(first503))
		}
	}

	t.Logf("TERM (to every process: %v) with --shutdown-delay 3s under load, 2 busy loops: %d answers; /healthz 200 on kept connections %d, on new connections %d (%d begun within the delay); %s 200 before the TERM %d, 503 %d; failures %d",
		everyProcess, len(all), okKept, okFresh, okFreshInDelay, workers.ReadinessPath, ready200, ready503, len(failed))
	t.Logf("since the TERM: STOPPING=1 at %v, first 503 at %v, last /healthz 200 at %v, first refused new connection at %v, master exited at %v",
		since(stopping), since(first503), since(last200), since(firstRefused), exited)

	if len(failed) > 0 {
		t.Errorf("%d requests failed, want 0: %q", len(failed), failed[:min(len(failed), 10)])
	}
	if first503.IsZero() || ready200 == 0 {
		t.Fatalf("%s: %d answers 200 before the TERM, first 503 at %v; want 200s, then 503s", workers.ReadinessPath, ready200, first503)
	}
	// A worker that got systemd's TERM may answer 503 before its master
	// has told systemd what systemd itself began.
	if !everyProcess && !stopping.Before(first503) {
		t.Errorf("STOPPING=1 at %v, first 503 at %v: want STOPPING=1 first", since(stopping), since(first503))
	}
	if since(first503) > time.Second {
		t.Errorf("first 503 at %v after the TERM, want it within 1s", since(first503))
	}
	if ready503 < 10 {
		t.Errorf("%d answers 503 on %s, want at least 10 over the 3s delay", ready503, workers.ReadinessPath)
	}
	if okFreshInDelay < 10 {
		t.Errorf("%d new connections begun within the delay answered 200, want at least 10", okFreshInDelay)
	}
	if since(last200) < delay || since(last200) > delay+2*time.Second {
		t.Errorf("last /healthz 200 at %v after the TERM, want from 3s (the delay) to 5s", since(last200))
	}
	if firstRefused.IsZero() {
		t.Errorf("no new connection refused after the delay: want the drain to stop accepting")
	}
	if exited < delay || exited > delay+3*time.Second {
		t.Errorf("master exited %v after the TERM, want from 3s to 6s", exited)
	}
	p.AssertJSONLogs(t)
}

// TestShutdownDelayFastStop: INT or QUIT skip the delay, and end it when
// it has begun: the master is gone at once, not after --shutdown-delay.
func TestShutdownDelayFastStop(t *testing.T) {
	skipIfShort(t)
	for _, tt := range []struct {
		name  string
		first syscall.Signal // 0: none
		then  syscall.Signal
	}{
		{"INT", 0, syscall.SIGINT},
		{"QUIT", 0, syscall.SIGQUIT},
		{"TERM then INT", syscall.SIGTERM, syscall.SIGINT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, url := prod(t, nil, "--workers", "2", "--shutdown-delay", "10s")
			if tt.first != 0 {
				p.Signal(t, tt.first)
				p.WaitFor(t, 5*time.Second, 2, "both workers in their delay", proctest.Msg("shutdown delay: not ready, still serving"))
				if status, _, err := proctest.Get(url+workers.ReadinessPath, 2*time.Second); status != 503 {
					t.Errorf("GET %s in the delay: %d %v, want 503", workers.ReadinessPath, status, err)
				}
			}
			at := time.Now()
			p.Signal(t, tt.then)
			p.Wait(t, 5*time.Second)
			took := time.Since(at)
			t.Logf("%s with --shutdown-delay 10s: master exited %v after the %s", tt.name, took, workers.SignalName(tt.then))
			if took > 2*time.Second {
				t.Errorf("master exited %v after %s, want within 2s: a fast stop skips the delay", took, workers.SignalName(tt.then))
			}
		})
	}
}

// TestShutdownDelaySecondTERM: a second TERM during the delay ends it: the
// workers drain at once, and the master exits without waiting it out.
func TestShutdownDelaySecondTERM(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "2", "--shutdown-delay", "10s")
	p.Signal(t, syscall.SIGTERM)
	p.WaitFor(t, 5*time.Second, 2, "both workers in their delay", proctest.Msg("shutdown delay: not ready, still serving"))
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("GET /healthz in the delay: %d %v, want 200", status, err)
	}
	at := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 5*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	took := time.Since(at)
	t.Logf("second TERM with --shutdown-delay 10s: master exited %v after it", took)
	if took > 2*time.Second {
		t.Errorf("master exited %v after the second TERM, want within 2s", took)
	}
	p.WaitFor(t, time.Second, 1, "the master's log line", proctest.Msg("shutdown delay ended by a second TERM"))
	p.WaitFor(t, time.Second, 2, "each worker's log line", proctest.Msg("told to drain: shutdown delay cut short"))
}

// TestShutdownDelaySkippedByHUPAndUSR2: a HUP retires the old workers at
// once, without the delay, and so does the old master after a USR2; the
// readiness endpoint answers 200 throughout: the service goes on.
func TestShutdownDelaySkippedByHUPAndUSR2(t *testing.T) {
	skipIfShort(t)
	p, url := prod(t, nil, "--workers", "2", "--shutdown-delay", "10s")
	old := proctest.Children(p.Pid())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := &delayLoad{addr: strings.TrimPrefix(url, "http://")}
	load.client(ctx, workers.ReadinessPath, false, 10*time.Millisecond)
	load.client(ctx, workers.ReadinessPath, true, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	hup := time.Now()
	p.Signal(t, syscall.SIGHUP)
	p.WaitFor(t, 10*time.Second, 2, "the new generation ready", proctest.Msg("generation ready"))
	if !proctest.WaitUntil(5*time.Second, func() bool { return !slices.ContainsFunc(old, proctest.Alive) }) {
		t.Fatalf("old workers %v still running 5s after the new generation was ready: the delay was not skipped", old)
	}
	hupGone := time.Since(hup)
	p.WaitFor(t, time.Second, 2, "the old workers told to drain", proctest.Msg("told to drain"))

	usr2 := time.Now()
	p.Signal(t, syscall.SIGUSR2)
	next := newMaster(t, p, p.Pid())
	ready := time.Since(usr2)
	p.Wait(t, 5*time.Second)
	usr2Gone := time.Since(usr2)
	t.Cleanup(func() { syscall.Kill(next, syscall.SIGINT) })
	time.Sleep(200 * time.Millisecond)
	cancel()
	all := load.answers()
	bad := 0
	for _, a := range all {
		if a.status != 200 {
			bad++
			t.Errorf("%s at %v after the HUP: %d %v, want 200", a.path, a.begin.Sub(hup), a.status, a.err)
		}
	}
	t.Logf("--shutdown-delay 10s: old workers gone %v after a HUP; after a USR2 the new master ready in %v, the old one gone in %v; %s answered %d times, %d not 200",
		hupGone, ready, usr2Gone, workers.ReadinessPath, len(all), bad)
	if usr2Gone-ready > 3*time.Second {
		t.Errorf("the old master exited %v after the new one was ready, want within 3s: its workers retire without a delay", usr2Gone-ready)
	}
	if n := len(p.Find(proctest.Msg("told to drain"))); n != 4 {
		t.Errorf("%d workers told to drain, want 4: 2 at the HUP, 2 at the USR2", n)
	}
	if n := len(p.Find(proctest.Msg("shutdown delay: not ready, still serving"))); n != 0 {
		t.Errorf("%d workers spent a shutdown delay at a HUP or USR2, want none", n)
	}
}

// TestNoShutdownDelay: without --shutdown-delay a TERM drains at once, as
// it always did (the other TERM tests check that drain): no delay, and
// the master is gone about as soon as idle workers are.
func TestNoShutdownDelay(t *testing.T) {
	p, url := prod(t, nil, "--workers", "2")
	if status, body, err := proctest.Get(url+workers.ReadinessPath, 2*time.Second); status != 200 || body != "ready\n" {
		t.Errorf("GET %s: %d %q %v, want 200 \"ready\\n\"", workers.ReadinessPath, status, body, err)
	}
	at := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 5*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	took := time.Since(at)
	t.Logf("TERM without a shutdown delay, idle workers: master exited %v after it", took)
	if took > 2*time.Second {
		t.Errorf("master exited %v after TERM, want within 2s", took)
	}
	if n := len(p.Find(proctest.Msg("shutdown delay: not ready, still serving"))); n != 0 {
		t.Errorf("%d workers spent a shutdown delay, want none", n)
	}
}

// TestDevShutdownDelay: the dev server (one process, no master) takes the
// same delay on TERM: /readyz answers 503 while /healthz answers 200 on a
// new connection, and it exits only after the delay. An INT (Ctrl-C)
// skips it.
func TestDevShutdownDelay(t *testing.T) {
	skipIfShort(t)
	const delay = 2 * time.Second
	start := func(t *testing.T) (*proctest.Proc, string) {
		addr := proctest.FreeAddr(t)
		p := start(t, nil, "run", "--bind", addr, "--shutdown-delay", "2s")
		url := "http://" + addr
		if !proctest.WaitUntil(10*time.Second, func() bool { status, _, _ := proctest.Get(url+"/healthz", time.Second); return status == 200 }) {
			t.Fatal("the dev server does not answer within 10s")
		}
		return p, url
	}
	t.Run("TERM", func(t *testing.T) {
		p, url := start(t)
		term := time.Now()
		p.Signal(t, syscall.SIGTERM)
		p.WaitFor(t, 2*time.Second, 1, "the delay logged", func(l proctest.Line) bool {
			return strings.Contains(l.Raw, "shutdown delay: not ready, still serving")
		})
		ready, _, rerr := proctest.Get(url+workers.ReadinessPath, time.Second)
		health, _, herr := proctest.Get(url+"/healthz", time.Second)
		asked := time.Since(term)
		p.Wait(t, 10*time.Second)
		exited := time.Since(term)
		t.Logf("dev server, TERM with --shutdown-delay 2s: %s %d and /healthz %d (new connections) %v after it; exited after %v", workers.ReadinessPath, ready, health, asked, exited)
		if asked < delay && (ready != 503 || health != 200) {
			t.Errorf("within the delay: %s %d %v, /healthz %d %v; want 503 and 200", workers.ReadinessPath, ready, rerr, health, herr)
		}
		if exited < delay {
			t.Errorf("exited %v after TERM, want after the 2s delay", exited)
		}
	})
	t.Run("INT", func(t *testing.T) {
		p, _ := start(t)
		at := time.Now()
		p.Signal(t, syscall.SIGINT)
		p.Wait(t, 10*time.Second)
		if took := time.Since(at); took > time.Second {
			t.Errorf("exited %v after INT, want within 1s: INT skips the delay", took)
		}
	})
}
