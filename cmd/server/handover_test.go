package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/loadgen"
	"github.com/remuda/remuda/internal/proctest"
	"github.com/remuda/remuda/server"
)

// The handover contract (DESIGN.md): whenever a worker or a master
// retires, no request a client sent is lost, whether or not the client
// retries and however busy the CPUs are. These tests load the demo app with
// clients that never retry — wrk, and loadgen's keep-alive clients — while
// two busy loops compete for the cores, and count every failure.

// envHandoverApp makes the test binary run handoverApp.
const envHandoverApp = "REMUDA_TEST_HANDOVER_APP"

// handoverApp is the demo app with two routes that make a worker retire:
// /stuck never returns (a timeout recycle), /leak keeps mb MiB resident (a
// memory recycle).
func handoverApp() {
	app := newApp()
	app.HandleFunc("GET /stuck", func(http.ResponseWriter, *http.Request) { select {} })
	app.HandleFunc("GET /leak", func(w http.ResponseWriter, r *http.Request) {
		var mb int
		fmt.Sscan(r.URL.Query().Get("mb"), &mb)
		// Memory outside the Go heap, made resident by the kernel (as a C
		// library's would be): it counts in the RSS without putting the
		// collector under GOMEMLIMIT's pressure, or the race detector's
		// shadow memory to work, and it is never unmapped.
		b, err := unix.Mmap(-1, 0, mb<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err == nil {
			err = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "kept %d MiB", mb)
	})
	server.Main(app)
}

// handoverSite is the handover app in prod with 2 workers, and an access
// token of a user of its database.
type handoverSite struct {
	*site
	addr, pidfile, token string
}

func startHandoverSite(t *testing.T, flags ...string) *handoverSite {
	t.Helper()
	dir := t.TempDir()
	addr := proctest.FreeAddr(t)
	db := filepath.Join(dir, "server.db")
	pidfile := filepath.Join(dir, "server.pid")
	args := append([]string{"run", "--prod", "--workers", "2", "--bind", addr, "--database", "sqlite:" + db, "--pidfile", pidfile}, flags...)
	s := &site{url: "http://" + addr, db: db}
	addUser(t, s.store(t), "alice", "alice-password-1", true)
	s.p = proctest.Start(t, os.Args[0], []string{envHandoverApp + "=1", "SERVER_SECRET_KEY=" + secret}, args...)
	s.p.WaitReady(t, 1)
	access, _ := login(t, s, "alice", "alice-password-1")
	return &handoverSite{site: s, addr: addr, pidfile: pidfile, token: access}
}

// drained waits until n workers have logged the end of their drain.
func (h *handoverSite) drained(t *testing.T, n int) {
	t.Helper()
	h.p.WaitFor(t, 15*time.Second, n, `workers "drained"`, proctest.Msg("drained"))
}

// wrkBin is wrk's path; the test skips without it.
func wrkBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (Debian package wrk; .ci/run installs it)")
	}
	return bin
}

// TestHandoverUnderWrk retires workers in every way there is while wrk
// (-t1 -c64: no retries; a reset or an EOF is a socket error) loads
// /healthz or the JWT-protected /hello/: zero socket errors and zero
// non-2xx answers in every run.
func TestHandoverUnderWrk(t *testing.T) {
	if testing.Short() {
		t.Skip("12 runs of wrk under load")
	}
	wrk := wrkBin(t)
	proctest.BusyLoops(t, 2)

	handovers := []struct {
		name  string
		flags []string
		// act retires workers during the load and waits until the log
		// shows it done.
		act func(t *testing.T, h *handoverSite)
	}{
		{"two HUPs", nil, func(t *testing.T, h *handoverSite) {
			h.p.Signal(t, syscall.SIGHUP)
			h.p.WaitReady(t, 2)
			h.drained(t, 2)
			h.p.Signal(t, syscall.SIGHUP)
			h.p.WaitReady(t, 3)
			h.drained(t, 4)
		}},
		{"USR2", nil, func(t *testing.T, h *handoverSite) {
			old := h.p.Pid()
			h.p.Signal(t, syscall.SIGUSR2)
			h.p.WaitFor(t, 15*time.Second, 1, "the new master ready", func(l proctest.Line) bool {
				return l.Msg() == "generation ready" && l.Int("pid") != old
			})
			if code := h.p.Wait(t, 15*time.Second); code != 0 {
				t.Errorf("old master exit code %d, want 0", code)
			}
			h.drained(t, 2)
		}},
		{"TTIN then TTOU", nil, func(t *testing.T, h *handoverSite) {
			h.p.Signal(t, syscall.SIGTTIN)
			h.p.WaitFor(t, 10*time.Second, 3, "a third worker ready", proctest.Msg("worker ready"))
			h.p.Signal(t, syscall.SIGTTOU)
			h.drained(t, 1)
		}},
		{"max-requests", []string{"--max-requests", "300", "--max-requests-jitter", "50"}, func(t *testing.T, h *handoverSite) {
			h.drained(t, 10)
		}},
		{"max-worker-memory", []string{"--max-worker-memory", "200M"}, func(t *testing.T, h *handoverSite) {
			if status, body, err := proctest.Get(h.url+"/leak?mb=256", 10*time.Second); status != 200 {
				t.Fatalf("GET /leak: %d %q %v", status, body, err)
			}
			h.p.WaitFor(t, 10*time.Second, 1, "the memory recycle", proctest.Msg("worker over memory limit, recycling it"))
			h.drained(t, 1)
		}},
		{"timeout recycle", []string{"--timeout", "2s"}, func(t *testing.T, h *handoverSite) {
			// Another client's request is stuck: it gets 503, and its
			// worker is replaced, then drained.
			if status, _, err := proctest.Get(h.url+"/stuck", 10*time.Second); status != http.StatusServiceUnavailable {
				t.Errorf("GET /stuck: %d %v, want 503", status, err)
			}
			h.p.WaitFor(t, 10*time.Second, 1, "the timeout recycle", proctest.Msg("worker asks to be recycled"))
			h.drained(t, 1)
		}},
	}
	for _, path := range []string{"/healthz", "/hello/"} {
		for _, ho := range handovers {
			t.Run(strings.Trim(path, "/")+" "+ho.name, func(t *testing.T) {
				h := startHandoverSite(t, ho.flags...)
				var header []string
				if path == "/hello/" {
					header = bearer(h.token)
				}
				// wrk runs until interrupted (it then reports, as at its
				// end): from a second before the handover to a second after
				// it is done, however long it takes on a loaded machine.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := loadgen.WrkCommand(ctx, wrk, 64, time.Minute, h.url+path, header...)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				start := time.Now()
				ho.act(t, h)
				took := time.Since(start)
				time.Sleep(time.Second)
				cmd.Process.Signal(os.Interrupt)
				if err := cmd.Wait(); err != nil {
					t.Fatalf("wrk: %v\n%s", err, out.String())
				}
				rep, err := loadgen.ParseWrk(out.String())
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s under wrk -c64 with 2 busy loops: %d requests, %d socket errors, %d non-2xx, %.0f req/s (the handover took %v)",
					ho.name, rep.Requests, rep.SocketErrors, rep.Non2xx, rep.RPS, took.Round(time.Millisecond))
				if rep.SocketErrors != 0 || rep.Non2xx != 0 || rep.Requests == 0 {
					t.Errorf("%s on %s: %d socket errors, %d non-2xx of %d requests; want 0 and 0\n%s",
						ho.name, path, rep.SocketErrors, rep.Non2xx, rep.Requests, out.String())
				}
			})
		}
	}
}

// TestVerifyThroughReloads POSTs to /api/token/verify/ on keep-alive
// connections that never retry — a POST is never retried by a correct
// client — through 10 HUPs and 2 USR2, on a busy machine: no failure.
func TestVerifyThroughReloads(t *testing.T) {
	if testing.Short() {
		t.Skip("10 HUPs and 2 USR2 under load")
	}
	proctest.BusyLoops(t, 2)
	h := startHandoverSite(t)
	body := `{"token":"` + h.token + `"}`
	verify := func() *http.Request {
		req, err := http.NewRequest("POST", h.url+"/api/token/verify/", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", h.addr, 5*time.Second) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := loadgen.Start(ctx, 8, dial, verify)

	master := h.p.Pid()
	ready := 1
	for i := range 10 {
		time.Sleep(200 * time.Millisecond)
		syscall.Kill(master, syscall.SIGHUP)
		ready++
		h.p.WaitFor(t, 15*time.Second, ready, fmt.Sprintf("generation ready after HUP %d", i+1), proctest.Msg("generation ready"))
	}
	for i := range 2 {
		time.Sleep(200 * time.Millisecond)
		old := master
		syscall.Kill(old, syscall.SIGUSR2)
		ready++
		line := h.p.WaitFor(t, 15*time.Second, ready, fmt.Sprintf("the new master ready after USR2 %d", i+1), proctest.Msg("generation ready"))
		master = line[ready-1].Int("pid")
		if master == old {
			t.Fatalf("USR2 %d: the generation ready is the old master's %d", i+1, old)
		}
		if !proctest.WaitUntil(15*time.Second, func() bool { return !proctest.Alive(old) }) {
			t.Fatalf("USR2 %d: old master %d still running", i+1, old)
		}
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	r := load.Wait()
	t.Logf("POST /api/token/verify/ through 10 HUPs and 2 USR2: %v", r)
	if r.Failed != 0 || r.OK() == 0 {
		t.Errorf("%d of %d verifications failed, want 0", r.Failed, r.OK()+r.Failed)
	}
	syscall.Kill(master, syscall.SIGTERM)
	if !proctest.WaitUntil(15*time.Second, func() bool { return !proctest.Alive(master) }) {
		t.Errorf("the last master %d still runs 15s after TERM", master)
	}
}

// TestIdleConnectionAtHUP: a keep-alive connection idle when a HUP retires
// its worker still gets an answer to a request sent within the grace, with
// Connection: close; one left idle past the grace is closed with a FIN,
// not a reset.
func TestIdleConnectionAtHUP(t *testing.T) {
	h := startHandoverSite(t, "--workers", "1")
	open := func() *loadgen.Client {
		c := loadgen.TCP(h.addr)
		t.Cleanup(c.Close)
		resp, err := c.Do(mustGet(t, h.url+"/healthz"))
		if err != nil || resp.Status != 200 || resp.Close {
			t.Fatalf("first request: %v %v, want a keep-alive 200", resp, err)
		}
		return c
	}
	within := open()
	raw := rawConn(t, h.addr)

	h.p.Signal(t, syscall.SIGHUP)
	h.p.WaitReady(t, 2)
	h.p.WaitFor(t, 5*time.Second, 1, "the old worker draining", proctest.Msg("draining"))
	resp, err := within.Do(mustGet(t, h.url+"/healthz"))
	if err != nil {
		t.Fatalf("request on an idle connection just after the HUP: %v, want an answer", err)
	}
	if resp.Status != 200 || string(resp.Body) != "ok" || !resp.Close || !resp.Reused {
		t.Errorf("got %d %q close=%v reused=%v, want 200 \"ok\" with Connection: close on the old connection", resp.Status, resp.Body, resp.Close, resp.Reused)
	}

	// The other connection is left idle past the grace.
	h.drained(t, 1)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("idle connection past the grace: read %d bytes, %v; want EOF (a FIN, not a reset)", n, err)
	}
	drained := h.p.Find(proctest.Msg("drained"))[0]
	if drained.Int("closed_after_response") != 1 || drained.Int("closed_idle") != 1 {
		t.Errorf("drain line %s: want 1 connection closed after an answer and 1 closed idle", drained.Raw)
	}
}

// rawConn opens a connection that carried one request and answer.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return c
}

func mustGet(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
