package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// warmUp is how long the start of a reload row's load is left out of its
// steady p99: the connections are being opened.
const warmUp = 500 * time.Millisecond

// reload is a reload row: a signal sent to a master in the middle of a
// keep-alive load, every request of which must succeed.
type reload struct {
	name           string // HUP or USR2
	ok, failed     int64
	errs           []string      // the first few failures
	ready          time.Duration // from the signal to the new generation's "generation ready"
	steady, window time.Duration // p99 before the signal; p99 from the signal to ready + 1 s
}

// reloadUnderLoad drives p's /healthz with the Go generator (64
// connections) for -duration, at least long enough to hold the whole
// window; sends sig to the master half-way through; and measures:
//
//	|- warm-up -|---- steady ----|== window: signal .. new generation ready + 1 s ==|-- rest --|
//
// Latencies go to the phase in which their request ended. After a HUP the
// master stays; after a USR2 the new one (a child of the old: same process
// group, same stderr) must say its generation is ready and write the
// pidfile, and the old one must exit, all within the row.
func (b *bench) reloadUnderLoad(ctx context.Context, p *proc, sig syscall.Signal, pidfile string) (*reload, error) {
	r := &reload{name: "HUP"}
	if sig == syscall.SIGUSR2 {
		r.name = "USR2"
	}
	old, from := p.master, p.logged()
	loadCtx, cancel := context.WithCancel(ctx)
	l := startLoad(loadCtx, target{url: "http://" + p.addr + "/healthz"})
	defer func() { cancel(); l.wait() }()

	if err := sleep(ctx, max(b.opts.duration/2, warmUp+500*time.Millisecond)); err != nil {
		return nil, err
	}
	signalled := time.Since(l.start)
	if err := syscall.Kill(old, sig); err != nil {
		return nil, fmt.Errorf("%s to master %d: %w", r.name, old, err)
	}
	ready := generationReady(old)
	if sig == syscall.SIGUSR2 {
		ready = func(l logLine) bool { return l.msg == "generation ready" && l.pid != old }
	}
	line, err := p.waitLog(ctx, from, 30*time.Second, "new generation ready after "+r.name, ready)
	if err != nil {
		return nil, err
	}
	readyAt := time.Since(l.start)
	r.ready = readyAt - signalled
	if sig == syscall.SIGUSR2 {
		if err := waitPIDFile(ctx, pidfile, line.pid); err != nil {
			return nil, err
		}
		p.master = line.pid
	}
	windowEnd := readyAt + time.Second
	if err := sleep(ctx, max(windowEnd+250*time.Millisecond, b.opts.duration)-time.Since(l.start)); err != nil {
		return nil, err
	}
	cancel()
	l.wait()
	if sig == syscall.SIGUSR2 {
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("USR2: the old master %d still runs 30s after the new one was ready", old)
		}
	}

	r.ok, r.failed, r.errs = int64(len(l.samples)), l.failed, l.errs
	r.steady = percentile(latencies(l.samples, warmUp, signalled), 99)
	r.window = percentile(latencies(l.samples, signalled, windowEnd), 99)
	fmt.Fprintf(b.out, "\n%s under load: %d ok, %d failed %v; new generation ready %s after the signal; p99 steady %s, in the window %s\n",
		r.name, r.ok, r.failed, r.errs, ms(r.ready), ms(r.steady), ms(r.window))
	return r, nil
}

// rows sums r up for the final table.
func (r *reload) rows() []row {
	key := strings.ToLower(r.name)
	ratio := float64(r.window) / float64(r.steady)
	return []row{{
		key:    key + "-failed",
		metric: r.name + " under load: failed requests",
		figure: fmt.Sprintf("%d of %d (ready after %s)", r.failed, r.ok+r.failed, ms(r.ready)),
		target: "0",
		pass:   r.failed == 0,
		failed: r.failed,
	}, {
		key:    key + "-p99",
		metric: r.name + " under load: p99 reload window / steady",
		figure: fmt.Sprintf("%s / %s = %.2f×", ms(r.window), ms(r.steady), ratio),
		target: "≤ 2.00×",
		pass:   r.steady > 0 && ratio <= 2,
	}}
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
