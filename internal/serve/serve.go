// Package serve runs an http.Server the way both a prod worker and the dev
// server need it: one JSON access-log line per request, a request id, a
// per-request timeout answered 503, and a drain that serves every connection
// the kernel had already queued before it stops accepting.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/metrics"
	"github.com/remuda/remuda/internal/strict"
)

const (
	// DefaultKeepAlive is used when Options.KeepAlive is zero.
	DefaultKeepAlive = 75 * time.Second
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers (slowloris).
	ReadHeaderTimeout = 10 * time.Second
	// acceptDrainWindow is how long Drain keeps accepting after it starts:
	// long enough to take every connection already queued in the kernel,
	// short enough that connections made after a stop are refused.
	acceptDrainWindow = 100 * time.Millisecond
	// drainPoll is how often Drain checks whether connections remain.
	drainPoll = 10 * time.Millisecond
)

// Options configure a Server. The zero value serves without a request
// timeout, logs nothing, and keeps idle connections DefaultKeepAlive.
type Options struct {
	// Timeout bounds each request: past it the client is answered 503
	// (when no response has started) and its connection closed. Go cannot
	// stop the handler's goroutine, so OnRecycle is then asked to replace
	// the process. If zero, requests are not bounded.
	Timeout time.Duration
	// KeepAlive is how long an idle keep-alive connection stays open.
	// If zero, DefaultKeepAlive is used.
	KeepAlive time.Duration
	// MaxRequests asks for a recycle after this many requests; 0 never does.
	MaxRequests uint64
	// OnRecycle, if non-nil, is called once, with "timeout" or
	// "max_requests", when this process should be replaced.
	OnRecycle func(reason string)
	// Logger receives server errors and timed-out requests. If nil,
	// zap.NewNop() is used.
	Logger *zap.Logger
	// AccessLog, if non-nil, receives one line per request. It should not
	// be sampled: every request deserves its line. Its core must be done
	// with a line's fields when Write returns, as zap's own cores are
	// (they encode at once): the fields are reused (zaptest/observer,
	// which keeps them, would see them cleared).
	AccessLog *zap.Logger
	// Proxies are the peers whose forwarded headers and request id are
	// believed; see Proxies. If nil, nobody's.
	Proxies Proxies
	// Hardened is prod's HTTP hardening: request heads capped at
	// MaxHeaderBytes (larger: 431), a write deadline of Timeout plus
	// WriteGrace for each response (a streaming handler lifts it with
	// http.ResponseController.SetWriteDeadline), and, on plain HTTP, every
	// request checked by internal/strict first, which refuses malformed and
	// smuggling requests that net/http would serve. (Over TLS the check
	// would have to sit above the TLS layer, which hides the connection
	// state from net/http and so HTTP/2: TLS connections are not checked.)
	Hardened bool
	// TLS, if non-nil, serves HTTPS (HTTP/2 and HTTP/1.1) on every
	// listener.
	TLS *tls.Config
	// Metrics, if non-nil, counts every request by method, status code and
	// duration (a timed-out request as the 503 its client got).
	Metrics *metrics.Set
	// MaxConns caps the connections open at once, over all listeners
	// (idle keep-alive ones included). Past it the server stops accepting,
	// and new connections wait in the kernel's accept queue, where another
	// process sharing the socket may take them. Drain lifts the cap: what
	// is queued when it starts is served. If zero, there is no cap.
	MaxConns int
}

// Limits of Hardened.
const (
	MaxHeaderBytes = 64 << 10
	WriteGrace     = 5 * time.Second
)

// Server is an http.Server with the behaviour described in the package doc.
// It serves once: after Drain or Close it may not be reused.
type Server struct {
	opts     Options
	handler  http.Handler
	srv      *http.Server
	lns      []*drainListener
	serving  sync.WaitGroup
	conns    atomic.Int64 // open connections, hijacked ones excluded
	requests atomic.Uint64
	active   atomic.Int64
	recycled atomic.Bool
	slots    chan struct{} // one element per open connection, when MaxConns > 0
	inflight *inflight     // requests being served, when Timeout > 0
	draining chan struct{} // closed when Drain starts
}

// New returns a Server for h; Serve starts it.
func New(h http.Handler, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	s := &Server{opts: opts, handler: h, draining: make(chan struct{})}
	if opts.MaxConns > 0 {
		s.slots = make(chan struct{}, opts.MaxConns)
	}
	if opts.Timeout > 0 {
		s.inflight = newInflight(opts.Timeout, s.timeout)
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       opts.KeepAlive,
		ErrorLog:          zap.NewStdLog(opts.Logger.Named("http")),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.conns.Add(-1)
			}
		},
	}
	if opts.TLS != nil {
		s.srv.TLSConfig = opts.TLS
	}
	if opts.Hardened {
		s.srv.MaxHeaderBytes = MaxHeaderBytes
		if opts.Timeout > 0 {
			// Past the request timeout, so that the 503 can still be
			// written.
			s.srv.WriteTimeout = opts.Timeout + WriteGrace
		}
	}
	return s
}

// Serve accepts on every listener in the background and returns at once.
func (s *Server) Serve(lns []net.Listener) {
	for _, ln := range lns {
		dl := &drainListener{Listener: ln, slots: s.slots, draining: s.draining}
		s.lns = append(s.lns, dl)
		s.serving.Go(func() {
			var err error
			switch {
			case s.opts.TLS != nil:
				err = s.srv.ServeTLS(dl, "", "")
			case s.opts.Hardened:
				err = s.srv.Serve(strict.Listener(dl))
			default:
				err = s.srv.Serve(dl)
			}
			if !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, errDrained) {
				s.opts.Logger.Error("serve", zap.String("addr", ln.Addr().String()), zap.Error(err))
			}
		})
	}
}

// Requests is the number of requests begun so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Active is the number of requests in flight (timed-out ones included:
// their goroutines are still running).
func (s *Server) Active() int64 { return s.active.Load() }

// Drain stops the server gracefully and returns once every connection is
// closed, or ctx is done (then it closes the rest and returns ctx's error).
//
// It first accepts every connection the kernel has already queued on the
// listeners: closing a listener with a non-empty queue resets those
// connections, which a graceful stop must not do. Then it turns keep-alives
// off, which closes idle connections and makes every other one close after
// its next response. A connection that has sent nothing yet (a client's
// spare, dialled ahead of need) counts as idle once it is 5 s old, as in
// http.Server.Shutdown. Shutdown itself is not used: it drops (closes
// without an answer) any request it reads after it began, and a connection
// just taken from the queue may not have sent its request yet. Requests
// that timed out are not waited for.
func (s *Server) Drain(ctx context.Context) error {
	deadline := time.Now().Add(acceptDrainWindow)
	close(s.draining)
	for _, ln := range s.lns {
		ln.drain(deadline)
	}
	s.serving.Wait()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		// Each call closes the connections idle by then.
		s.srv.SetKeepAlivesEnabled(false)
		if s.conns.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.srv.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops the server at once, dropping connections in flight.
func (s *Server) Close() error { return s.srv.Close() }

// errDrained ends a Serve loop once its listener's queue is drained.
var errDrained = errors.New("serve: listener drained")

// drainListener lets Drain empty the accept queue before Serve closes it:
// with a deadline slightly ahead, Accept returns every connection already
// queued without waiting, and the first timeout after that ends Serve.
//
// With slots (Options.MaxConns) it also holds back: Accept first takes a
// slot, which the connection gives back when closed, so a busy process
// leaves new connections in the kernel's queue for another (as
// x/net/netutil.LimitListener). Once draining is closed, Accept takes
// connections without a slot: the queue must be emptied, not reset.
type drainListener struct {
	net.Listener
	slots    chan struct{}
	draining chan struct{}
	drained  atomic.Bool
}

func (l *drainListener) drain(deadline time.Time) {
	l.drained.Store(true)
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(deadline)
		return
	}
	l.Listener.Close()
}

func (l *drainListener) Accept() (net.Conn, error) {
	slot := false
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
			slot = true
		case <-l.draining:
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if slot {
			<-l.slots
		}
		if l.drained.Load() {
			return nil, errDrained
		}
		return nil, err
	}
	if slot {
		return &slotConn{Conn: c, slots: l.slots}, nil
	}
	return c, nil
}

// slotConn gives its listener's slot back when closed, once.
type slotConn struct {
	net.Conn
	slots    chan struct{}
	released atomic.Bool
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	if c.released.CompareAndSwap(false, true) {
		<-c.slots
	}
	return err
}
