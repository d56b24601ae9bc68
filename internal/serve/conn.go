package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/remuda/remuda/internal/proxyproto"
)

// How a connection ends while its server drains. Every handover (HUP, USR2,
// TTOU, a recycle, TERM, a dev rebuild) retires a server with Drain, and
// HTTP/1.1 gives the server no way to close a keep-alive connection that is
// safe at every instant: a client may have sent its next request just as
// the server closes, and that request is lost (a reset, or an EOF before
// any answer). A client that retries hides the loss; a POST, wrk or a
// client that does not retry sees it. So a draining server closes a
// connection only at the moments when the client cannot be sending:
//
//   - Right after an answer. While draining, every answer carries
//     "Connection: close", and net/http closes the connection once it is
//     written. The client reads the header and does not send on it again.
//   - After IdleGrace of silence. A connection with no request in flight
//     and no byte of a new one gets IdleGrace (counted from the drain's
//     start, at the earliest) to send one more request, which is then
//     answered with "Connection: close". A busy client always sends within
//     it; one that stays quiet that long is closed with a FIN. Only a
//     request sent at the very instant of that FIN can still be lost, as
//     at any keep-alive timeout: nothing in HTTP/1.1 prevents that race.
//
// Closing never resets a connection. A socket closed with unread bytes in
// its receive queue sends a reset (RST), and the client's kernel then
// discards whatever it had not read yet, the last answer included. So a
// connection with unread input is half-closed first (a FIN after the last
// answer), its input read and discarded for up to lingerFor, and only
// then closed, as nginx's lingering_close does; the idle close does the
// same, and gives way if a request turns out to have arrived.
const (
	// IdleGrace is how long a draining server waits for a request on an
	// idle keep-alive connection before closing it. Clients on a busy
	// machine send their next request within milliseconds of an answer; a
	// second is a wide margin that still lets a worker retire quickly. It
	// is bounded by half the drain's deadline.
	IdleGrace = time.Second
	// lingerFor bounds how long a closing connection keeps reading and
	// discarding input after its FIN, for the client to see the FIN and
	// stop sending (net/http's own rstAvoidanceDelay is 500 ms too).
	lingerFor = 500 * time.Millisecond
)

// aLongTimeAgo is a deadline that has passed: setting it interrupts a
// blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

// conn is every accepted connection, at the bottom of the stack of
// wrappers (strict's validator and TLS sit above it): every byte read from
// the socket passes through its Read. It lets the server close the
// connection safely while draining (see above), cancel the contexts of
// its requests when one times out, and hold a MaxConns slot.
type conn struct {
	net.Conn
	srv    *Server
	slot   bool               // holds one of srv.slots
	cancel context.CancelFunc // cancels the context of every request on it
	reads  atomic.Uint64      // Reads that returned bytes

	mu         sync.Mutex
	state      http.ConnState // as net/http last reported it
	served     uint64         // requests begun
	idleReads  uint64         // reads when it last became idle
	closeReq   bool           // the drain asked its reader to close it
	idleClosed bool           // closed by the drain for being idle
	ours       bool           // hijacked by the server (a timeout), not the app
	cut        bool           // hijacked by the app, closed at the drain's deadline (hijack.go)
	http2      bool           // carries HTTP/2, which serveHTTP2 drains
	h2c        bool           // its first Read looks for h2c's preface (sniffH2C)
	quietSince time.Time      // the drain's sweeps: since when it is quiet
	quietAt    uint64         // ... as of which request
	closed     bool
}

// connOf finds the conn under the wrappers net/http was given (strict's
// conn and tls.Conn expose theirs through NetConn), or nil.
func connOf(nc net.Conn) *conn {
	for {
		switch c := nc.(type) {
		case *conn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

// connKey finds a request's conn in its context.
type connKey struct{}

// connFrom returns the conn a request arrived on, or nil.
func connFrom(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// connContext is http.Server.ConnContext: every request's context of the
// connection derives from one the conn can cancel.
func connContext(ctx context.Context, nc net.Conn) context.Context {
	c := connOf(nc)
	if c == nil {
		return ctx
	}
	ctx, c.cancel = context.WithCancel(context.WithValue(ctx, connKey{}, c))
	return ctx
}

// setState records a transition that net/http reports (ConnState).
func (c *conn) setState(st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = st
	switch st {
	case http.StateActive:
		c.served++
		if c.closeReq {
			// The drain's request to close came too late: a request
			// arrived. net/http reads its body without a deadline.
			c.closeReq = false
			c.Conn.SetReadDeadline(time.Time{})
		}
	case http.StateIdle:
		c.idleReads = c.reads.Load()
	}
}

func (c *conn) Read(p []byte) (int, error) {
	if c.h2c {
		c.h2c = false
		return c.sniffH2C(p)
	}
	for {
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.reads.Add(1)
			return n, err
		}
		if err == nil || !isTimeout(err) {
			return n, err
		}
		c.mu.Lock()
		if !c.closeReq {
			c.mu.Unlock()
			return n, err // net/http's own deadline
		}
		// The drain interrupted this read to close the connection, which
		// was idle. The decision is taken here, by the only reader, so no
		// byte it has taken can be discarded unseen.
		c.closeReq = false
		if c.reads.Load() == c.idleReads && unread(c.Conn) == 0 {
			c.idleClosed = true
			c.mu.Unlock()
			c.linger()
			return 0, io.EOF
		}
		// A request is arriving after all: read it, with the deadline
		// net/http gives a request's head.
		c.Conn.SetReadDeadline(time.Now().Add(ReadHeaderTimeout))
		c.mu.Unlock()
	}
}

// setOurs marks the connection as hijacked by the server itself (to answer
// a timeout), which a drain waits for, unlike the app's.
func (c *conn) setOurs() {
	c.mu.Lock()
	c.ours = true
	c.mu.Unlock()
}

// CloseWrite half-closes the connection (a FIN), as net/http does with a
// *net.TCPConn before it closes a connection whose input it has not read.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("serve: CloseWrite not supported")
}

// linger sends a FIN, then reads and discards the input until the client
// closes its side or lingerFor passes, so that a close that follows sends
// no reset. A client that sent a request at the instant of the FIN gets an
// EOF, not a reset that would destroy what it had not read yet.
func (c *conn) linger() {
	c.CloseWrite()
	c.Conn.SetReadDeadline(time.Now().Add(lingerFor))
	io.CopyN(io.Discard, c.Conn, 1<<20)
}

// Close closes the connection once. With unread input in the socket it
// lingers first, in the background (net/http calls Close from the
// connection's goroutine, and the server's drain waits for it).
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.mu.Unlock()
	if unread(c.Conn) > 0 {
		go func() {
			c.linger()
			c.Conn.Close()
			c.srv.release(c)
		}()
		return nil
	}
	err := c.Conn.Close()
	c.srv.release(c)
	return err
}

// sweep is one look of the drain at the connection: once it has been quiet
// (idle, no byte of a new request) for grace, its reader is asked to close
// it. One the app hijacked (a WebSocket) is never quiet: it is the app's
// to end; sweep reports whether the connection is one.
func (c *conn) sweep(now time.Time, grace time.Duration) (hijackedByApp bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http2 {
		return false // open until serveHTTP2 has drained it
	}
	quiet := (c.state == http.StateNew || c.state == http.StateIdle) && c.reads.Load() == c.idleReads && !c.idleClosed
	switch {
	case !quiet:
		c.quietSince = time.Time{}
	case c.closeReq:
		// Asked already. net/http may have set its own read deadline
		// since (it sets one each time the connection goes idle): nudge
		// the reader again.
		c.Conn.SetReadDeadline(aLongTimeAgo)
	case c.quietSince.IsZero() || c.quietAt != c.served:
		c.quietSince, c.quietAt = now, c.served
	case now.Sub(c.quietSince) >= grace:
		c.closeReq = true
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
	return c.state == http.StateHijacked && !c.ours
}

// ending tells release how the connection ended: closed by the drain for
// being idle, or else in which state net/http last had it.
func (c *conn) ending() (idleClosed bool, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleClosed, c.state
}

// unread is the number of bytes waiting in the socket's receive queue.
func unread(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}

// listener accepts for a Server: each connection wrapped in a conn and
// registered (over a proxyproto.Conn when Options.ProxyProtocol is on),
// and the drain's two needs met.
//
// Drain empties the accept queue before Serve closes the listener: with a
// deadline slightly ahead, Accept returns every connection already queued
// without waiting, and the first timeout after that ends Serve. Closing a
// listener whose queue holds connections would reset them.
//
// With slots (Options.MaxConns), Accept first takes a slot, which the
// connection gives back when closed, so a busy process leaves new
// connections in the kernel's queue for another (as
// x/net/netutil.LimitListener). Once draining is closed, Accept takes
// connections without a slot: the queue must be emptied, not reset.
type listener struct {
	net.Listener
	srv     *Server
	drained atomic.Bool
}

// errDrained ends a Serve loop once its listener's queue is drained.
var errDrained = errors.New("serve: listener drained")

func (l *listener) drain(deadline time.Time) {
	l.drained.Store(true)
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(deadline)
		return
	}
	l.Listener.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	s := l.srv
	slot := false
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			slot = true
		case <-s.drainStarted:
		}
	}
	nc, err := l.Listener.Accept()
	if err != nil {
		if slot {
			<-s.slots
		}
		if l.drained.Load() {
			return nil, errDrained
		}
		return nil, err
	}
	if s.opts.ProxyProtocol.Mode != proxyproto.Off {
		nc = s.opts.ProxyProtocol.wrap(nc, s.opts.Logger)
	}
	c := &conn{Conn: nc, srv: s, slot: slot}
	c.h2c = s.opts.HTTP2Cleartext && s.opts.TLS == nil
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c, nil
}

// isTimeout reports whether err is a deadline's, without the allocation of
// errors.As on this per-read path.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
