package workers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/ipc"
)

// TestRelay checks what the master makes of a worker's output: JSON
// lines of the worker's own logger (its pid) pass whole, in one write
// each; an app's slog and log lines keep their level and message; other
// lines become "worker output", info on stdout, warn on stderr, and error
// from the start of a Go crash on; a line longer than the read buffer
// stays whole up to relayMaxLine.
func TestRelay(t *testing.T) {
	long := `{"msg":"` + strings.Repeat("x", 3*relayBuffer) + `","pid":42}`
	huge := strings.Repeat("y", relayMaxLine+relayBuffer)
	type line struct {
		level  zapcore.Level
		msg    string
		output string // a "worker output" line's
	}
	out := func(level zapcore.Level, output string) line { return line{level, plainMessage, output} }
	tests := []struct {
		name       string
		stream     string
		in         string
		wantStderr []string // each a Write
		want       []line
	}{
		{"own json", "stderr", "{\"msg\":\"a\",\"pid\":42}\n{\"msg\":\"b\",\"pid\":42}\r\n", []string{"{\"msg\":\"a\",\"pid\":42}\n", "{\"msg\":\"b\",\"pid\":42}\n"}, nil},
		{"app json", "stderr", "{\"time\":\"2026-01-02T03:04:05Z\",\"level\":\"INFO\",\"msg\":\"hi\",\"pid\":1}\n", nil, []line{{zapcore.InfoLevel, "hi", ""}}},
		{"slog text", "stderr", "time=2026-01-02T03:04:05.000Z level=DEBUG msg=\"a b\" k=v\n", nil, []line{{zapcore.DebugLevel, "a b", ""}}},
		{"log package", "stderr", "2026/01/02 03:04:05 hello\n", nil, []line{{zapcore.InfoLevel, "hello", ""}}},
		{"plain stdout", "stdout", "hello\n", nil, []line{out(zapcore.InfoLevel, "hello")}},
		{"plain stderr", "stderr", "hello\n", nil, []line{out(zapcore.WarnLevel, "hello")}},
		{"panic", "stderr", "before\npanic: boom\n\ngoroutine 1 [running]:\nlevel=INFO msg=still\n", nil, []line{
			out(zapcore.WarnLevel, "before"), out(zapcore.ErrorLevel, "panic: boom"), out(zapcore.ErrorLevel, ""),
			out(zapcore.ErrorLevel, "goroutine 1 [running]:"), {zapcore.InfoLevel, "still", ""}}},
		{"panic on stdout is not a crash", "stdout", "panic: boom\n", nil, []line{out(zapcore.InfoLevel, "panic: boom")}},
		{"not quite json", "stderr", "{not json}\n", nil, []line{out(zapcore.WarnLevel, "{not json}")}},
		{"last line without newline", "stderr", "SIGABRT: abort", nil, []line{out(zapcore.ErrorLevel, "SIGABRT: abort")}},
		{"json longer than the buffer", "stderr", long + "\n", []string{long + "\n"}, nil},
		{"longer than relayMaxLine", "stderr", huge + "\n", nil, nil}, // pieces, checked below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			var stderr writes
			m := &Master{log: zap.New(core), stderr: &stderr}
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				w.WriteString(tt.in)
				w.Close()
			}()
			m.relay(&worker{id: 1, pid: 42, gen: 1}, r, tt.stream)

			var got []line
			var output []string
			for _, e := range logs.All() {
				c := e.ContextMap()
				if c["worker_pid"] != int64(42) || c["stream"] != tt.stream || e.LoggerName != "app" {
					t.Errorf("log line %q %v named %q, want worker_pid 42, stream %s, named app", e.Message, c, e.LoggerName, tt.stream)
				}
				o, _ := c["output"].(string)
				got = append(got, line{e.Level, e.Message, o})
				output = append(output, o)
			}
			if tt.name == "longer than relayMaxLine" {
				if got := strings.Join(output, ""); got != huge || len(output) < 2 {
					t.Errorf("%d bytes in %d pieces, want the %d bytes in at least 2", len(got), len(output), len(huge))
				}
				for _, piece := range output {
					if len(piece) > relayMaxLine+relayBuffer {
						t.Errorf("a piece of %d bytes, want at most %d", len(piece), relayMaxLine+relayBuffer)
					}
				}
				return
			}
			if !equal(stderr, tt.wantStderr) {
				t.Errorf("writes to stderr %q, want %q", abbrev(stderr), abbrev(tt.wantStderr))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("lines logged %v, want %v", got, tt.want)
			}
		})
	}
}

// writes records each Write.
type writes []string

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, string(p))
	return len(p), nil
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

func abbrev(ss []string) []string {
	var out []string
	for _, s := range ss {
		if len(s) > 40 {
			s = s[:20] + "…(" + strconv.Itoa(len(s)) + " bytes)"
		}
		out = append(out, s)
	}
	return out
}

// TestNoticeStop checks that a tick far later than due moves the times
// the deadlines count from by the delay, except those set since.
func TestNoticeStop(t *testing.T) {
	base := time.Now()
	const stopped = 10 * time.Second
	resumed := base.Add(tick + stopped)
	core, logs := observer.New(zapcore.DebugLevel)
	before := base.Add(-2 * time.Second) // seen 2s before the last tick
	silent := &worker{state: ready, lastSeen: before}
	since := &worker{state: ready, lastSeen: resumed.Add(-time.Millisecond)} // a frame read on the resume
	draining := &worker{state: draining, lastSeen: before, stopAt: before, stopWait: 5 * time.Second}
	m := &Master{log: zap.New(core), lastTick: base, workers: map[int]*worker{1: silent, 2: since, 3: draining}}

	m.noticeStop(resumed)
	if got, want := silent.lastSeen, before.Add(stopped); !got.Equal(want) {
		t.Errorf("lastSeen of a worker seen before the stop: moved by %v, want by %v", got.Sub(before), stopped)
	}
	if got, want := since.lastSeen, resumed.Add(-time.Millisecond); !got.Equal(want) {
		t.Errorf("lastSeen set after the resume: moved to %v, want unchanged %v", got, want)
	}
	if got := draining.stopAt.Sub(before); got != stopped {
		t.Errorf("stopAt of a draining worker: moved by %v, want %v", got, stopped)
	}
	if n := logs.FilterMessage("master was not running, worker deadlines moved").Len(); n != 1 {
		t.Errorf("%d log lines about the stop, want 1", n)
	}
	m.checkDeadlines(resumed) // would signal (a nil cmd: panic) if any were due
	if !silent.abortAt.IsZero() || draining.killed {
		t.Error("a worker healthy before the stop was aborted or killed after it")
	}

	// Ticks on time, or a little late, move nothing.
	seen := silent.lastSeen
	for _, late := range []time.Duration{0, 50 * time.Millisecond, stopNoticed - time.Millisecond} {
		m.noticeStop(m.lastTick.Add(tick + late))
		if !silent.lastSeen.Equal(seen) {
			t.Errorf("a tick %v late moved lastSeen by %v, want unchanged", late, silent.lastSeen.Sub(seen))
		}
	}
}

// TestAwaitExitTakesNoThread checks that waiting for children does not
// hold an OS thread per child, as exec.Cmd's Wait alone does.
func TestAwaitExitTakesNoThread(t *testing.T) {
	const children = 20
	threadsBefore := threads(t)
	done := make(chan *exec.Cmd, children)
	for range children {
		cmd := exec.Command("sleep", "0.5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			awaitExit(cmd.Process.Pid)
			cmd.Wait()
			done <- cmd
		}()
	}
	time.Sleep(200 * time.Millisecond)
	during := threads(t)
	for range children {
		if cmd := <-done; cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("child %d: %v, want exit 0", cmd.Process.Pid, cmd.ProcessState)
		}
	}
	t.Logf("threads: %d before, %d while %d children ran", threadsBefore, during, children)
	if during >= threadsBefore+children/2 {
		t.Errorf("%d threads while waiting for %d children (%d before), want about as many as before", during, children, threadsBefore)
	}

	// A child that has exited already: at once.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	awaitExit(cmd.Process.Pid)
	if took := time.Since(start); took > time.Second {
		t.Errorf("awaitExit for a child that had exited took %v", took)
	}
	cmd.Wait()
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// TestWorkerFileKeepsSocketNonBlocking checks that passing a listener to
// a child leaves the socket non-blocking: the mode belongs to the socket,
// shared with every worker that accepts on it.
func TestWorkerFileKeepsSocketNonBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := workerFile(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("true")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	var flags int
	rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		t.Error("the listening socket is blocking after a child inherited it, want non-blocking")
	}
}

// TestWorkerKeepsItsGenerationsLimits checks that the master holds each
// worker to the deadlines and limits of the Config it was started with,
// not to the newest generation's (m.cfg, here as strict as can be): a
// HUP changes the terms of the workers it starts only.
func TestWorkerKeepsItsGenerationsLimits(t *testing.T) {
	now := time.Now()
	newest := Config{Timeout: time.Millisecond, BootTimeout: time.Millisecond, GracefulTimeout: time.Millisecond, MaxMemory: 1}
	own := Config{Timeout: time.Minute, BootTimeout: time.Minute, GracefulTimeout: time.Minute}
	// process starts a real child for a worker record, so that a signal
	// the master sends reaches something.
	process := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	serving := &worker{id: 1, gen: 1, cfg: own, state: ready, lastSeen: now.Add(-10 * time.Second), cmd: process()}
	booting := &worker{id: 2, gen: 1, cfg: own, state: booting, lastSeen: now.Add(-time.Second), cmd: process()}
	m := &Master{log: zap.NewNop(), cfg: newest, gen: 2, workers: map[int]*worker{1: serving, 2: booting}}

	m.checkDeadlines(now)
	if !serving.abortAt.IsZero() {
		t.Errorf("a worker silent for 10s with its timeout of %v was aborted (the newest generation's timeout is %v)", own.Timeout, newest.Timeout)
	}
	if !booting.abortAt.IsZero() {
		t.Errorf("a worker booting for 1s with its boot timeout of %v was aborted (the newest generation's is %v)", own.BootTimeout, newest.BootTimeout)
	}

	serving.pid = os.Getpid() // an RSS to read: this process's
	m.heartbeat(serving, ipc.Frame{Type: ipc.TypeHeartbeat}, now)
	if serving.recycle {
		t.Errorf("a worker without a memory limit was recycled at %d bytes (the newest generation's limit is %d)", serving.rss, newest.MaxMemory)
	}

	m.stopWorker(serving, syscall.SIGTERM, "replaced", exitReload)
	if want := own.GracefulTimeout + killGrace; serving.stopWait != want {
		t.Errorf("a worker told to drain is given %v, want its own graceful timeout plus %v: %v", serving.stopWait, killGrace, want)
	}
}
