// Package metrics counts what one worker process serves, cheaply enough for
// the request path, and hands the master what changed since the last
// heartbeat.
//
// A worker records every request into a Set: plain atomic adds into fixed
// arrays, indexed by method, status code and duration bucket — no map, no
// lock, no allocation per request, and no Prometheus client in the worker.
// Once a second its heartbeat carries Set.Delta, the counts since the
// previous Delta, to the master, which adds the deltas of all its workers
// up (package workers serves the sums as Prometheus metrics). Because the
// master only ever adds, its totals never go down when a worker exits or is
// replaced; what a worker counted after its last heartbeat is lost only if
// it dies without one more (SIGKILL, a crash): at most its last second.
//
// The package also reads what Prometheus's process and Go collectors
// report, without their client: ReadProcess reads any process's figures
// from /proc (the master reads its own and each worker's), ReadRuntime a
// worker's Go runtime for its heartbeat, and ReadBuild the binary's build
// for remuda_build_info.
package metrics

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Methods are the request methods counted by name; any other method is
// counted as "other", so that a client cannot make the label set grow.
var Methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other"}

// Status codes counted by number are 100 to 599; any other is counted as
// "other".
const (
	minCode   = 100
	maxCode   = 599
	otherCode = "other"
)

// DurationBuckets are the upper bounds, in seconds, of the request
// duration histogram (Prometheus's defaults); a last bucket, +Inf, holds
// the rest.
var DurationBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// LoginOutcomes are the outcomes of a login that Login counts by name; any
// other is counted as "other".
var LoginOutcomes = [...]string{"success", "invalid", "throttled", "unavailable", "error", "other"}

const (
	numMethods  = len(Methods)
	numCodes    = maxCode - minCode + 2 // 100..599, then other
	numBuckets  = len(DurationBuckets) + 1
	numOutcomes = len(LoginOutcomes)
)

// bucketLimits are DurationBuckets as durations, for a comparison without
// floating point on the request path.
var bucketLimits = func() (d [len(DurationBuckets)]time.Duration) {
	for i, s := range DurationBuckets {
		d[i] = time.Duration(s * float64(time.Second))
	}
	return d
}()

// counts is every counter of a Set, or of a snapshot of one.
type counts[T uint64 | atomic.Uint64] struct {
	requests [numMethods][numCodes]T
	buckets  [numBuckets]T
	nanos    T // the sum of the durations
	logins   [numOutcomes]T
}

// Set is one worker's counters. Record and Login may be called from any
// goroutine; Delta from one at a time. The zero value is ready to use; a
// Set must not be copied.
type Set struct {
	live counts[atomic.Uint64]

	mu   sync.Mutex
	sent counts[uint64] // what Delta has reported so far
}

// Record counts one finished request: its method, the status code sent
// and how long it took.
func (s *Set) Record(method string, code int, d time.Duration) {
	c := code - minCode
	if c < 0 || c >= numCodes-1 {
		c = numCodes - 1
	}
	s.live.requests[methodIndex(method)][c].Add(1)
	b := 0
	for b < len(bucketLimits) && d > bucketLimits[b] {
		b++
	}
	s.live.buckets[b].Add(1)
	s.live.nanos.Add(uint64(max(d, 0)))
}

// Login counts one login attempt by its outcome: "success", "invalid"
// (unknown user, wrong password, inactive user), "throttled",
// "unavailable" (the store could not be reached) or "error"; anything else
// counts as "other".
func (s *Set) Login(outcome string) {
	i := numOutcomes - 1
	for j, o := range LoginOutcomes[:numOutcomes-1] {
		if o == outcome {
			i = j
			break
		}
	}
	s.live.logins[i].Add(1)
}

// methodIndex is the index of m in Methods, the last one for any method
// not listed.
func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return numMethods - 1
}

// Delta returns what was counted since the previous call (since the Set
// was made, for the first), or nil when nothing was.
func (s *Set) Delta() *Delta {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d Delta
	for m := range numMethods {
		for c := range numCodes {
			now := s.live.requests[m][c].Load()
			if n := now - s.sent.requests[m][c]; n > 0 {
				if d.Requests == nil {
					d.Requests = map[string]uint64{}
				}
				d.Requests[requestKey(m, c)] = n
				s.sent.requests[m][c] = now
			}
		}
	}
	// Buckets are read after the requests: a request recorded in between
	// is in a bucket a second early, never missing.
	var finished uint64
	buckets := make([]uint64, numBuckets)
	for b := range numBuckets {
		now := s.live.buckets[b].Load()
		buckets[b] = now - s.sent.buckets[b]
		finished += buckets[b]
		s.sent.buckets[b] = now
	}
	if finished > 0 {
		d.Duration = buckets
		nanos := s.live.nanos.Load()
		d.DurationSum = time.Duration(nanos - s.sent.nanos).Seconds()
		s.sent.nanos = nanos
	}
	for i := range numOutcomes {
		now := s.live.logins[i].Load()
		if n := now - s.sent.logins[i]; n > 0 {
			if d.Logins == nil {
				d.Logins = map[string]uint64{}
			}
			d.Logins[LoginOutcomes[i]] = n
			s.sent.logins[i] = now
		}
	}
	if d.Requests == nil && d.Duration == nil && d.Logins == nil {
		return nil
	}
	return &d
}

func requestKey(m, c int) string {
	code := otherCode
	if c < numCodes-1 {
		code = strconv.Itoa(c + minCode)
	}
	return Methods[m] + " " + code
}

// Delta is what a worker counted between two heartbeats, as it travels to
// the master in a heartbeat frame's "metrics" member:
//
//	{"requests":{"GET 200":41,"POST 401":2},
//	 "duration":[30,8,3,2,0,0,0,0,0,0,0,0],"duration_sum":0.734,
//	 "logins":{"success":1,"invalid":1}}
//
// Its size is bounded (every method × every code is some 5000 entries,
// under 100 KB), far below the frame limit.
type Delta struct {
	// Requests counts requests by "METHOD CODE": a method of Methods and a
	// status code from 100 to 599 or "other".
	Requests map[string]uint64 `json:"requests,omitempty"`
	// Duration counts requests by duration: one count per bucket of
	// DurationBuckets, then the +Inf bucket (not cumulative). Nil when no
	// request finished.
	Duration []uint64 `json:"duration,omitempty"`
	// DurationSum is the sum of those durations, in seconds.
	DurationSum float64 `json:"duration_sum,omitempty"`
	// Logins counts login attempts by outcome, one of LoginOutcomes.
	Logins map[string]uint64 `json:"logins,omitempty"`
}

// Validate reports why d is not a delta a worker of this build sends, or
// nil.
func (d *Delta) Validate() error {
	for k := range d.Requests {
		if _, _, err := SplitRequestKey(k); err != nil {
			return err
		}
	}
	if d.Duration != nil && len(d.Duration) != numBuckets {
		return fmt.Errorf("metrics: %d duration buckets, want %d", len(d.Duration), numBuckets)
	}
	if d.DurationSum < 0 || math.IsNaN(d.DurationSum) || math.IsInf(d.DurationSum, 0) {
		return fmt.Errorf("metrics: duration sum %v, want a finite number ≥ 0", d.DurationSum)
	}
	for k := range d.Logins {
		if indexOf(LoginOutcomes[:], k) < 0 {
			return fmt.Errorf("metrics: login outcome %q, want one of %s", k, strings.Join(LoginOutcomes[:], ", "))
		}
	}
	return nil
}

// SplitRequestKey splits a key of Delta.Requests into its method and code.
func SplitRequestKey(k string) (method, code string, err error) {
	method, code, ok := strings.Cut(k, " ")
	if !ok || indexOf(Methods[:], method) < 0 {
		return "", "", fmt.Errorf("metrics: request key %q, want a method of %s, a space and a code", k, strings.Join(Methods[:], ", "))
	}
	if code != otherCode {
		n, err := strconv.Atoi(code)
		if err != nil || n < minCode || n > maxCode || strconv.Itoa(n) != code {
			return "", "", fmt.Errorf("metrics: request key %q: code %q, want %d to %d or %q", k, code, minCode, maxCode, otherCode)
		}
	}
	return method, code, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
