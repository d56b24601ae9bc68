// Package loadgen drives HTTP load the way a handover must survive it:
// with clients that never retry. Go's http.Transport, like most clients,
// silently resends an idempotent request on a fresh connection when a
// reused keep-alive connection turns out to be closed; a load that counts
// through such a client reports zero failures while real users (a POST, a
// client that does not retry, wrk) lose requests. Every request here is
// sent once, and any error fails it.
//
// Client is one such client; Start runs many of them; Wrk runs wrk and
// reads its report. Tests and the load harness (bench/) use them.
package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// DefaultTimeout bounds a request when Client.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Client sends HTTP/1.1 requests over one keep-alive connection at a time
// and never retries. It keeps the connection while the server does (no
// "Connection: close" in the answer) and dials a new one for the next
// request otherwise: a fresh connection after a clean close is not a
// retry, since the previous request was answered. A refused dial, a reset,
// an EOF before the whole answer or a timeout fails the request, and the
// connection is dropped. A Client is not safe for concurrent use.
type Client struct {
	// Dial opens a connection to the server.
	Dial func() (net.Conn, error)
	// Timeout bounds one request, dial included. If zero, DefaultTimeout.
	Timeout time.Duration

	conn net.Conn
	br   *bufio.Reader
}

// TCP returns a Client of addr ("host:port").
func TCP(addr string) *Client {
	return &Client{Dial: func() (net.Conn, error) { return net.DialTimeout("tcp", addr, DefaultTimeout) }}
}

// Response is a whole answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Reused is true when the request went over a connection that had
	// already carried an answer.
	Reused bool
	// Close is true when the server closed the connection after it.
	Close bool
}

// Do sends req and reads the whole answer. A request without a Host
// header gets "localhost".
func (c *Client) Do(req *http.Request) (*Response, error) {
	reused := c.conn != nil
	if c.conn == nil {
		conn, err := c.Dial()
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c.conn.SetDeadline(time.Now().Add(timeout))
	resp, err := c.roundTrip(req)
	if err != nil {
		c.Close()
		if reused {
			return nil, fmt.Errorf("reused connection: %w", err)
		}
		return nil, fmt.Errorf("new connection: %w", err)
	}
	resp.Reused = reused
	if resp.Close {
		c.Close()
	}
	return resp, nil
}

func (c *Client) roundTrip(req *http.Request) (*Response, error) {
	if req.Host == "" && req.URL.Host == "" {
		req.Host = "localhost"
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body, Close: resp.Close}, nil
}

// Close drops the connection, if any.
func (c *Client) Close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
