package main

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/remuda/remuda/internal/loadgen"
)

// conns is the number of keep-alive connections every load run holds,
// with wrk and with the Go generator alike.
const conns = 64

// measure is one load run's figures, from wrk or from the Go generator.
type measure struct {
	rps      float64       // answered requests per second
	p50, p99 time.Duration // latency percentiles
	failed   int64         // transport errors and answers other than 2xx (wrk: 2xx or 3xx)
}

// target is what a load run requests: GET http://addr+path with header.
type target struct {
	addr, path string
	header     []string // name, value pairs
}

// url is t's URL.
func (t target) url() string { return "http://" + t.addr + t.path }

// dial opens a TCP connection to t's server.
func (t target) dial() (net.Conn, error) {
	return net.DialTimeout("tcp", t.addr, loadgen.DefaultTimeout)
}

// startLoad requests t with the Go generator until ctx ends: conns
// loadgen clients, each with a keep-alive connection of its own, as many
// clients (or nginx's upstream keepalive pool) would hold. None retries: a
// request that the server resets or closes the connection under fails.
// Requests in flight when ctx ends are let finish.
func startLoad(ctx context.Context, t target) *loadgen.Load {
	return loadgen.Start(ctx, conns, t.dial, loadgen.Get(t.url(), t.header...))
}

// goLoad drives t with the Go generator for d.
func goLoad(ctx context.Context, t target, d time.Duration) (measure, error) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	r := startLoad(runCtx, t).Wait()
	lat := latencies(r.Samples, 0, r.Elapsed)
	m := measure{
		rps:    float64(r.OK()) / r.Elapsed.Seconds(),
		p50:    percentile(lat, 50),
		p99:    percentile(lat, 99),
		failed: r.Failed,
	}
	return m, ctx.Err()
}

// latencies returns, sorted, the latencies of the requests that ended in
// [from, to).
func latencies(samples []loadgen.Sample, from, to time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range samples {
		if s.End >= from && s.End < to {
			out = append(out, s.Latency)
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
