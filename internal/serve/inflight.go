package serve

import (
	"sync"
	"time"
)

// inflight times out requests with one timer for the whole server rather
// than one per request: a time.AfterFunc per request costs two allocations
// and two updates of the runtime's timer heap, on every request, for a
// timeout that almost never fires. Every deadline is the same timeout after
// the moment a request joins, so requests join a list in the order of
// their deadlines, the nearest always at the head; the timer is armed for
// the head's deadline, and when it fires it takes every request past its
// deadline off the head and re-arms for the next. A request that ends
// leaves the list wherever it is.
type inflight struct {
	timeout time.Duration
	expire  func(*responseWriter) // called, outside the lock, for each request past its deadline
	mu      sync.Mutex
	head    *responseWriter
	tail    *responseWriter
	armed   bool // the timer is set
	timer   *time.Timer
}

func newInflight(timeout time.Duration, expire func(*responseWriter)) *inflight {
	f := &inflight{timeout: timeout, expire: expire}
	f.timer = time.AfterFunc(time.Hour, f.fire)
	f.timer.Stop()
	return f
}

// add appends rw, with a deadline one timeout after from, which is now or a
// moment ago.
func (f *inflight) add(rw *responseWriter, from time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rw.deadline = from.Add(f.timeout)
	rw.prev, rw.next, rw.listed = f.tail, nil, true
	if f.tail != nil {
		f.tail.next = rw
	} else {
		f.head = rw
	}
	f.tail = rw
	if !f.armed {
		f.armed = true
		f.timer.Reset(time.Until(rw.deadline))
	}
}

// remove takes rw off the list, if the timer has not taken it already.
func (f *inflight) remove(rw *responseWriter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rw.listed {
		f.unlinkLocked(rw)
	}
}

func (f *inflight) unlinkLocked(rw *responseWriter) {
	if rw.prev != nil {
		rw.prev.next = rw.next
	} else {
		f.head = rw.next
	}
	if rw.next != nil {
		rw.next.prev = rw.prev
	} else {
		f.tail = rw.prev
	}
	rw.prev, rw.next, rw.listed = nil, nil, false
}

// fire expires the requests past their deadline and re-arms the timer for
// the nearest of the rest. Requests join in the order of their deadlines,
// give or take the moment between taking the time and joining; one that
// joined a little late behind a younger one expires at the next firing.
func (f *inflight) fire() {
	now := time.Now()
	var due []*responseWriter
	f.mu.Lock()
	for f.head != nil && !now.Before(f.head.deadline) {
		rw := f.head
		f.unlinkLocked(rw)
		due = append(due, rw)
	}
	f.armed = f.head != nil
	if f.armed {
		f.timer.Reset(f.head.deadline.Sub(now))
	}
	f.mu.Unlock()
	for _, rw := range due {
		f.expire(rw)
	}
}
