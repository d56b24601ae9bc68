package main

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// hups is how many HUPs the reload-memory row sends.
const hups = 100

// memoryAfterReloads is the master's RSS after hups HUPs in a row, each
// waited for until its generation is ready, on a server of its own: a
// reload must leave nothing behind in the master, whose budget is the
// idle one (15 MiB).
func (b *bench) memoryAfterReloads(ctx context.Context) (row, error) {
	p, err := b.startServer(ctx, "ours (HUPs)")
	if err != nil {
		return row{}, err
	}
	defer p.stop()
	// settled reads the master's RSS once the older generations have
	// exited (a worker drains within a second of its replacement).
	settled := func() (int64, error) {
		for i := 0; len(children(p.master)) != 2; i++ {
			if i == 500 {
				return 0, fmt.Errorf("master %d has workers %v 5s after a HUP, want 2", p.master, children(p.master))
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return 0, err
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil { // the last one reaped
			return 0, err
		}
		return rss(p.master)
	}
	before, err := settled()
	if err != nil {
		return row{}, err
	}
	start := time.Now()
	for i := range hups {
		from := p.logged()
		if err := syscall.Kill(p.master, syscall.SIGHUP); err != nil {
			return row{}, fmt.Errorf("HUP to master %d: %w", p.master, err)
		}
		if _, err := p.waitLog(ctx, from, 30*time.Second, fmt.Sprintf("generation ready after HUP %d", i+1), generationReady(p.master)); err != nil {
			return row{}, err
		}
	}
	after, err := settled()
	if err != nil {
		return row{}, err
	}
	fmt.Fprintf(b.out, "\nmaster RSS across %d HUPs (%s): %.1f MiB before, %.1f after\n",
		hups, time.Since(start).Round(time.Millisecond), float64(before)/mib, float64(after)/mib)
	return row{
		key:    "rss-master-hups",
		metric: fmt.Sprintf("master RSS after %d HUPs", hups),
		figure: fmt.Sprintf("%.1f MiB (%.1f before)", float64(after)/mib, float64(before)/mib),
		target: "≤ 15 MiB",
		pass:   after <= 15*mib,
	}, nil
}
