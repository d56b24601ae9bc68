package serve

import (
	"context"
	"net/http"
)

// Long-lived connections. A WebSocket (a connection the app hijacked) or a
// streaming response (Server-Sent Events) lasts as long as the app wants,
// and closing it under the app, as a process that exits does, is a crash to
// its client: no WebSocket close frame, no last event. So a draining server
// tells the app that it drains (Draining: a channel closed at the start of
// the drain), for the app to end those connections its own way (a close
// frame with status 1001, "going away"; a final event), and waits for them
// until the drain's deadline, as for any request in flight. At the deadline
// it closes the hijacked connections still open, which the "drained" line
// counts as hijacked_cut, apart from those the app or its client closed
// during the drain (hijacked_closed). A streaming response is a request in
// flight: at the deadline it is dropped with the other requests (dropped).

// Draining returns a channel that is closed when the Server serving the
// request whose context ctx is, or derives from, starts to drain (Drain),
// or nil for a context that did not come from a Server's request, such as
// under net/http/httptest: a nil channel never delivers, so a select on it
// waits for its other cases. A context kept past its request, as a
// hijacking handler keeps it, still answers.
func Draining(ctx context.Context) <-chan struct{} {
	rw, _ := ctx.Value(requestKey{}).(*responseWriter)
	if rw == nil {
		return nil
	}
	return rw.srv.drainStarted
}

// hijackedByApp reports whether the app hijacked the connection (one the
// server hijacked to answer a timeout is not the app's), and whether the
// drain cut it at its deadline.
func (c *conn) hijackedByApp() (app, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == http.StateHijacked && !c.ours, c.cut
}

// cutHijacked closes, at the drain's deadline, the connections the app
// hijacked that are still open, and returns how many it closed.
func (s *Server) cutHijacked() int {
	var cut []*conn
	s.mu.Lock()
	for c := range s.conns {
		c.mu.Lock()
		if c.state == http.StateHijacked && !c.ours && !c.closed {
			c.cut = true
			cut = append(cut, c)
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	// Outside s.mu: Close releases the connection, which takes it.
	for _, c := range cut {
		c.Close()
	}
	return len(cut)
}
