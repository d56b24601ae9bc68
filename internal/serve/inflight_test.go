package serve

import (
	"testing"
	"time"
)

// TestInflight checks the one-timer timeout: each request expires once its
// own deadline passes, in order, and one that ended first never does.
func TestInflight(t *testing.T) {
	const timeout = 100 * time.Millisecond
	expired := make(chan *responseWriter, 3)
	f := newInflight(timeout, func(rw *responseWriter) { expired <- rw })
	now := time.Now()
	a := &responseWriter{id: "a", start: now.Add(-80 * time.Millisecond)}
	b := &responseWriter{id: "b", start: now.Add(-50 * time.Millisecond)}
	c := &responseWriter{id: "c", start: now}
	for _, rw := range []*responseWriter{a, b, c} {
		f.add(rw, rw.start)
	}
	f.remove(b) // b's handler returned in time

	for _, want := range []*responseWriter{a, c} {
		select {
		case rw := <-expired:
			late := time.Since(rw.start) - timeout
			if rw != want || late < 0 || late > 500*time.Millisecond {
				t.Errorf("expired %s %v after its deadline, want %s within 500ms", rw.id, late, want.id)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s did not expire", want.id)
		}
	}
	select {
	case rw := <-expired:
		t.Errorf("%s expired, but it had ended", rw.id)
	case <-time.After(2 * timeout):
	}
	if f.head != nil || f.tail != nil || f.armed {
		t.Errorf("after every request left: head %v, tail %v, armed %v; want an empty list and no timer", f.head, f.tail, f.armed)
	}
}
