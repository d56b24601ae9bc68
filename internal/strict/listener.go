package strict

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Listener wraps ln so that every accepted connection's request stream is
// checked before net/http reads it, request heads within lim. A request that
// breaks the rules in the package documentation gets a 400 (414, 431)
// response with Connection: close and a one-line text reason, and the
// connection is closed; net/http never sees it, nor anything after it on
// that connection.
func Listener(ln net.Listener, lim Limits) net.Listener { return &listener{ln, lim} }

type listener struct {
	net.Listener
	lim Limits
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, v: validator{lim: l.lim}}, nil
}

// errMalformedBody ends the body of a request whose head net/http already has.
var errMalformedBody = errors.New("strict: malformed request body")

const (
	readSize      = 4 << 10
	maxBuffered   = DefaultMaxHeadBytes + readSize
	refusalWithin = 5 * time.Second        // write deadline for the refusal
	lingerFor     = 500 * time.Millisecond // how long to drain input after it
	lingerBytes   = 256 << 10              // how much input to drain after it
)

// conn validates its request stream. buf holds bytes read from the network
// and not yet returned to net/http: buf[:ready] is validated and releasable,
// buf[ready:scan] validated but held back, buf[scan:] not yet validated.
// reqStart is where the current request starts (negative when part of it
// has been released).
//
// net/http never calls Read concurrently, so the read state needs no lock.
type conn struct {
	net.Conn
	v        validator
	buf      []byte
	ready    int
	scan     int
	reqStart int
	released bool // bytes released since net/http last had no response pending
	refused  *violation
	midBody  bool  // the refused request's head was already released
	deferred error // a read error held back while bytes were releasable
	eof      bool

	// switchAt is where the head of an upgrade or CONNECT request ends in
	// buf; once net/http has it, the next response written says whether
	// the protocol switches.
	switchAt    int
	switchArmed bool
	sniff       sniffer
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[:c.ready])
			c.consume(n)
			c.released = true
			return n, nil
		}
		if c.v.state == stSwitch {
			switch c.sniff.decision() {
			case switched:
				c.v.state = stPass
				c.advance()
				continue
			case notSwitched:
				c.v.state = stHead
				c.advance()
				continue
			}
		}
		if c.v.state == stPass && c.refused == nil && len(c.buf) == 0 && c.deferred == nil {
			return c.Conn.Read(p)
		}
		if c.refused != nil {
			return c.refuse()
		}
		if err := c.deferred; err != nil {
			c.deferred = nil
			return 0, err
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads once from the network and validates what arrived.
func (c *conn) fill() error {
	if c.eof {
		return io.EOF
	}
	if len(c.buf) == maxBuffered {
		// Only an undecided protocol switch holds this much.
		c.refused = bad("too much data before the upgrade response")
		c.ready = c.reqStart
		return nil
	}
	if cap(c.buf)-len(c.buf) < readSize {
		// ready == 0 here, so buf holds only bytes that wait for the rest
		// of their unit (or held back by a refusal or a protocol switch).
		nb := make([]byte, len(c.buf), min(max(2*cap(c.buf), len(c.buf)+readSize), maxBuffered))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	c.advance()
	if err == io.EOF {
		c.eof = true
		if c.refused == nil && c.v.state != stPass && c.reqStart >= 0 && len(c.buf) > c.reqStart {
			c.refused = bad("incomplete request")
			c.ready = c.reqStart
		}
	}
	if err != nil {
		if isTimeout(err) {
			// net/http interrupts its background read once the response
			// is flushed, and times out idle connections: either way no
			// response is pending.
			c.released = false
		}
		if c.ready == 0 && c.refused == nil {
			return err
		}
		if err != io.EOF {
			c.deferred = err
		}
	}
	return nil
}

// advance validates buf[scan:] unit by unit and sets what may be released.
func (c *conn) advance() {
	for {
		n, end, err := c.v.step(c.buf[c.scan:])
		if err != nil {
			c.refused = err
			if c.reqStart < 0 || c.ready > c.reqStart {
				c.midBody = true
			} else {
				c.ready = c.reqStart
			}
			return
		}
		if n == 0 {
			break
		}
		c.scan += n
		if c.v.switchHead {
			c.v.switchHead = false
			c.switchAt, c.switchArmed = c.scan, true
		}
		if end {
			c.reqStart = c.scan
		}
	}
	c.ready = c.scan
}

// consume drops the first n bytes of buf, which net/http now has.
func (c *conn) consume(n int) {
	c.ready -= n
	c.scan -= n
	c.reqStart -= n
	if c.switchArmed {
		c.switchAt -= n
		if c.switchAt <= 0 {
			// net/http has the whole head: the next response is this
			// request's.
			c.switchArmed = false
			c.sniff.arm(c.v.connect)
		}
	}
	if c.ready == 0 {
		// Keep what is left at the front of the reusable buffer.
		m := copy(c.buf, c.buf[n:])
		c.buf = c.buf[:m]
		return
	}
	c.buf = c.buf[n:]
}

// refuse answers a Read once a violation stops the stream.
func (c *conn) refuse() (int, error) {
	if c.midBody {
		return 0, errMalformedBody
	}
	if c.released {
		// A handler may be writing the response to the request released
		// last: this is net/http's background read. Wait, discarding
		// input, until net/http interrupts it after flushing the response.
		var scratch [512]byte
		for {
			_, err := c.Conn.Read(scratch[:])
			if err == nil {
				continue
			}
			if isTimeout(err) {
				c.released = false
			}
			return 0, err
		}
	}
	c.writeRefusal()
	c.lingerClose()
	c.midBody = true // any further Read fails
	return 0, io.EOF
}

func (c *conn) Write(p []byte) (int, error) {
	if c.sniff.armed.Load() {
		c.sniff.look(p)
	}
	return c.Conn.Write(p)
}

// NetConn returns the connection being checked, as tls.Conn.NetConn does.
func (c *conn) NetConn() net.Conn { return c.Conn }

// CloseWrite lets net/http half-close the connection as it does a
// *net.TCPConn.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("strict: CloseWrite not supported")
}

func (c *conn) writeRefusal() {
	body := c.refused.reason + "\n"
	resp := "HTTP/1.1 " + strconv.Itoa(c.refused.status) + " " + http.StatusText(c.refused.status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	c.Conn.SetWriteDeadline(time.Now().Add(refusalWithin))
	c.Conn.Write([]byte(resp))
}

// lingerClose half-closes the connection and drains what the client is still
// sending for a short while before closing, so that the kernel does not reset
// the connection and discard the refusal before the client reads it (as
// net/http does after its own 400s).
func (c *conn) lingerClose() {
	defer c.Conn.Close()
	if c.CloseWrite() != nil {
		return
	}
	c.Conn.SetReadDeadline(time.Now().Add(lingerFor))
	io.CopyN(io.Discard, c.Conn, lingerBytes)
}

// isTimeout reports whether err is a timeout, without the allocation of
// errors.As on this per-request path.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
