package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// conns is the number of keep-alive connections every load run holds,
// with wrk and with the Go generator alike.
const conns = 64

// measure is one load run's figures, from wrk or from the Go generator.
type measure struct {
	rps      float64       // answered requests per second
	p50, p99 time.Duration // latency percentiles
	failed   int64         // transport errors and answers other than 2xx or 3xx (Go: other than 200)
}

// target is what a load run requests: GET url with header.
type target struct {
	url    string
	header http.Header
}

// sample is one answered request: when it ended, counted from the start
// of its load, and how long it took.
type sample struct {
	end, latency time.Duration
}

// load is a run of the Go load generator: conns goroutines, each with a
// keep-alive connection of its own, requesting one target in a loop.
// It stands in for wrk when wrk is not installed, and drives the reload
// rows, which need every request's time and outcome.
type load struct {
	start time.Time
	wg    sync.WaitGroup

	mu      sync.Mutex
	samples []sample // of requests answered 200
	failed  int64
	errs    []string // the first few failures
	elapsed time.Duration
}

// startLoad requests t over conns connections until ctx ends. Requests in
// flight then are let finish: a cancelled request is not a failure of the
// server.
func startLoad(ctx context.Context, t target) *load {
	l := &load{start: time.Now()}
	for range conns {
		// One transport per goroutine: one keep-alive connection each, as
		// many clients (or nginx's upstream keepalive pool) would hold.
		// Like any client, a transport retries an idempotent request once
		// on a fresh connection when a reused one turns out closed.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			var mine []sample
			for ctx.Err() == nil {
				begin := time.Now()
				err := get(c, t)
				end := time.Now()
				if err == nil {
					mine = append(mine, sample{end: end.Sub(l.start), latency: end.Sub(begin)})
					continue
				}
				l.mu.Lock()
				l.failed++
				if len(l.errs) < 5 {
					l.errs = append(l.errs, fmt.Sprintf("%.3fs: %v", end.Sub(l.start).Seconds(), err))
				}
				l.mu.Unlock()
			}
			l.mu.Lock()
			l.samples = append(l.samples, mine...)
			l.mu.Unlock()
		})
	}
	return l
}

// get requests t once and reads the whole answer; anything but 200 is an
// error.
func get(c *http.Client, t target) error {
	req, err := http.NewRequest("GET", t.url, nil)
	if err != nil {
		return err
	}
	req.Header = t.header
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// wait waits for the load to end (its ctx must be done) and returns it.
func (l *load) wait() *load {
	l.wg.Wait()
	l.elapsed = time.Since(l.start)
	return l
}

// measure sums up a finished run.
func (l *load) measure() measure {
	lat := latencies(l.samples, 0, l.elapsed)
	return measure{
		rps:    float64(len(l.samples)) / l.elapsed.Seconds(),
		p50:    percentile(lat, 50),
		p99:    percentile(lat, 99),
		failed: l.failed,
	}
}

// latencies returns, sorted, the latencies of the requests that ended in
// [from, to).
func latencies(samples []sample, from, to time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range samples {
		if s.end >= from && s.end < to {
			out = append(out, s.latency)
		}
	}
	slices.Sort(out)
	return out
}

// percentile returns the pct-th percentile (0 < pct ≤ 100) of sorted
// latencies by the nearest-rank method: the smallest latency that pct %
// of them do not exceed. It is 0 for no latencies.
func percentile(sorted []time.Duration, pct int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*pct + 99) / 100 // ceil(n × pct / 100), from 1
	return sorted[max(rank, 1)-1]
}

// goLoad drives t with the Go generator for d.
func goLoad(ctx context.Context, t target, d time.Duration) (measure, error) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	m := startLoad(runCtx, t).wait().measure()
	return m, ctx.Err()
}
