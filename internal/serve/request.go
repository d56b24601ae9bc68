package serve

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
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

// timeoutBody is what a client gets for a request past the timeout.
const timeoutBody = "503 Service Unavailable: the request timed out\n"

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
	// One slice for both maps; its capacity is its length, so an Add to
	// either copies it rather than writing into the other.
	ids := []string{id}
	r.Header[requestIDKey] = ids
	w.Header()[requestIDKey] = ids

	n := s.requests.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	if max := s.opts.MaxRequests; max > 0 && n == max {
		s.recycle("max_requests")
	}

	rw := &responseWriter{ResponseWriter: w, status: http.StatusOK, req: r, id: id, start: start}
	if s.inflight != nil {
		s.inflight.add(rw)
		defer s.inflight.remove(rw)
	}
	s.handler.ServeHTTP(rw, r)

	if rw.finish() {
		s.logAccess(r, id, start, rw.status, rw.bytes)
		if m := s.opts.Metrics; m != nil {
			m.Record(r.Method, rw.status, time.Since(start))
		}
	}
}

// timeout answers a request that ran past Options.Timeout. The handler's
// goroutine cannot be stopped, so the response is written on the raw
// connection, which is then closed, and the process asks to be recycled.
func (s *Server) timeout(rw *responseWriter) {
	r, id, start := rw.req, rw.id, rw.start
	status, sent, ok := rw.expire()
	if !ok {
		return // finished or hijacked in the meantime
	}
	age := time.Since(start)
	s.opts.Logger.Error("request timed out",
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("request_id", id),
		zap.Duration("age", age),
		zap.Bool("response_started", status != 0),
	)
	if status == 0 {
		status = http.StatusServiceUnavailable
		sent = int64(len(timeoutBody))
	}
	s.logAccess(r, id, start, status, sent)
	if m := s.opts.Metrics; m != nil {
		m.Record(r.Method, status, age)
	}
	s.recycle("timeout")
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
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Int("status", status),
		zap.Int64("bytes", bytes),
		zap.Duration("duration", time.Since(start)),
		zap.String("remote_addr", r.RemoteAddr),
		zap.String("user_agent", r.UserAgent()),
		zap.String("request_id", id),
	}
	s.opts.AccessLog.Info("request", f[:]...)
	*f = [8]zap.Field{} // hold no request's strings while pooled
	accessFields.Put(f)
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

// responseWriter records status and size for the access log and lets the
// timeout take over the connection safely while the handler still runs.
// Its lock orders the handler's writes against the timeout's.
type responseWriter struct {
	http.ResponseWriter
	// The request, for the timeout, and its place among the requests in
	// flight (inflight's list, guarded by its lock).
	req        *http.Request
	id         string
	start      time.Time
	prev, next *responseWriter
	listed     bool

	mu       sync.Mutex
	status   int
	bytes    int64
	started  bool // the response header has been written
	done     bool // the handler returned, or the timeout took over
	hijacked bool
}

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.started {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.started, w.status = true, code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, http.ErrHandlerTimeout
	}
	w.started = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what is buffered; a handler that streams keeps working.
func (w *responseWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.started = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection to the handler (websockets); from then on
// the request is the handler's business and is never timed out.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
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
func (w *responseWriter) finish() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done && !w.hijacked {
		return false
	}
	w.done = true
	return true
}

// expire is the timeout taking over. When no response has started it
// writes a whole 503 with "Connection: close" on the hijacked connection,
// so the client is answered and does not reuse it; otherwise it closes the
// connection, so the client sees a truncated response rather than waiting
// forever. It returns the status already sent (0 if none), the bytes sent,
// and false if the handler had finished or hijacked first.
func (w *responseWriter) expire() (status int, bytes int64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, 0, false
	}
	w.done = true
	if w.started {
		status, bytes = w.status, w.bytes
	}
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		// HTTP/2 has no connection to take over: answer on the stream,
		// which net/http then ends when the server closes or the worker
		// exits.
		if !w.started {
			w.ResponseWriter.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w.ResponseWriter, timeoutBody)
			http.NewResponseController(w.ResponseWriter).Flush()
		}
		return status, bytes, true
	}
	defer c.Close()
	if !w.started {
		brw.WriteString("HTTP/1.1 503 Service Unavailable\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: " + strconv.Itoa(len(timeoutBody)) + "\r\n" +
			"Connection: close\r\n\r\n" + timeoutBody)
		brw.Flush()
	}
	return status, bytes, true
}
