package proxyproto

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Conn is an accepted connection on a listener where the PROXY protocol
// is on. From a listed peer (a proxy the server is told to believe), the
// header is required: it is read, with a deadline, the first time the
// connection is read from or its RemoteAddr asked for (net/http does the
// latter first, on the connection's own goroutine), and RemoteAddr is
// then the client's address the header carries, or the peer's when it
// carries none (see Header.Source). A listed peer that sends no header, a
// malformed one, or none within the deadline gets its connection closed
// without a response: Read returns io.EOF, and the server closes it.
//
// From an unlisted peer nothing is read ahead: RemoteAddr is the peer's,
// and the connection is served as it comes, unless its first bytes are a
// header's signature (HasSignature): a peer that is not believed may not
// claim another's address, and is refused in the same way.
type Conn struct {
	net.Conn
	mode    Mode
	listed  bool
	timeout time.Duration
	refused func(error)

	once   sync.Once
	remote net.Addr
	err    error // why the connection was refused; Read returns io.EOF
	seen   bool  // an unlisted peer's first bytes have been looked at
}

// NewConn wraps c, accepted where the PROXY protocol is on in mode m (V1,
// V2 or Auto). listed tells whether its peer is a proxy whose header is
// required and believed. timeout bounds the header's read. refused, if
// non-nil, is called once with the reason when the connection is refused,
// for the server to log it.
func NewConn(c net.Conn, m Mode, listed bool, timeout time.Duration, refused func(error)) *Conn {
	return &Conn{Conn: c, mode: m, listed: listed, timeout: timeout, refused: refused, remote: c.RemoteAddr()}
}

// errUnlisted refuses a header from a peer that is not listed.
var errUnlisted = errors.New("proxyproto: a PROXY protocol header from a peer that is not listed")

// header reads a listed peer's header, once.
func (c *Conn) header() {
	if !c.listed {
		return
	}
	c.once.Do(func() {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		h, err := Read(c.Conn, c.mode)
		c.Conn.SetReadDeadline(time.Time{})
		if err != nil {
			c.refuse(err)
			return
		}
		if h.Source.IsValid() {
			c.remote = net.TCPAddrFromAddrPort(h.Source)
		}
	})
}

func (c *Conn) refuse(err error) {
	c.err = err
	if c.refused != nil {
		c.refused(err)
	}
}

// RemoteAddr is the client's address, as the header of a listed peer gave
// it, or the peer's.
func (c *Conn) RemoteAddr() net.Addr {
	c.header()
	return c.remote
}

// Read reads the client's stream, after the header. A refused connection
// reads io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	c.header()
	if c.err != nil {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if !c.listed && !c.seen && n > 0 {
		c.seen = true
		if HasSignature(p[:n]) {
			c.refuse(errUnlisted)
			return 0, io.EOF
		}
	}
	return n, err
}

// CloseWrite half-closes the connection, when it can be.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxyproto: CloseWrite not supported")
}

// SyscallConn gives the socket beneath, for a server that looks at its
// receive queue.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxyproto: no socket beneath")
}
