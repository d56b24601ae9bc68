package strict

import (
	"sync"
	"sync/atomic"
)

// A decision is what the response to an upgrade or CONNECT request says.
type decision uint8

const (
	undecided   decision = iota
	switched             // 101, or 2xx to CONNECT: stop validating
	notSwitched          // anything else: keep validating
)

// sniffer reads the status line of the response to an upgrade or CONNECT
// request as net/http (or a hijacking handler) writes it. Reads and writes
// run on different goroutines.
type sniffer struct {
	armed atomic.Bool

	mu      sync.Mutex
	connect bool
	got     [len("HTTP/1.1 101")]byte
	n       int
	result  decision
}

// arm starts watching writes for the status line.
func (s *sniffer) arm(connect bool) {
	s.mu.Lock()
	s.connect, s.n, s.result = connect, 0, undecided
	s.mu.Unlock()
	s.armed.Store(true)
}

// look collects the status line from written bytes.
func (s *sniffer) look(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.result != undecided {
		return
	}
	s.n += copy(s.got[s.n:], p)
	if s.n < len(s.got) {
		return
	}
	s.armed.Store(false)
	line := string(s.got[:])
	switch {
	case line[:len("HTTP/1.x ")] != "HTTP/1.1 " && line[:len("HTTP/1.x ")] != "HTTP/1.0 ":
		s.result = notSwitched
	case line[9:] == "101", s.connect && line[9] == '2':
		s.result = switched
	default:
		s.result = notSwitched
	}
}

// decision reports what the response said so far and, once decided,
// disarms the sniffer for the next protocol switch.
func (s *sniffer) decision() decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.result
	if d != undecided {
		s.result = undecided
	}
	return d
}
