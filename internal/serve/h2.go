package serve

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/remuda/remuda/internal/strict"
)

// How an HTTP/2 connection ends while its server drains. HTTP/2 has what
// HTTP/1.1 lacks, a way to close a connection that no request can race:
// GOAWAY. But one GOAWAY is not enough. It names the last stream the
// server will process, and a client that opened a stream after that one,
// before the GOAWAY reached it, sees that stream refused: a client that
// does not retry (h2load, a POST) has lost a request. So a draining server
// does what RFC 9113 §6.8 advises, in two steps:
//
//  1. It sends a GOAWAY naming the largest stream id there is (2^31-1),
//     which tells the client to open no more streams and refuses none,
//     and a PING right behind it.
//  2. The client answers the PING after it has read the GOAWAY, so every
//     stream it opened comes before that answer. Once the answer has been
//     read, and every frame before it processed, net/http's HTTP/2 server
//     starts its own graceful shutdown: a GOAWAY naming the last stream
//     it has seen, the streams in flight finished, then the close.
//
// net/http's HTTP/2 server has no first step, so the connection is served
// by golang.org/x/net/http2 over an h2conn, which follows the frames in
// both directions: it writes the first step's frames between two of the
// server's frames, and sees the PING's answer go by. A client that never
// answers the PING gets the second step after IdleGrace.
//
// During a drain, HTTP/2 answers carry no "Connection: close": net/http
// reads it as a request for the one-GOAWAY shutdown.

// HTTP/2 frames (RFC 9113 §4.1, §6.7, §6.8).
const (
	frameHeaderLen = 9
	frameHeaders   = 0x1
	framePing      = 0x6
	frameGoAway    = 0x7
	flagAck        = 0x1
	// h2Preface is the client's connection preface, which precedes its
	// frames; a client with prior knowledge sends it in cleartext (h2c).
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// drainPing is the payload of the drain's PING.
var drainPing = [8]byte{'r', 'e', 'm', 'u', 'd', 'a', 0, 1}

// drainFrames is the first step of the drain: GOAWAY(2^31-1, NO_ERROR),
// then the PING.
var drainFrames = []byte{
	0, 0, 8, frameGoAway, 0, 0, 0, 0, 0, // 8 bytes, stream 0
	0x7f, 0xff, 0xff, 0xff, // last stream id
	0, 0, 0, 0, // NO_ERROR
	0, 0, 8, framePing, 0, 0, 0, 0, 0,
	drainPing[0], drainPing[1], drainPing[2], drainPing[3], drainPing[4], drainPing[5], drainPing[6], drainPing[7],
}

// configureHTTP2 has the Server serve HTTP/2 over TLS through serveHTTP2
// to the clients that choose "h2" with ALPN; the others get HTTP/1.1.
func (s *Server) configureHTTP2() {
	cfg := s.opts.TLS.Clone()
	if !slices.Contains(cfg.NextProtos, http2.NextProtoTLS) {
		cfg.NextProtos = append([]string{http2.NextProtoTLS}, cfg.NextProtos...)
	}
	s.srv.TLSConfig = cfg
	s.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		http2.NextProtoTLS: func(_ *http.Server, tc *tls.Conn, h http.Handler) {
			nc := &h2tlsConn{h2conn{Conn: tc, in: frameScanner{skip: len(h2Preface)}}, tc}
			s.serveHTTP2(baseContext(h), nc, &nc.h2conn, h, false)
		},
	}
}

// baseContext is the connection's context, which net/http hands to its
// HTTP/2 server through the handler of TLSNextProto (as net/http's own
// HTTP/2 server and golang.org/x/net/http2.ConfigureServer take it).
func baseContext(h http.Handler) context.Context {
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		return bc.BaseContext()
	}
	return context.Background()
}

// serveHTTP2 serves HTTP/2 with h on nc, which is hc or holds it, until
// the connection ends, and drains it as the comment above says.
// sawPreface tells that the client's preface has been read already.
func (s *Server) serveHTTP2(ctx context.Context, nc net.Conn, hc *h2conn, h http.Handler, sawPreface bool) {
	if c := connOf(nc); c != nil {
		c.setHTTP2()
	}
	if s.opts.Hardened {
		h = s.checkFields(h)
	}
	// A server of its own, to start its graceful shutdown alone: the
	// hook's Shutdown does that, and nothing else (it serves nothing).
	h2s := &http2.Server{IdleTimeout: s.srv.IdleTimeout}
	hook := new(http.Server)
	http2.ConfigureServer(hook, h2s)
	var once sync.Once
	hc.shutdown = func() { once.Do(func() { hook.Shutdown(context.Background()) }) }
	hc.acked = make(chan struct{})

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-s.drainStarted:
		case <-done:
			return
		}
		if err := hc.inject(drainFrames); err != nil {
			return // the connection is gone
		}
		select {
		case <-hc.acked:
		case <-time.After(IdleGrace):
			hc.shutdown()
		case <-done:
		}
	}()
	h2s.ServeConn(nc, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: s.srv, SawClientPreface: sawPreface})
	select {
	case <-hc.acked:
		s.opts.Logger.Debug("http2 connection closed", zap.Int64("streams", hc.streams.Load()), zap.Bool("drained", true))
	default:
		s.opts.Logger.Debug("http2 connection closed", zap.Int64("streams", hc.streams.Load()), zap.Bool("drained", false))
	}
}

// checkFields refuses, as internal/strict refuses an HTTP/1 request,
// an HTTP/2 request whose header breaks Options.Limits or repeats a
// singleton field (see strict.CheckFields). The header's size as a whole
// is capped by the server itself: MaxHeaderBytes, which HTTP/2 announces
// as SETTINGS_MAX_HEADER_LIST_SIZE, answering 431 past it.
func (s *Server) checkFields(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, reason := strict.CheckFields(r.Header, s.opts.Limits); status != 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(status)
			io.WriteString(w, reason+"\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// sniffH2C is the first Read of a connection that may carry h2c (see
// Options.HTTP2Cleartext): when what arrives is the HTTP/2 preface, it
// serves HTTP/2 on the connection until it ends, then returns io.EOF, on
// which net/http, whose Read this is, closes it; otherwise it returns what
// it read, as any Read. An HTTP/1 request differs from the preface in its
// first bytes, so no HTTP/1 client waits on it. A peer not in
// Options.Proxies is not looked at.
func (c *conn) sniffH2C(p []byte) (int, error) {
	// Asked here, not at Accept: behind the PROXY protocol, the address
	// is read from the connection.
	if len(p) < len(h2Preface) || !c.srv.opts.Proxies.lists(c.RemoteAddr()) {
		return c.Read(p)
	}
	n := 0
	for n < len(h2Preface) {
		m, err := c.Read(p[n:len(h2Preface)])
		n += m
		if err != nil || string(p[:n]) != h2Preface[:n] {
			return n, err
		}
	}
	c.mu.Lock()
	c.http2, c.closeReq = true, false
	c.mu.Unlock()
	c.Conn.SetReadDeadline(time.Time{}) // net/http's, for a request head
	s := c.srv
	hc := &h2conn{Conn: c}
	s.serveHTTP2(context.WithValue(context.Background(), connKey{}, c), hc, hc, s.srv.Handler, true)
	return 0, io.EOF
}

// setHTTP2 marks the connection as carrying HTTP/2: the drain's sweep
// leaves it to serveHTTP2.
func (c *conn) setHTTP2() {
	c.mu.Lock()
	c.http2 = true
	c.mu.Unlock()
}

// h2conn is an HTTP/2 connection as its server sees it: it follows the
// frames both ways, writes the drain's frames at a boundary between two of
// the server's, and starts the server's graceful shutdown once the drain's
// PING has been answered.
type h2conn struct {
	net.Conn
	shutdown func()        // starts the server's graceful shutdown (once)
	acked    chan struct{} // closed when the drain's PING was answered
	streams  atomic.Int64  // streams the client opened (HEADERS of a new id)

	// The reader's side (one goroutine at a time).
	in      frameScanner
	rest    []byte // read past the PING's answer, to return next
	ackRead bool   // the last Read returned the end of the PING's answer
	gotAck  bool   // the PING's answer was read (a client may send more)
	last    uint32 // the last id of a stream the client opened

	mu      sync.Mutex
	out     frameScanner
	started bool   // the server has written a whole frame (its SETTINGS)
	pending []byte // frames to write at the next boundary
}

// NetConn is the connection under it, for connOf.
func (c *h2conn) NetConn() net.Conn { return c.Conn }

// Read returns what the client sent, up to the end of the drain's PING
// answer at most. The server reads a frame only once it has processed the
// one before: so when it reads again after that answer, it has seen every
// stream the client will ever open, and the graceful shutdown starts.
func (c *h2conn) Read(p []byte) (int, error) {
	if c.ackRead {
		c.ackRead = false
		close(c.acked)
		c.shutdown()
	}
	var n int
	var err error
	if len(c.rest) > 0 {
		n = copy(p, c.rest)
		c.rest = c.rest[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	for k := 0; k < n; {
		m, ended := c.in.next(p[k:n])
		k += m
		if ended && c.in.hdr[3] == frameHeaders {
			if id := binary.BigEndian.Uint32(c.in.hdr[5:]) & (1<<31 - 1); id > c.last {
				c.streams.Add(1)
				c.last = id
			}
		}
		if ended && !c.gotAck && c.in.isDrainAck() {
			c.ackRead, c.gotAck = true, true
			c.rest = append(append([]byte(nil), p[k:n]...), c.rest...)
			return k, nil
		}
	}
	return n, err
}

// Write writes what the server writes, and the frames pending, if any, at
// the first boundary between two frames.
func (c *h2conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if c.pending != nil {
		k := 0
		for k < len(p) && !c.atBoundary() {
			k += c.track(p[k:])
		}
		if k > 0 {
			m, err := c.Conn.Write(p[:k])
			n += m
			if err != nil {
				return n, err
			}
		}
		if !c.atBoundary() {
			return n, nil
		}
		if _, err := c.Conn.Write(c.pending); err != nil {
			return n, err
		}
		c.pending = nil
		p = p[k:]
	}
	for k := 0; k < len(p); {
		k += c.track(p[k:])
	}
	if len(p) == 0 {
		return n, nil
	}
	m, err := c.Conn.Write(p)
	return n + m, err
}

// track passes the server's bytes up to the end of a frame at most, and
// returns how many (under mu).
func (c *h2conn) track(p []byte) int {
	m, ended := c.out.next(p)
	c.started = c.started || ended
	return m
}

// inject writes frames between two of the server's frames: now if the
// server is not in the middle of one, or else when it ends.
func (c *h2conn) inject(frames []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.atBoundary() {
		c.pending = frames
		return nil
	}
	_, err := c.Conn.Write(frames)
	return err
}

// atBoundary reports whether the server's output is between two frames,
// after its first (under mu).
func (c *h2conn) atBoundary() bool {
	return c.started && c.out.nhdr == 0
}

// h2tlsConn is an h2conn over TLS: the server checks the TLS version and
// cipher suite, and gives requests their TLS state.
type h2tlsConn struct {
	h2conn
	tc *tls.Conn
}

func (c *h2tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// frameScanner follows the boundaries between the frames of one direction
// of an HTTP/2 connection, keeping each frame's header and the first bytes
// of a PING's payload.
type frameScanner struct {
	skip int // bytes of the client's preface still to pass
	hdr  [frameHeaderLen]byte
	nhdr int // bytes of hdr read; 0 between frames
	left int // payload bytes left in the current frame
	ping [8]byte
}

// next passes bytes of p up to the end of the current frame at most, and
// returns how many and whether a frame ended there.
func (f *frameScanner) next(p []byte) (n int, ended bool) {
	if f.skip > 0 {
		n = min(f.skip, len(p))
		f.skip -= n
		return n, false
	}
	if f.nhdr < frameHeaderLen {
		n = copy(f.hdr[f.nhdr:], p)
		f.nhdr += n
		if f.nhdr < frameHeaderLen {
			return n, false
		}
		f.left = f.length()
	}
	k := min(f.left, len(p)-n)
	if f.hdr[3] == framePing {
		if off := f.length() - f.left; off < len(f.ping) {
			copy(f.ping[off:], p[n:n+k])
		}
	}
	f.left -= k
	n += k
	if f.left > 0 {
		return n, false
	}
	f.nhdr = 0
	return n, true
}

func (f *frameScanner) length() int {
	return int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
}

// isDrainAck reports whether the frame that just ended answers the
// drain's PING.
func (f *frameScanner) isDrainAck() bool {
	return f.hdr[3] == framePing && f.hdr[4]&flagAck != 0 && f.length() == len(drainPing) && f.ping == drainPing
}
