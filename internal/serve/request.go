package serve

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// RequestIDHeader carries the request id: taken from the request when a
// trusted proxy set a sane one (nginx: proxy_set_header X-Request-ID
// $request_id), generated otherwise, and always echoed in the response.
const RequestIDHeader = "X-Request-ID"

// requestIDKey is RequestIDHeader in canonical form, to index header maps
// directly: Header.Get and Set canonicalize the key on every call, and for
// a key that is not canonical already, that allocates.
var requestIDKey = textproto.CanonicalMIMEHeaderKey(RequestIDHeader)

// closeValue is the Connection header of every answer while draining.
var closeValue = []string{"close"}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	given := ""
	// Most requests carry none of the headers a proxy sets: then there is
	// nothing to believe or remove, and no address to parse.
	if r.Header[requestIDKey] != nil || r.Header[headerForwardedFor] != nil || r.Header[headerForwardedProto] != nil {
		if s.opts.Proxies.forwarded(r) {
			if v := r.Header[requestIDKey]; len(v) > 0 {
				given = v[0]
			}
		}
	}
	id := requestID(given)
	rw := &responseWriter{ResponseWriter: w, srv: s, status: http.StatusOK, id: id, start: start}
	// One slice for both maps, kept in rw rather than allocated; its
	// capacity is its length, so an Add to either copies it rather than
	// writing into the other.
	rw.ids[0] = id
	ids := rw.ids[:]
	r.Header[requestIDKey] = ids
	w.Header()[requestIDKey] = ids

	n := s.requests.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	if max := s.opts.MaxRequests; max > 0 && n == max {
		s.recycle("max_requests")
	}

	// The request id in the context (RequestFrom), for the app's loggers.
	rw.ctx = requestContext{Context: r.Context(), rw: rw}
	var ctx context.Context = &rw.ctx
	if s.inflight != nil && r.ProtoMajor == 2 {
		// The streams of an HTTP/2 connection share its context: a
		// timeout cancels this request's alone.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		rw.cancel = cancel
	}
	// A copy: after the handler, net/http looks at the original's body to
	// decide whether what is left of it can be discarded, so the body is
	// wrapped on the copy only.
	r = r.WithContext(ctx)
	rw.req = r
	h := s.handler
	if max := s.opts.MaxBodySize; max > 0 && r.ContentLength != 0 {
		if r.ContentLength > max {
			h = s.tooLarge
		} else {
			r.Body = http.MaxBytesReader(rw, r.Body, max)
		}
	}
	if s.inflight != nil {
		if r.Body != http.NoBody && r.Body != nil {
			r.Body = &body{ReadCloser: r.Body, rw: rw}
		}
		s.inflight.add(rw, start)
		defer s.inflight.remove(rw)
	}
	h.ServeHTTP(rw, r)

	if rw.finish() {
		s.logAccess(r, id, start, rw.status, rw.bytes)
		if m := s.opts.Metrics; m != nil {
			m.Record(r.Method, rw.status, time.Since(start))
		}
	}
}

// tooLarge answers a request whose declared body is over max bytes: 413
// with DRF's {"detail": …} body, before the handler runs; the request's
// body is never read.
func tooLarge(max int64) http.Handler {
	body := []byte(`{"detail":"Request body larger than ` + strconv.FormatInt(max, 10) + ` bytes."}`)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write(body)
	})
}

// timeout answers a request that ran past Options.Timeout, and cancels its
// context. Go cannot stop the handler's goroutine, so the answer is written
// on the raw connection, which is then closed. Who is slow decides the
// rest:
//
//   - The client, when the handler is blocked reading the request's body
//     from it, or writing the answer to it while it does not read: the
//     client gets 408 (or, past the start of the answer, a closed
//     connection), and the handler's read or write fails, which lets it
//     return. The process is not recycled: any client could otherwise
//     churn workers with a stalled upload. A handler that still has not
//     returned one more timeout later is stuck after all.
//   - The handler, otherwise: 503, and the process asks to be recycled.
func (s *Server) timeout(rw *responseWriter) {
	r, id, start := rw.req, rw.id, rw.start
	fields := func(more ...zap.Field) []zap.Field {
		return append([]zap.Field{
			Clipped("method", r.Method),
			Clipped("path", r.URL.Path),
			zap.String("request_id", id),
			zap.Duration("age", time.Since(start)),
		}, more...)
	}
	if rw.clientCutOff {
		s.opts.Logger.Error("request timed out", fields(zap.Bool("client_cut_off", true))...)
		s.recycle("timeout")
		return
	}
	cause := rw.waitingOn()
	status, sent, ok := rw.expire(cause)
	if !ok {
		return // finished or hijacked in the meantime
	}
	if cause == causeHandler {
		s.opts.Logger.Error("request timed out", fields(zap.Bool("response_started", status != 0))...)
		s.recycle("timeout")
	} else {
		s.opts.Logger.Warn("request timed out waiting for the client", fields(zap.Bool("response_started", status != 0), zap.String("waiting_on", string(cause)))...)
		rw.clientCutOff = true
		rw.recheck(s.inflight)
	}
	if status == 0 {
		status, sent = cause.status(), int64(len(cause.body()))
	}
	s.logAccess(r, id, start, status, sent)
	if m := s.opts.Metrics; m != nil {
		m.Record(r.Method, status, time.Since(start))
	}
}

func (s *Server) recycle(reason string) {
	if s.opts.OnRecycle != nil && s.recycled.CompareAndSwap(false, true) {
		s.opts.OnRecycle(reason)
	}
}

// accessFields recycles the fields of access-log lines: passed as a
// variadic argument through zap's interfaces, a fresh slice of them would
// escape to the heap, 512 bytes per request.
var accessFields = sync.Pool{New: func() any { return new([8]zap.Field) }}

func (s *Server) logAccess(r *http.Request, id string, start time.Time, status int, bytes int64) {
	if s.opts.AccessLog == nil {
		return
	}
	f := accessFields.Get().(*[8]zap.Field)
	*f = [8]zap.Field{
		Clipped("method", r.Method),
		Clipped("path", r.URL.Path),
		zap.Int("status", status),
		zap.Int64("bytes", bytes),
		zap.Duration("duration", time.Since(start)),
		zap.String("remote_addr", r.RemoteAddr),
		Clipped("user_agent", r.UserAgent()),
		zap.String("request_id", id),
	}
	s.opts.AccessLog.Info("request", f[:]...)
	*f = [8]zap.Field{} // hold no request's strings while pooled
	accessFields.Put(f)
}

// requestKey finds, in a request's context, the responseWriter serving it.
type requestKey struct{}

// requestContext is the context a Server gives each request: net/http's,
// with the request's responseWriter under requestKey. It is what
// context.WithValue would make, without an allocation of its own: it
// lives in the responseWriter.
type requestContext struct {
	context.Context
	rw *responseWriter
}

func (c *requestContext) Value(key any) any {
	if key == (requestKey{}) {
		return c.rw
	}
	return c.Context.Value(key)
}

// RequestFrom returns the id of the request whose context ctx is or
// derives from, and the logger of the Server serving it (Options.Logger,
// zap.NewNop() if that was nil); "" and nil for a context that did not
// come from a Server's request, such as under net/http/httptest. A
// context kept past its request still answers, with that request's id.
func RequestFrom(ctx context.Context) (id string, log *zap.Logger) {
	rw, _ := ctx.Value(requestKey{}).(*responseWriter)
	if rw == nil {
		return "", nil
	}
	return rw.id, rw.srv.opts.Logger
}

// requestID returns the proxy's id when it is sane (1–64 characters of
// [A-Za-z0-9._-]), a new random one otherwise.
func requestID(given string) string {
	if len(given) > 0 && len(given) <= 64 {
		ok := true
		for i := 0; i < len(given) && ok; i++ {
			c := given[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		}
		if ok {
			return given
		}
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	var h [16]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// cause is what a request was waiting on when it timed out.
type cause string

const (
	causeHandler  cause = "handler"       // the handler itself: stuck
	causeBody     cause = "request_body"  // the client, to send the body
	causeResponse cause = "response_read" // the client, to read the answer
)

// timeoutBody and clientTimeoutBody answer a timed-out request that had no
// answer yet.
const (
	timeoutBody       = "503 Service Unavailable: the request timed out\n"
	clientTimeoutBody = "408 Request Timeout: the request body did not arrive in time\n"
)

func (c cause) status() int {
	if c == causeHandler {
		return http.StatusServiceUnavailable
	}
	return http.StatusRequestTimeout
}

func (c cause) body() string {
	if c == causeHandler {
		return timeoutBody
	}
	return clientTimeoutBody
}

// body is a request body that tells its responseWriter when the handler is
// blocked reading it: a timeout then blames the client.
type body struct {
	io.ReadCloser
	rw *responseWriter
}

func (b *body) Read(p []byte) (int, error) {
	b.rw.bodyReads.Add(1)
	defer b.rw.bodyReads.Add(-1)
	return b.ReadCloser.Read(p)
}

// responseWriter records status and size for the access log and lets the
// timeout take over the connection safely while the handler still runs.
// Its lock orders the handler's writes against the timeout's.
type responseWriter struct {
	http.ResponseWriter
	srv *Server
	// The request, for the timeout; cancel, if set, cancels its context
	// alone (HTTP/2); its place among the requests in flight (inflight's
	// list, guarded by its lock).
	req        *http.Request
	ctx        requestContext // the request's context, or its parent (HTTP/2)
	cancel     context.CancelFunc
	id         string
	ids        [1]string // the X-Request-ID header's value, in both maps
	start      time.Time
	deadline   time.Time
	prev, next *responseWriter
	listed     bool
	// clientCutOff: the timeout answered the client and failed the
	// handler's I/O; the timer goroutine alone uses it.
	clientCutOff bool

	// What the handler is blocked on, read by the timeout without the lock
	// (a handler blocked in Write holds it).
	bodyReads atomic.Int32 // reads of the request body in progress
	writing   atomic.Bool  // a write to the connection in progress
	timedOut  atomic.Bool  // the timeout is taking over: refuse writes

	mu       sync.Mutex
	status   int
	bytes    int64
	started  bool // the response header has been written
	done     bool // the handler returned, or the timeout took over
	returned bool // the handler returned
	hijacked bool
}

// refuse reports whether the handler may no longer write (under mu).
func (w *responseWriter) refuse() bool { return w.done || w.timedOut.Load() }

// beginResponse is called, under mu, before the first byte of the answer:
// while the server drains, an HTTP/1 answer closes the connection, so
// that the client does not send on it again (HTTP/2 drains with GOAWAY:
// h2.go).
func (w *responseWriter) beginResponse() {
	if !w.started && w.srv.draining.Load() && w.req.ProtoMajor == 1 {
		w.ResponseWriter.Header()["Connection"] = closeValue
	}
	w.started = true
}

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse() || w.started {
		return
	}
	switch {
	case code == http.StatusSwitchingProtocols:
		// An upgrade (a WebSocket) keeps its "Connection: Upgrade", drain
		// or not: the connection is the app's from now on (hijack.go).
		w.started = true
		w.status = code
	case code >= 200:
		w.beginResponse()
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse() {
		return 0, http.ErrHandlerTimeout
	}
	w.beginResponse()
	w.writing.Store(true)
	n, err := w.ResponseWriter.Write(b)
	w.writing.Store(false)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered; a handler that streams keeps working.
func (w *responseWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse() {
		return
	}
	w.beginResponse()
	w.writing.Store(true)
	http.NewResponseController(w.ResponseWriter).Flush()
	w.writing.Store(false)
}

// Hijack hands the connection to the handler (websockets); from then on
// the request is the handler's business and is never timed out.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse() {
		return nil, nil, http.ErrHandlerTimeout
	}
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked, w.done = true, true
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap gives http.ResponseController the underlying writer for the
// features not wrapped here (deadlines, full duplex).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish marks the handler as returned and reports whether the request is
// still this writer's to log (not timed out; hijacked ones are logged).
// An answer the handler left empty is still to be written: while the
// server drains, it closes the connection too.
func (w *responseWriter) finish() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.returned = true
	if w.done && !w.hijacked {
		return false
	}
	if !w.done && !w.started && w.srv.draining.Load() && w.req.ProtoMajor == 1 {
		w.ResponseWriter.Header()["Connection"] = closeValue
	}
	w.done = true
	return true
}

// waitingOn says what the handler is blocked on, as the timeout sees it.
func (w *responseWriter) waitingOn() cause {
	switch {
	case w.bodyReads.Load() > 0:
		return causeBody
	case w.writing.Load():
		return causeResponse
	}
	return causeHandler
}

// recheck gives the handler one more timeout to return, unless it has
// returned already.
func (w *responseWriter) recheck(f *inflight) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.returned {
		f.add(w, time.Now())
	}
}

// expire is the timeout taking over. When no response has started it
// writes a whole 503 (408 when the client is the slow one) with
// "Connection: close" on the hijacked connection, so the client is
// answered and does not reuse it; otherwise it closes the connection, so
// the client sees a truncated response rather than waiting forever. The
// handler's read of the body or write of the answer, if it is blocked in
// one, fails, and its context is canceled. It returns the status already
// sent (0 if none), the bytes sent, and false if the handler had finished
// or hijacked first.
func (w *responseWriter) expire(c cause) (status int, bytes int64, ok bool) {
	w.timedOut.Store(true)
	if c == causeResponse {
		// The handler holds the lock while it writes: fail the write so
		// that it lets go.
		http.NewResponseController(w.ResponseWriter).SetWriteDeadline(aLongTimeAgo)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, 0, false
	}
	w.done = true
	defer w.cancelContext()
	if w.started {
		status, bytes = w.status, w.bytes
	}
	// Hijacking also interrupts a read of the body in progress.
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		// HTTP/2 has no connection to take over: answer on the stream,
		// which net/http then ends when the server closes or the worker
		// exits.
		if !w.started {
			w.ResponseWriter.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.ResponseWriter.WriteHeader(c.status())
			io.WriteString(w.ResponseWriter, c.body())
			http.NewResponseController(w.ResponseWriter).Flush()
		}
		return status, bytes, true
	}
	if cn := connOf(nc); cn != nil {
		cn.setOurs()
	}
	if !w.started {
		body := c.body()
		brw.WriteString("HTTP/1.1 " + strconv.Itoa(c.status()) + " " + http.StatusText(c.status()) + "\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n\r\n" + body)
		brw.Flush()
	}
	// A client still sending the body finds the connection half-closed
	// and its input drained for a while: the answer is not lost to a reset.
	nc.Close()
	return status, bytes, true
}

// cancelContext cancels the request's context: its own (HTTP/2), or that
// of its connection, which carries no other request.
func (w *responseWriter) cancelContext() {
	if w.cancel != nil {
		w.cancel()
	} else if c := connFrom(w.req.Context()); c != nil && c.cancel != nil {
		c.cancel()
	}
}
