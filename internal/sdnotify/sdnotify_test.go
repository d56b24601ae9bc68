package sdnotify

import (
	"bytes"
	"fmt"
	"io"
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

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/proctest"
)

// testTimeout bounds every wait on a socket or a process, so that a bug
// fails the test instead of hanging it.
const testTimeout = 10 * time.Second

// Started with envActivated set, the test binary is a socket-activated
// daemon: see activated.
const envActivated = "REMUDA_TEST_SDNOTIFY_ACTIVATED"

// envSetPID makes the activated child set LISTEN_PID to its own PID, which
// its parent cannot know before starting it.
const envSetPID = "REMUDA_TEST_SETPID"

func TestMain(m *testing.M) {
	if os.Getenv(envActivated) != "" {
		os.Exit(activated())
	}
	os.Exit(proctest.Run(m))
}

// activated plays a socket-activated daemon: it takes its sockets with
// Listeners, accepts one connection on each and writes the socket's name
// to it. It returns the exit code, having written any failure to stderr.
func activated() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return 1
	}
	if os.Getenv(envSetPID) == "1" {
		// systemd (like systemd-socket-activate) sets LISTEN_PID in the
		// forked child, between fork and exec, the one moment the child's
		// PID is known and its environment still its own. os/exec has no
		// such moment, so this shim does it first thing in the child.
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	ls, err := Listeners()
	if err != nil {
		return fail("Listeners: %v", err)
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := os.LookupEnv(k); ok {
			return fail("after Listeners: %s=%q still set", k, v)
		}
	}
	if len(ls) != 2 {
		return fail("Listeners: got %d listeners, want 2", len(ls))
	}
	for i, l := range ls {
		flags, err := unix.FcntlInt(uintptr(listenFDsStart+i), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			return fail("fd %d (%s): flags %#x, error %v: want FD_CLOEXEC", listenFDsStart+i, l.Name, flags, err)
		}
		ln, err := net.FileListener(l.File)
		if err != nil {
			return fail("fd %d (%s): FileListener: %v", listenFDsStart+i, l.Name, err)
		}
		l.File.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(testTimeout))
		c, err := ln.Accept()
		if err != nil {
			return fail("fd %d (%s): accept: %v", listenFDsStart+i, l.Name, err)
		}
		io.WriteString(c, l.Name)
		c.Close()
		ln.Close()
	}
	return 0
}

// TestListenersActivated starts this binary as systemd would a
// socket-activated service: two listening sockets at fds 3 and 4 and
// LISTEN_FDS, LISTEN_FDNAMES and (through envSetPID) LISTEN_PID set. The
// child answers each connection with the name it got for that socket.
func TestListenersActivated(t *testing.T) {
	names := []string{"http", "admin"}
	var files []*os.File
	var addrs []string
	for range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		// The child's copies only: a connection the child does not take
		// is refused instead of waiting in our backlog.
		ln.Close()
		defer f.Close()
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
	}

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), proctest.Env()...)
	cmd.Env = append(cmd.Env, envActivated+"=1", envSetPID+"=1",
		"LISTEN_FDS=2", "LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.ExtraFiles = files // fds 3 and 4
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for _, f := range files {
		f.Close()
	}

	for i, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			t.Fatalf("dial fd %d: %v; child stderr: %s", 3+i, err, &stderr)
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != names[i] {
			t.Errorf("fd %d: got name %q (error %v), want %q", 3+i, got, err, names[i])
		}
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("child: %v; stderr: %s", err, &stderr)
		}
	case <-time.After(testTimeout):
		t.Errorf("child did not exit; stderr: %s", &stderr)
	}
}

// fakeEnv is an environment for listeners: getenv reads it, unsetenv
// deletes from it.
type fakeEnv map[string]string

func (e fakeEnv) getenv(k string) string { return e[k] }
func (e fakeEnv) unsetenv(k string)      { delete(e, k) }

// TestListenersNotForUs covers what returns before any fd is touched,
// through the fake environment.
func TestListenersNotForUs(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name    string
		env     fakeEnv
		wantErr []string // substrings; nil: no error
	}{
		{name: "not activated", env: fakeEnv{}},
		{name: "another process", env: fakeEnv{"LISTEN_PID": "4243", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}},
		{name: "no LISTEN_FDS", env: fakeEnv{"LISTEN_PID": "4242"}},
		{name: "LISTEN_FDS not a number", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "abc"},
			wantErr: []string{"LISTEN_FDS", `"abc"`}},
		{name: "LISTEN_FDS zero", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "0"},
			wantErr: []string{"LISTEN_FDS", `"0"`}},
		{name: "LISTEN_FDS negative", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "-1"},
			wantErr: []string{"LISTEN_FDS", `"-1"`}},
		{name: "LISTEN_FDS absurd", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "1025"},
			wantErr: []string{"LISTEN_FDS", `"1025"`, "1024"}},
		{name: "LISTEN_PID not a number", env: fakeEnv{"LISTEN_PID": "me", "LISTEN_FDS": "1"},
			wantErr: []string{"LISTEN_PID", `"me"`}},
		{name: "LISTEN_PID zero", env: fakeEnv{"LISTEN_PID": "0", "LISTEN_FDS": "1"},
			wantErr: []string{"LISTEN_PID", `"0"`}},
		{name: "too few names", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http"},
			wantErr: []string{"LISTEN_FDNAMES", `"http"`, "1 names", "LISTEN_FDS=2"}},
		{name: "too many names", env: fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
			wantErr: []string{"LISTEN_FDNAMES", `"a:b"`, "2 names", "LISTEN_FDS=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := listeners(tt.env.getenv, tt.env.unsetenv, pid)
			if ls != nil {
				t.Errorf("env %v: got %d listeners, want none", tt.env, len(ls))
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("got error %v, want none", err)
			case tt.wantErr != nil && err == nil:
				t.Errorf("got no error, want one naming %q", tt.wantErr)
			case err != nil:
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("got error %q, want it to contain %q", err, s)
					}
				}
			}
			for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
				if v, ok := tt.env[k]; ok {
					t.Errorf("after listeners: %s=%q still set", k, v)
				}
			}
		})
	}
}

// TestListenersUnsetsEnv goes through the real environment.
func TestListenersUnsetsEnv(t *testing.T) {
	tests := []struct {
		name    string
		pid     int
		fds     string
		wantErr bool
	}{
		{"another process", os.Getpid() + 1, "2", false},
		{"LISTEN_FDS=abc", os.Getpid(), "abc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LISTEN_PID", strconv.Itoa(tt.pid))
			t.Setenv("LISTEN_FDS", tt.fds)
			t.Setenv("LISTEN_FDNAMES", "a:b")
			ls, err := Listeners()
			if ls != nil || (err != nil) != tt.wantErr {
				t.Errorf("LISTEN_PID=%d LISTEN_FDS=%s: got %v, %v; want nil and error %v", tt.pid, tt.fds, ls, err, tt.wantErr)
			}
			for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("after Listeners: %s=%q still set", k, v)
				}
			}
		})
	}
}

func TestParseListenEnvNames(t *testing.T) {
	tests := []struct {
		name  string
		fds   string
		names string
		want  []string
	}{
		{"names", "3", "http:admin:metrics", []string{"http", "admin", "metrics"}},
		{"no names", "2", "", []string{"unknown", "unknown"}},
		{"empty name kept", "3", "a::c", []string{"a", "", "c"}},
		{"one", "1", "server.socket", []string{"server.socket"}},
		{"the most", "1024", "", slices.Repeat([]string{"unknown"}, 1024)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fakeEnv{"LISTEN_PID": "7", "LISTEN_FDS": tt.fds, "LISTEN_FDNAMES": tt.names}
			got, err := parseListenEnv(env.getenv, 7)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("LISTEN_FDS=%q LISTEN_FDNAMES=%q: got %q, %v; want %q", tt.fds, tt.names, got, err, tt.want)
			}
		})
	}
}

// FuzzListenEnv feeds arbitrary LISTEN_FDS and LISTEN_FDNAMES, for this
// very process, to the parser (which touches no fd).
func FuzzListenEnv(f *testing.F) {
	f.Fuzz(func(t *testing.T, fds, fdnames string) {
		env := fakeEnv{"LISTEN_PID": "7", "LISTEN_FDS": fds, "LISTEN_FDNAMES": fdnames}
		names, err := parseListenEnv(env.getenv, 7)
		if err != nil {
			if names != nil {
				t.Fatalf("LISTEN_FDS=%q LISTEN_FDNAMES=%q: got %d names with error %v", fds, fdnames, len(names), err)
			}
			if !strings.HasPrefix(err.Error(), "sdnotify: LISTEN_FD") {
				t.Fatalf("LISTEN_FDS=%q LISTEN_FDNAMES=%q: error %q names no variable", fds, fdnames, err)
			}
			return
		}
		if fds == "" {
			if names != nil {
				t.Fatalf("LISTEN_FDS unset: got %d names, want none", len(names))
			}
			return
		}
		n, convErr := strconv.Atoi(fds)
		if convErr != nil || n < 1 || n > MaxListenFDs || len(names) != n {
			t.Fatalf("LISTEN_FDS=%q LISTEN_FDNAMES=%q: got %d names, no error", fds, fdnames, len(names))
		}
		if fdnames != "" && strings.Join(names, ":") != fdnames {
			t.Fatalf("LISTEN_FDNAMES=%q: got names %q", fdnames, names)
		}
	})
}

// listenNotify listens on a unixgram socket at name (a path, or "@..." for
// an abstract one) as systemd does, and returns it with the environment
// that points a Notifier at it.
func listenNotify(t *testing.T, name string) (*net.UnixConn, func(string) string) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, fakeEnv{"NOTIFY_SOCKET": name}.getenv
}

// notifySockets are the two kinds of NOTIFY_SOCKET, each a fresh name.
func notifySockets(t *testing.T) []struct{ kind, name string } {
	dir, err := os.MkdirTemp("", "sdnotify") // t.TempDir may pass sun_path's 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return []struct{ kind, name string }{
		{"path", filepath.Join(dir, "notify")},
		{"abstract", fmt.Sprintf("@remuda-test-%d-%s", os.Getpid(), t.Name())},
	}
}

// recv reads one datagram.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, s := range notifySockets(t) {
		t.Run(s.kind, func(t *testing.T) {
			conn, getenv := listenNotify(t, s.name)
			n, err := New(getenv)
			if err != nil || !n.Enabled() {
				t.Fatalf("New with NOTIFY_SOCKET=%q: got enabled %v, error %v; want enabled", s.name, n.Enabled(), err)
			}
			for _, state := range []string{"READY=1", "STATUS=4 workers\nWATCHDOG=1"} {
				if err := n.Notify(state); err != nil {
					t.Fatalf("Notify(%q): %v", state, err)
				}
				if got := recv(t, conn); got != state {
					t.Errorf("Notify(%q): got datagram %q", state, got)
				}
			}
		})
	}
}

func TestReloading(t *testing.T) {
	for _, s := range notifySockets(t) {
		t.Run(s.kind, func(t *testing.T) {
			conn, getenv := listenNotify(t, s.name)
			n, err := New(getenv)
			if err != nil {
				t.Fatal(err)
			}
			before := monotonicUsec(t)
			if err := n.Reloading(); err != nil {
				t.Fatalf("Reloading: %v", err)
			}
			after := monotonicUsec(t)
			got := recv(t, conn)
			lines := strings.Split(got, "\n")
			if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
				t.Fatalf("got datagram %q, want RELOADING=1 and MONOTONIC_USEC=", got)
			}
			usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || usec < before || usec > after {
				t.Errorf("got %s, want a MONOTONIC_USEC from %d to %d", lines[1], before, after)
			}
		})
	}
}

func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1e3
}

// TestNotifyConcurrent: datagrams from goroutines sharing a Notifier
// arrive whole, none lost or interleaved.
func TestNotifyConcurrent(t *testing.T) {
	const senders = 8
	conn, getenv := listenNotify(t, notifySockets(t)[0].name)
	n, err := New(getenv)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range senders {
		want = append(want, fmt.Sprintf("STATUS=worker %d ready\nWATCHDOG=1", i))
	}
	var wg sync.WaitGroup
	for _, state := range want {
		wg.Go(func() {
			if err := n.Notify(state); err != nil {
				t.Errorf("Notify(%q): %v", state, err)
			}
		})
	}
	wg.Wait()
	var got []string
	for range senders {
		got = append(got, recv(t, conn))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("got datagrams %q, want %q", got, want)
	}
}

func TestNotifyDisabled(t *testing.T) {
	var nilNotifier *Notifier
	unset, err := New(fakeEnv{}.getenv)
	if err != nil {
		t.Fatalf("New with NOTIFY_SOCKET unset: %v", err)
	}
	for name, n := range map[string]*Notifier{"NOTIFY_SOCKET unset": unset, "nil Notifier": nilNotifier} {
		t.Run(name, func(t *testing.T) {
			if n.Enabled() {
				t.Error("got Enabled true, want false")
			}
			if err := n.Notify("READY=1"); err != nil {
				t.Errorf("Notify: got error %v, want nil", err)
			}
			if err := n.Reloading(); err != nil {
				t.Errorf("Reloading: got error %v, want nil", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, v := range []string{"run/systemd/notify", "notify", "@", "/", "vsock:2:1234"} {
		t.Run(v, func(t *testing.T) {
			n, err := New(fakeEnv{"NOTIFY_SOCKET": v}.getenv)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("NOTIFY_SOCKET=%q", v)) {
				t.Errorf("NOTIFY_SOCKET=%q: got error %v, want one naming the variable and value", v, err)
			}
			if n.Enabled() {
				t.Errorf("NOTIFY_SOCKET=%q: got an enabled Notifier", v)
			}
		})
	}
}

// TestNewGetenv: a nil getenv reads the process environment, and a
// Notifier whose socket is gone returns the send's error.
func TestNewGetenv(t *testing.T) {
	name := notifySockets(t)[0].name
	t.Setenv("NOTIFY_SOCKET", name)
	n, err := New(nil)
	if err != nil || !n.Enabled() {
		t.Fatalf("New(nil) with NOTIFY_SOCKET=%q: got enabled %v, error %v", name, n.Enabled(), err)
	}
	if err := n.Notify("READY=1"); err == nil {
		t.Errorf("Notify to %q, where nobody listens: got no error", name)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	tests := []struct {
		name    string
		env     fakeEnv
		want    time.Duration
		wantErr string // substring; "": no error
	}{
		{name: "unset", env: fakeEnv{}},
		{name: "no pid", env: fakeEnv{"WATCHDOG_USEC": "1000000"}, want: 500 * time.Millisecond},
		{name: "this process", env: fakeEnv{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}, want: 15 * time.Second},
		{name: "other process", env: fakeEnv{"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": strconv.Itoa(os.Getpid() + 1)}},
		{name: "garbage usec", env: fakeEnv{"WATCHDOG_USEC": "soon"}, wantErr: `WATCHDOG_USEC="soon"`},
		{name: "zero usec", env: fakeEnv{"WATCHDOG_USEC": "0"}, wantErr: `WATCHDOG_USEC="0"`},
		{name: "negative usec", env: fakeEnv{"WATCHDOG_USEC": "-1"}, wantErr: `WATCHDOG_USEC="-1"`},
		{name: "infinity", env: fakeEnv{"WATCHDOG_USEC": "18446744073709551615"}, wantErr: "WATCHDOG_USEC="},
		{name: "garbage pid", env: fakeEnv{"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}, wantErr: `WATCHDOG_PID="x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WatchdogInterval(tt.env.getenv)
			if got != tt.want {
				t.Errorf("env %v: got %v, want %v", tt.env, got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("env %v: got error %v, want none", tt.env, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("env %v: got error %v, want one containing %q", tt.env, err, tt.wantErr)
			}
		})
	}
}
