// Package serve runs an http.Server the way both a prod worker and the dev
// server need it: one JSON access-log line per request, a request id, a
// per-request timeout answered 503 (408 when the client is the slow one),
// and a drain that loses no request: it serves every connection the kernel
// had already queued, answers each request still arriving on keep-alive
// connections with "Connection: close", and closes idle connections only
// after a grace, never with a reset (conn.go). HTTP/2 connections get a
// GOAWAY in two steps, which no stream the client opens can race (h2.go).
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
	// drainPoll is how often Drain looks at the connections that remain.
	drainPoll = 25 * time.Millisecond
)

// Options configure a Server. The zero value serves without a request
// timeout, logs nothing, and keeps idle connections DefaultKeepAlive.
type Options struct {
	// Timeout bounds each request: past it the request's context is
	// canceled, the client is answered 503 (when no response has started)
	// and its connection closed. Go cannot stop the handler's goroutine,
	// so OnRecycle is then asked to replace the process; not when the
	// handler was waiting on the client (see Server.timeout: 408). If
	// zero, requests are not bounded.
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
	// ProxyProtocol, when its Mode is not proxyproto.Off, reads the PROXY
	// protocol header of the connections from the peers it lists: see
	// ProxyProtocol.
	ProxyProtocol ProxyProtocol
	// HTTP2Cleartext serves HTTP/2 without TLS (h2c) to the peers in
	// Proxies that open a connection with the HTTP/2 preface ("prior
	// knowledge", as Envoy, nginx's grpc_pass or a load balancer speaking
	// HTTP/2 upstream do). Everyone else is served exactly as if it were
	// off: the preface is then a malformed HTTP/1 request. Ignored with TLS,
	// where ALPN chooses. HTTP/2 requests meet the same limits as HTTP/1
	// ones (Hardened, MaxBodySize, Timeout, Proxies).
	HTTP2Cleartext bool
	// Hardened is prod's HTTP hardening: request heads capped at
	// MaxHeaderBytes (larger: 431), a write deadline of Timeout plus
	// WriteGrace for each response (a streaming handler lifts it with
	// http.ResponseController.SetWriteDeadline), and, on plain HTTP, every
	// request checked by internal/strict first, which refuses malformed and
	// smuggling requests that net/http would serve. (Over TLS the check
	// would have to sit above the TLS layer, which hides the connection
	// state from net/http and so HTTP/2: TLS connections are not checked.)
	// HTTP/2 requests, over TLS or h2c, have their header checked as
	// strict.CheckFields says.
	Hardened bool
	// Limits bound request heads as Gunicorn's limit_request_line,
	// limit_request_fields and limit_request_field_size do, where
	// internal/strict checks requests (Hardened, plain HTTP); see
	// strict.Limits, whose zero value is Gunicorn's 0 in every field.
	Limits strict.Limits
	// TLS, if non-nil, serves HTTPS (HTTP/2 and HTTP/1.1, negotiated
	// with ALPN; "h2" is added to NextProtos) on every listener. HTTP/2
	// connections drain with GOAWAY (h2.go).
	TLS *tls.Config
	// Metrics, if non-nil, counts every request by method, status code and
	// duration (a timed-out request as the 503 its client got).
	Metrics *metrics.Set
	// MaxBodySize caps request bodies, in bytes: a request that declares a
	// longer body (Content-Length) is answered 413 before the handler runs,
	// and a chunked one longer than that fails the handler's read of it
	// (http.MaxBytesReader), its connection then closed. If zero, bodies
	// are not capped.
	MaxBodySize int64
	// HijackedGrace, if above zero, is how long a drain waits for the
	// connections the app hijacked (WebSockets) before it closes them,
	// however long its deadline: the dev server's, where a browser tab's
	// WebSocket must not hold up a code reload or a Ctrl-C until
	// --graceful-timeout. If zero, they get the whole deadline.
	HijackedGrace time.Duration
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
	lns      []*listener
	serving  sync.WaitGroup
	requests atomic.Uint64
	active   atomic.Int64
	recycled atomic.Bool
	slots    chan struct{} // one element per open connection, when MaxConns > 0
	inflight *inflight     // requests being served, when Timeout > 0
	tooLarge http.Handler  // answers a body over MaxBodySize, when set

	mu    sync.Mutex
	conns map[*conn]struct{} // open, hijacked ones included

	draining     atomic.Bool   // Drain has started: answers carry Connection: close
	drainStarted chan struct{} // closed when Drain starts
	ended        drainCounts   // how connections ended since the drain started
}

// drainCounts counts how connections ended during a drain; hijacked: the
// app's, closed by the app or its client.
type drainCounts struct {
	afterResponse, idle, byClient, hijacked atomic.Int64
}

// New returns a Server for h; Serve starts it.
func New(h http.Handler, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	s := &Server{opts: opts, handler: h, conns: make(map[*conn]struct{}), drainStarted: make(chan struct{})}
	if opts.MaxConns > 0 {
		s.slots = make(chan struct{}, opts.MaxConns)
	}
	if opts.Timeout > 0 {
		s.inflight = newInflight(opts.Timeout, s.timeout)
	}
	if opts.MaxBodySize > 0 {
		s.tooLarge = tooLarge(opts.MaxBodySize)
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       opts.KeepAlive,
		ErrorLog:          zap.NewStdLog(opts.Logger.Named("http")),
		ConnContext:       connContext,
		ConnState: func(nc net.Conn, st http.ConnState) {
			if c := connOf(nc); c != nil {
				c.setState(st)
			}
		},
	}
	if opts.TLS != nil {
		s.configureHTTP2()
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
		l := &listener{Listener: ln, srv: s}
		s.lns = append(s.lns, l)
		s.serving.Go(func() {
			var err error
			switch {
			case s.opts.TLS != nil:
				err = s.srv.ServeTLS(l, "", "")
			case s.opts.Hardened:
				err = s.srv.Serve(strict.Listener(l, s.opts.Limits))
			default:
				err = s.srv.Serve(l)
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

// Drain stops the server gracefully, losing no request a client sent (see
// IdleGrace for how connections are closed), and returns once every
// connection is closed, or ctx is done: it then closes the rest, requests
// in flight included, and returns ctx's error. It logs how the
// connections ended.
//
// It first accepts every connection the kernel has already queued on the
// listeners: closing a listener with a non-empty queue resets those
// connections. From then on, every answer carries "Connection: close",
// and connections quiet for IdleGrace are closed. http.Server.Shutdown is
// not used: it closes idle connections at once, and drops (closes without
// an answer) any request it reads after it began. Requests that timed out
// are not waited for.
//
// The connections the app hijacked (WebSockets) are waited for too, up to
// ctx's end, where they are closed: the app learns of the drain from
// Draining, whose channel closes as Drain starts, and ends them its own
// way (see hijack.go).
//
// Its first log line, "draining", is written once every later answer is
// sure to carry "Connection: close".
func (s *Server) Drain(ctx context.Context) error {
	start := time.Now()
	s.draining.Store(true)
	close(s.drainStarted)
	grace := IdleGrace
	if deadline, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(deadline)/2)
	}
	s.opts.Logger.Info("draining", zap.Duration("idle_grace", grace))
	for _, l := range s.lns {
		l.drain(start.Add(acceptDrainWindow))
	}
	s.serving.Wait()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	cut := 0 // hijacked connections closed by the drain
	for {
		now := time.Now()
		open, hijacked := s.sweep(now, grace)
		if hijacked > 0 && s.opts.HijackedGrace > 0 && now.Sub(start) >= s.opts.HijackedGrace {
			cut += s.cutHijacked()
		}
		if open+hijacked == 0 {
			s.logDrained(start, 0, cut)
			return nil
		}
		select {
		case <-ctx.Done():
			s.srv.Close()
			s.logDrained(start, open, cut+s.cutHijacked())
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sweep passes every connection to conn.sweep and returns how many are
// open: the app's hijacked ones, and the others.
func (s *Server) sweep(now time.Time, grace time.Duration) (open, hijacked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.sweep(now, grace) {
			hijacked++
		} else {
			open++
		}
	}
	return open, hijacked
}

// release forgets a closed connection: its slot is free, its contexts
// canceled, and, during a drain, how it ended is counted.
func (s *Server) release(c *conn) {
	if c.cancel != nil {
		c.cancel()
	}
	if c.slot {
		<-s.slots
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if !s.draining.Load() {
		return
	}
	if app, cut := c.hijackedByApp(); app {
		if !cut { // cutHijacked counts those
			s.ended.hijacked.Add(1)
		}
		return
	}
	switch idle, state := c.ending(); {
	case idle:
		s.ended.idle.Add(1)
	case state == http.StateActive || state == http.StateHijacked:
		s.ended.afterResponse.Add(1)
	case state == http.StateNew || state == http.StateIdle:
		s.ended.byClient.Add(1)
	}
}

// logDrained logs how the drain's connections ended; dropped were open at
// its deadline, and cut were the app's hijacked ones that the drain
// closed, at its deadline or at Options.HijackedGrace.
func (s *Server) logDrained(start time.Time, dropped, cut int) {
	fields := []zap.Field{
		zap.Int64("closed_after_response", s.ended.afterResponse.Load()),
		zap.Int64("closed_idle", s.ended.idle.Load()),
		zap.Int64("closed_by_client", s.ended.byClient.Load()),
		zap.Int64("hijacked_closed", s.ended.hijacked.Load()),
		zap.Int("hijacked_cut", cut),
		zap.Int("dropped", dropped),
		zap.Duration("duration", time.Since(start)),
	}
	switch {
	case dropped > 0 || cut > 0 && s.opts.HijackedGrace == 0:
		fields = append(fields, zap.Int64("requests_in_flight", s.Active()))
		s.opts.Logger.Warn("drained: connections dropped at the graceful timeout", fields...)
		return
	case cut > 0:
		s.opts.Logger.Warn("drained: hijacked connections closed after the hijacked grace", fields...)
		return
	}
	s.opts.Logger.Info("drained", fields...)
}

// Close stops the server at once, dropping connections in flight.
func (s *Server) Close() error { return s.srv.Close() }
