package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Sample is one answered request: when it ended, counted from the start of
// its load, and how long it took.
type Sample struct {
	End, Latency time.Duration
}

// Load is a run of Clients, one connection each, requesting in a loop until
// their context ends. A request fails when it errors or is answered other
// than 2xx.
type Load struct {
	Start time.Time
	wg    sync.WaitGroup

	mu      sync.Mutex
	samples []Sample
	failed  int64
	errs    []string
}

// Result is a finished Load.
type Result struct {
	// Samples are the successful requests, in no particular order.
	Samples []Sample
	// Failed counts the requests that errored or were not answered 2xx.
	Failed int64
	// Errors describes the first few failures, each with the time it
	// happened since the start.
	Errors []string
	// Elapsed is the load's duration.
	Elapsed time.Duration
}

// OK is the number of successful requests.
func (r Result) OK() int64 { return int64(len(r.Samples)) }

// String sums the result up for a test log.
func (r Result) String() string {
	return fmt.Sprintf("%d ok, %d failed %q", r.OK(), r.Failed, r.Errors)
}

// Start runs conns clients of dial until ctx ends, each sending the
// requests newRequest makes (it is called for every request, from several
// goroutines). The request in flight when ctx ends is let finish: a
// request cut short by the test is not a failure of the server.
func Start(ctx context.Context, conns int, dial func() (net.Conn, error), newRequest func() *http.Request) *Load {
	l := &Load{Start: time.Now()}
	for range conns {
		l.wg.Go(func() {
			c := &Client{Dial: dial}
			defer c.Close()
			var mine []Sample
			for ctx.Err() == nil {
				begin := time.Now()
				resp, err := c.Do(newRequest())
				end := time.Now()
				if err == nil && resp.Status/100 != 2 {
					err = fmt.Errorf("status %d: %.200s", resp.Status, resp.Body)
				}
				if err == nil {
					mine = append(mine, Sample{End: end.Sub(l.Start), Latency: end.Sub(begin)})
					continue
				}
				l.mu.Lock()
				l.failed++
				if len(l.errs) < 10 {
					l.errs = append(l.errs, fmt.Sprintf("%.3fs: %v", end.Sub(l.Start).Seconds(), err))
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

// Get is a newRequest for Start: GET url with the header given as
// name, value pairs.
func Get(url string, header ...string) func() *http.Request {
	return func() *http.Request {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			panic(err) // a test's own bad URL
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
}

// Wait waits for the load to end (its context must be done).
func (l *Load) Wait() Result {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return Result{Samples: l.samples, Failed: l.failed, Errors: l.errs, Elapsed: time.Since(l.Start)}
}
