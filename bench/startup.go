package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// execToFirst200 starts `server run --prod --workers 2` n times and returns
// each time from its exec until its first 200 on /healthz, sorted.
func (b *bench) execToFirst200(ctx context.Context, n int) ([]time.Duration, error) {
	var times []time.Duration
	for range n {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		start := time.Now()
		p, err := b.spawn("server (start-up)", b.serverBin, addr, b.serverArgs(addr)...)
		if err != nil {
			return nil, err
		}
		ok, err := firstOK(ctx, p, "http://"+addr+"/healthz", 10*time.Second)
		p.stop()
		if err != nil {
			return nil, err
		}
		times = append(times, ok.Sub(start))
	}
	slices.Sort(times)
	fmt.Fprintf(b.out, "\nexec to first 200, %d runs: %s\n", n, strings.Join(mapSlice(times, ms), " "))
	return times, nil
}

// firstOK requests url every millisecond, each time on a fresh connection,
// until it is answered 200, and returns when that answer came. It fails
// if p exits first or timeout passes.
//
// A connection may be accepted by the kernel (the master has bound the
// socket) long before a worker serves it: the request then waits in the
// listen queue, and its answer is the first 200.
func firstOK(ctx context.Context, p *proc, url string, timeout time.Duration) (time.Time, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		select {
		case <-p.exited:
			return time.Time{}, fmt.Errorf("%s exited before answering:\n%s", p.name, p.tail(10))
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("%s: no 200 on %s within %v:\n%s", p.name, url, timeout, p.tail(10))
}

// mapSlice applies f to each of xs.
func mapSlice[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}
