package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
)

// side is one half of a throughput comparison.
type side struct {
	name string
	target
	// after, if not nil, runs after each load run of this side: a check
	// that the run did what it should, and a clean-up.
	after func() error
}

// round is one round of a comparison: each side driven once, the same way.
type round struct {
	a, b  measure
	ratio float64 // a's req/s over b's
}

// comparison is a throughput row: side a against side b, over rounds.
type comparison struct {
	key, metric string
	min         float64 // the target: the median ratio is at least this
	a, b        side
	rounds      []round
}

// compare drives c's two sides alternately with the same load, for
// -duration each, -rounds times, and prints each round as it ends. Odd
// rounds start with b, so that neither side always runs first, in the
// wake of the other's load (its garbage, the CPU's frequency).
func (b *bench) compare(ctx context.Context, c *comparison) error {
	fmt.Fprintf(b.out, "\n%s (%s, rounds: %d)\n", c.metric, b.loadCmd(), b.opts.rounds)
	fmt.Fprintf(b.out, "%6s  %12s %9s %9s  %12s %9s %9s  %6s\n",
		"round", c.a.name+" req/s", "p50", "p99", c.b.name+" req/s", "p50", "p99", "ratio")
	for i := range b.opts.rounds {
		var r round
		first, second := &r.a, &r.b
		sa, sb := &c.a, &c.b
		if i%2 == 1 {
			first, second, sa, sb = second, first, sb, sa
		}
		var err error
		if *first, err = b.drive(ctx, sa); err != nil {
			return err
		}
		if *second, err = b.drive(ctx, sb); err != nil {
			return err
		}
		r.ratio = r.a.rps / r.b.rps
		c.rounds = append(c.rounds, r)
		fmt.Fprintf(b.out, "%6d  %12.0f %9s %9s  %12.0f %9s %9s  %6.2f%s\n", i+1,
			r.a.rps, ms(r.a.p50), ms(r.a.p99), r.b.rps, ms(r.b.p50), ms(r.b.p99), r.ratio, failures(r.a.failed+r.b.failed))
	}
	fmt.Fprintf(b.out, "%6s  %66.2f\n", "median", c.median())
	return nil
}

// drive runs one load on s: wrk if the harness uses it, else the Go
// generator.
func (b *bench) drive(ctx context.Context, s *side) (measure, error) {
	var m measure
	var err error
	if b.wrkBin != "" {
		m, err = b.wrk(ctx, s.target, b.opts.duration)
	} else {
		m, err = goLoad(ctx, s.target, b.opts.duration)
	}
	if err != nil {
		return measure{}, err
	}
	if s.after != nil {
		if err := s.after(); err != nil {
			return measure{}, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return m, nil
}

// loadCmd says how each side is driven.
func (b *bench) loadCmd() string {
	if b.wrkBin != "" {
		return fmt.Sprintf("wrk -t1 -c%d -d%ds --timeout 10s --latency", conns, loadgen.WrkSeconds(b.opts.duration))
	}
	return fmt.Sprintf("Go generator, %d connections, %v", conns, b.opts.duration)
}

// median is the median of the rounds' ratios.
func (c *comparison) median() float64 {
	var ratios []float64
	for _, r := range c.rounds {
		ratios = append(ratios, r.ratio)
	}
	return median(ratios)
}

// row sums c up for the final table. A failed request on either side
// fails the row: a ratio of errors measures nothing.
func (c *comparison) row() row {
	var each []string
	var failed int64
	for _, r := range c.rounds {
		each = append(each, fmt.Sprintf("%.2f", r.ratio))
		failed += r.a.failed + r.b.failed
	}
	med := c.median()
	return row{
		key:    c.key,
		metric: c.metric,
		figure: fmt.Sprintf("median %.2f (rounds: %s)%s", med, strings.Join(each, " "), failures(failed)),
		target: fmt.Sprintf("≥ %.2f", c.min),
		pass:   med >= c.min && failed == 0,
		failed: failed,
	}
}

// median is the middle value of xs, or the mean of the middle two.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ms formats d in milliseconds: 1.18ms.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// failures is a note for a figure measured with failed requests.
func failures(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d FAILED requests", n)
}
