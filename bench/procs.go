package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// groups tracks the processes the harness starts. Each one leads a
// process group of its own, and what it starts stays in that group: a
// master's workers, and the master a USR2 started (tableflip does not
// change the group) with its own workers. Killing the groups therefore
// kills everything, whatever became of the process we started.
type groups struct {
	mu   sync.Mutex
	pids []int
}

// start starts cmd as the leader of a new process group that killAll
// kills. Attributes cmd already has (loadgen.WrkCommand's) are kept.
func (g *groups) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pgid = true, 0
	// Pdeathsig is a backstop for a harness killed by SIGKILL, where no
	// deferred killAll runs; it reaches the leader only.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Holding the lock across Start leaves killAll no gap between a
	// started process and its record.
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	g.pids = append(g.pids, cmd.Process.Pid)
	return nil
}

// killAll sends SIGKILL to every group started. A group already gone is
// no error.
func (g *groups) killAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, pid := range g.pids {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// logLine is one line of a server's stderr: Remuda's prod logs are one
// JSON object per line, with msg and pid.
type logLine struct {
	raw string
	msg string
	pid int
}

// proc is a started process — a Remuda master or the baseline — with its
// stderr read line by line, by anyone in its group (workers, and a master
// that USR2 started, write to the same pipe).
type proc struct {
	name   string
	cmd    *exec.Cmd
	addr   string // host:port it serves on
	master int    // the current master's pid: cmd's, until a USR2

	mu     sync.Mutex
	lines  []logLine
	more   chan struct{} // closed and replaced at each new line, and at EOF
	eof    bool          // every writer has closed the pipe: no more lines
	exited chan struct{} // closed once cmd has exited and been reaped
}

// spawn starts bin with args and env in a group of its own, serving on
// addr, and returns at once.
func (b *bench) spawn(name, bin, addr string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = b.env
	// A pipe of our own rather than StderrPipe: the process may exit while
	// others in its group still write to it.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = w
	err = b.groups.start(cmd)
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, addr: addr, master: cmd.Process.Pid,
		more: make(chan struct{}), exited: make(chan struct{})}
	go p.read(r)
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// read collects stderr lines until every writer is gone.
func (p *proc) read(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := logLine{raw: sc.Text()}
		var fields struct {
			Msg string `json:"msg"`
			PID int    `json:"pid"`
		}
		if json.Unmarshal(sc.Bytes(), &fields) == nil {
			l.msg, l.pid = fields.Msg, fields.PID
		}
		p.mu.Lock()
		p.lines = append(p.lines, l)
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof = true
	close(p.more)
	p.more = make(chan struct{})
	p.mu.Unlock()
}

// logged is the number of lines so far: waitLog's from.
func (p *proc) logged() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLog waits for a line after the first from lines for which match is
// true, and returns it. It gives up when timeout passes, ctx ends, or no
// line can come any more.
func (p *proc) waitLog(ctx context.Context, from int, timeout time.Duration, what string, match func(logLine) bool) (logLine, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		lines, more, eof := p.lines[from:], p.more, p.eof
		p.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, nil
			}
		}
		from += len(lines)
		if eof {
			return logLine{}, fmt.Errorf("%s: no %s: its log ended:\n%s", p.name, what, p.tail(10))
		}
		select {
		case <-more:
		case <-deadline.C:
			return logLine{}, fmt.Errorf("%s: no %s within %v:\n%s", p.name, what, timeout, p.tail(10))
		case <-ctx.Done():
			return logLine{}, ctx.Err()
		}
	}
}

// tail is the last n lines, for error messages.
func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, l := range p.lines[max(0, len(p.lines)-n):] {
		sb.WriteString("\t" + l.raw + "\n")
	}
	return sb.String()
}

// stop kills the process's group and waits for its leader to be reaped.
// A benchmark has no use for a graceful stop, and SIGKILL cannot be
// ignored.
func (p *proc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// generationReady matches the master's line once all its workers of a
// generation serve.
func generationReady(master int) func(logLine) bool {
	return func(l logLine) bool { return l.msg == "generation ready" && l.pid == master }
}

// startServer starts `server run --prod --workers 2` on a free port, with
// the harness's database and secret key and the extra flags, and waits
// until its first generation is ready.
func (b *bench) startServer(ctx context.Context, name string, flags ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := b.spawn(name, b.serverBin, addr, b.serverArgs(addr, flags...)...)
	if err != nil {
		return nil, err
	}
	if _, err := p.waitLog(ctx, 0, 30*time.Second, `"generation ready"`, generationReady(p.master)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// serverArgs is the command line of a production server on addr.
func (b *bench) serverArgs(addr string, flags ...string) []string {
	return append([]string{"run", "--prod", "--workers", "2", "--bind", addr,
		"--database", "sqlite:" + b.db, "--access-token-lifetime", "1h"}, flags...)
}

// startBaseline starts bench/baseline on a free port and waits until it
// answers.
func (b *bench) startBaseline(ctx context.Context) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := b.spawn("baseline", b.baselineBin, addr, "-addr", addr)
	if err != nil {
		return nil, err
	}
	if _, err := firstOK(ctx, p, "http://"+addr+"/healthz", 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// freeAddr returns a 127.0.0.1 address whose port is free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
