package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
)

// warmUp is how long the start of a reload row's load is left out of its
// steady p99: the connections are being opened.
const warmUp = 500 * time.Millisecond

// wrkReloadMin is the shortest wrk run of a wrk reload row: the signal
// comes at least warmUp into it and 1.5 s before its end.
const wrkReloadMin = 2 * time.Second

// handover is a reload signal sent to a master, and the new generation
// it started.
type handover struct {
	name  string // HUP or USR2
	old   int    // the master signalled
	sent  time.Time
	ready time.Duration // from the signal to the new generation's "generation ready"
}

// signal sends sig (HUP or USR2) to p's master and waits until the new
// generation is ready. After a HUP the master stays; after a USR2 the new
// one (a child of the old: same process group, same stderr) must say its
// generation is ready and write the pidfile, and p.master becomes it.
// The old master's exit is awaited by oldMasterGone.
func (b *bench) signal(ctx context.Context, p *proc, sig syscall.Signal, pidfile string) (*handover, error) {
	h := &handover{name: "HUP", old: p.master}
	if sig == syscall.SIGUSR2 {
		h.name = "USR2"
	}
	from := p.logged()
	h.sent = time.Now()
	if err := syscall.Kill(h.old, sig); err != nil {
		return nil, fmt.Errorf("%s to master %d: %w", h.name, h.old, err)
	}
	ready := generationReady(h.old)
	if sig == syscall.SIGUSR2 {
		ready = func(l logLine) bool { return l.msg == "generation ready" && l.pid != h.old }
	}
	line, err := p.waitLog(ctx, from, 30*time.Second, "new generation ready after "+h.name, ready)
	if err != nil {
		return nil, err
	}
	h.ready = time.Since(h.sent)
	if sig == syscall.SIGUSR2 {
		if err := waitPIDFile(ctx, pidfile, line.pid); err != nil {
			return nil, err
		}
		p.master = line.pid
	}
	return h, nil
}

// oldMasterGone waits, after a USR2, for the old master to exit. It may
// not be our child (after a second USR2 the old master is the first one's
// child, reparented): its /proc entry is watched.
func (h *handover) oldMasterGone(ctx context.Context) error {
	if h.name != "USR2" {
		return nil
	}
	for range 3000 {
		if gone(h.old) {
			return nil
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("USR2: the old master %d still runs 30s after the new one was ready", h.old)
}

// reload is a reload row driven by loadgen clients: a signal sent to a
// master in the middle of a keep-alive load, every request of which must
// succeed.
type reload struct {
	name           string // HUP or USR2
	ok, failed     int64
	errs           []string      // the first few failures, timed from the signal
	ready          time.Duration // from the signal to the new generation's "generation ready"
	steady, window time.Duration // p99 before the signal; p99 from the signal to ready + 1 s
}

// reloadUnderLoad drives p's /healthz with loadgen clients (64
// connections, no retries) for -duration, at least long enough to hold
// the whole window; sends sig to the master half-way through; and
// measures:
//
//	|- warm-up -|---- steady ----|== window: signal .. new generation ready + 1 s ==|-- rest --|
//
// Latencies go to the phase in which their request ended. After a USR2
// the old master must exit within the row.
func (b *bench) reloadUnderLoad(ctx context.Context, p *proc, sig syscall.Signal, pidfile string) (*reload, error) {
	loadCtx, cancel := context.WithCancel(ctx)
	l := startLoad(loadCtx, healthz(p))
	defer func() { cancel(); l.Wait() }()

	if err := sleep(ctx, max(b.opts.duration/2, warmUp+500*time.Millisecond)); err != nil {
		return nil, err
	}
	h, err := b.signal(ctx, p, sig, pidfile)
	if err != nil {
		return nil, err
	}
	signalled := h.sent.Sub(l.Start)
	windowEnd := signalled + h.ready + time.Second
	if err := sleep(ctx, max(windowEnd+250*time.Millisecond, b.opts.duration)-time.Since(l.Start)); err != nil {
		return nil, err
	}
	cancel()
	res := l.Wait()
	if err := h.oldMasterGone(ctx); err != nil {
		return nil, err
	}

	r := &reload{name: h.name, ok: res.OK(), failed: res.Failed, ready: h.ready}
	for _, e := range res.Errors {
		r.errs = append(r.errs, fromSignal(e, signalled))
	}
	r.steady = percentile(latencies(res.Samples, warmUp, signalled), 99)
	r.window = percentile(latencies(res.Samples, signalled, windowEnd), 99)
	fmt.Fprintf(b.out, "\n%s under Go load (loadgen, %d connections, no retries): %d ok, %d failed; new generation ready %s after the signal; p99 steady %s, in the window %s\n",
		r.name, conns, r.ok, r.failed, ms(r.ready), ms(r.steady), ms(r.window))
	if r.failed > 0 {
		fmt.Fprintf(b.out, "  first failures, timed from the signal:\n")
		for _, e := range r.errs {
			fmt.Fprintf(b.out, "  %s\n", e)
		}
	}
	return r, nil
}

// fromSignal times a loadgen error, "1.234s: reused connection: …" (from
// the start of the load), from the signal instead: "+12ms reused
// connection: …". An error in another form is returned as it is.
func fromSignal(e string, signalled time.Duration) string {
	at, msg, ok := strings.Cut(e, "s: ")
	sec, err := strconv.ParseFloat(at, 64)
	if !ok || err != nil {
		return e
	}
	return fmt.Sprintf("%+.0fms %s", (sec-signalled.Seconds())*1000, msg)
}

// sockets matches the addresses in a net error, "read tcp
// 127.0.0.1:59514->127.0.0.1:40379: ", left out of the final table.
var sockets = regexp.MustCompile(`(read|write) tcp \S+->\S+: `)

// rows sums r up for the final table.
func (r *reload) rows() []row {
	key := strings.ToLower(r.name)
	ratio := float64(r.window) / float64(r.steady)
	figure := fmt.Sprintf("%d of %d (ready after %s)", r.failed, r.ok+r.failed, ms(r.ready))
	if len(r.errs) > 0 {
		figure += ", first: " + sockets.ReplaceAllString(r.errs[0], "")
	}
	return []row{{
		key:    key + "-failed",
		metric: r.name + " under Go load: failed requests",
		figure: figure,
		target: "0",
		pass:   r.failed == 0,
		failed: r.failed,
	}, {
		key:    key + "-p99",
		metric: r.name + " under Go load: p99 reload window / steady",
		figure: fmt.Sprintf("%s / %s = %.2f×", ms(r.window), ms(r.steady), ratio),
		target: "≤ 2.00×",
		pass:   r.steady > 0 && ratio <= 2,
	}}
}

// reloadUnderWrk drives p's /healthz with wrk (64 connections, no
// retries) for -duration, at least wrkReloadMin, and sends sig to the
// master half-way through, or 1.5 s before the end if that is earlier, so
// that the load goes on past the new generation's start. Every request
// must succeed: wrk's socket errors (a reset, an EOF before the answer)
// and non-2xx answers fail the row. It returns the row; without wrk, a
// skipped row.
func (b *bench) reloadUnderWrk(ctx context.Context, p *proc, sig syscall.Signal, pidfile string) (row, error) {
	r := row{key: "hup-wrk", metric: "HUP under wrk: socket errors / non-2xx", target: "0 / 0"}
	if sig == syscall.SIGUSR2 {
		r.key, r.metric = "usr2-wrk", "USR2 under wrk: socket errors / non-2xx"
	}
	if b.reloadWrk == "" {
		r.figure, r.skip = "not run: wrk not on PATH", true
		return r, nil
	}
	d := time.Duration(loadgen.WrkSeconds(max(b.opts.duration, wrkReloadMin))) * time.Second
	wrkCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.startWrk(wrkCtx, b.reloadWrk, healthz(p), d)
	if err != nil {
		return row{}, err
	}
	abort := func(err error) (row, error) {
		cancel()
		w.cmd.Wait()
		return row{}, err
	}
	if err := sleep(ctx, min(d/2, d-1500*time.Millisecond)); err != nil {
		return abort(err)
	}
	h, err := b.signal(ctx, p, sig, pidfile)
	if err != nil {
		return abort(err)
	}
	rep, err := w.wait(wrkCtx)
	if err != nil {
		return row{}, err
	}
	after := time.Since(h.sent) - h.ready // wrk's run after the new generation was ready, give or take its exit
	if err := h.oldMasterGone(ctx); err != nil {
		return row{}, err
	}

	fmt.Fprintf(b.out, "\n%s under wrk (wrk -t1 -c%d -d%ds, no retries): %d answered, %d socket errors, %d non-2xx; new generation ready %s after the signal, %s before wrk's end\n",
		h.name, conns, loadgen.WrkSeconds(d), rep.Requests, rep.SocketErrors, rep.Non2xx, ms(h.ready), ms(after))
	for _, line := range w.errorLines() {
		fmt.Fprintf(b.out, "  wrk: %s\n", line)
	}
	r.figure = fmt.Sprintf("%d / %d, %d answered (ready after %s)", rep.SocketErrors, rep.Non2xx, rep.Requests, ms(h.ready))
	r.pass = rep.Failed() == 0
	r.failed = rep.Failed()
	return r, nil
}

// waitPIDFile waits until path holds pid.
func waitPIDFile(ctx context.Context, path string, pid int) error {
	var got string
	for range 500 {
		b, _ := os.ReadFile(path)
		if got = strings.TrimSpace(string(b)); got == strconv.Itoa(pid) {
			return nil
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("pidfile %s holds %q 5s after the new master %d was ready", path, got, pid)
}
