package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
)

// wrkRun is a wrk process driving a target.
type wrkRun struct {
	cmd *exec.Cmd
	url string
	out strings.Builder // stdout and stderr
}

// startWrk starts `wrk -t1 -c64 -d<d> --timeout 10s --latency` (loadgen.WrkCommand) on
// t. One thread: wrk then takes at most one of the machine's cores, and the
// servers compete for the rest on equal terms. wrk counts whole seconds,
// so d is rounded up to one. ctx's end kills it.
func (b *bench) startWrk(ctx context.Context, bin string, t target, d time.Duration) (*wrkRun, error) {
	w := &wrkRun{url: t.url()}
	w.cmd = loadgen.WrkCommand(ctx, bin, conns, d, w.url, t.header...)
	w.cmd.Stdout = &w.out
	w.cmd.Stderr = &w.out
	if err := b.groups.start(w.cmd); err != nil {
		return nil, fmt.Errorf("start wrk: %w", err)
	}
	return w, nil
}

// wait waits for wrk to end and reads its report. ctx is the one wrk was
// started with.
func (w *wrkRun) wait(ctx context.Context) (loadgen.WrkReport, error) {
	if err := w.cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return loadgen.WrkReport{}, ctx.Err()
		}
		return loadgen.WrkReport{}, fmt.Errorf("wrk %s: %w: %s", w.url, err, w.out.String())
	}
	r, err := loadgen.ParseWrk(w.out.String())
	if err != nil {
		return loadgen.WrkReport{}, fmt.Errorf("wrk %s: %w in:\n%s", w.url, err, w.out.String())
	}
	return r, nil
}

// errorLines are the lines of wrk's report that count failed requests:
// "Socket errors: connect 0, read 12, write 0, timeout 0" and
// "Non-2xx or 3xx responses: 5", each present only when not zero.
func (w *wrkRun) errorLines() []string {
	var lines []string
	for line := range strings.Lines(w.out.String()) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "Socket errors:") || strings.HasPrefix(line, "Non-2xx or 3xx responses:") {
			lines = append(lines, line)
		}
	}
	return lines
}

// wrk drives t with wrk for d and returns its figures.
func (b *bench) wrk(ctx context.Context, t target, d time.Duration) (measure, error) {
	w, err := b.startWrk(ctx, b.wrkBin, t, d)
	if err != nil {
		return measure{}, err
	}
	r, err := w.wait(ctx)
	if err != nil {
		return measure{}, err
	}
	return measure{rps: r.RPS, p50: r.P50, p99: r.P99, failed: r.Failed()}, nil
}
