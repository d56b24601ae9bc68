package server

import (
	"bufio"
	"bytes"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/serve"
)

// maskedHeaders are the request headers whose values the debug page hides:
// a page pasted into a bug report must not leak credentials.
var maskedHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// debugPage is the dev server's outermost middleware: a handler that
// panics is answered 500 with the panic's value, its stack and the
// request (credentials masked), as HTML (escaped) for a client that
// accepts text/html and plain text otherwise; the stack also goes to the
// log. If the response had already started, the page cannot be sent: the
// connection is aborted, so the client sees a truncated response rather
// than a complete-looking one. http.ErrAbortHandler is re-panicked, as
// net/http expects.
func debugPage(log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tw := &trackingWriter{ResponseWriter: w}
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				stack := panicStack(debug.Stack())
				msg := fmt.Sprint(p)
				if ce := log.Check(zap.ErrorLevel, "handler panicked"); ce != nil {
					ce.Stack = string(stack)
					ce.Write(zap.String("panic", msg), serve.Clipped("method", r.Method), serve.Clipped("path", r.URL.Path))
				}
				if tw.isStarted() {
					panic(http.ErrAbortHandler)
				}
				writeDebugPage(w, r, msg, string(stack))
			}()
			next.ServeHTTP(tw, r)
		})
	}
}

// panicStack drops the frames of the recovery (debug.Stack, the deferred
// function, runtime's panic) from a stack taken in a deferred recover: the
// first frame shown is the one that panicked.
func panicStack(stack []byte) []byte {
	header, frames, ok := bytes.Cut(stack, []byte("\n"))
	i := bytes.Index(frames, []byte("\npanic("))
	if !ok || i < 0 {
		return stack
	}
	rest := frames[i+1:]
	// Skip the panic( line and its file:line line.
	for range 2 {
		if _, after, ok := bytes.Cut(rest, []byte("\n")); ok {
			rest = after
		}
	}
	return append(append(header, '\n'), rest...)
}

// debugPageData is what the page shows.
type debugPageData struct {
	Panic, Method, URL, Proto, Stack string
	Headers                          [][2]string
}

var debugPageHTML = template.Must(template.New("panic").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>500: panic: {{.Panic}}</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;overflow:auto}
h1{color:#b00}td{padding:0 1em 0 0;font-family:monospace;vertical-align:top}</style></head>
<body><h1>panic: {{.Panic}}</h1>
<p>The handler panicked (development server: production answers a bare 500 and logs this).</p>
<h2>Request</h2><p><code>{{.Method}} {{.URL}} {{.Proto}}</code></p>
<table>{{range .Headers}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Stack</h2><pre>{{.Stack}}</pre>
</body></html>
`))

func writeDebugPage(w http.ResponseWriter, r *http.Request, msg, stack string) {
	d := debugPageData{Panic: msg, Method: r.Method, URL: r.URL.String(), Proto: r.Proto, Stack: stack}
	d.Headers = append(d.Headers, [2]string{"Host", r.Host})
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range r.Header[k] {
			if slices.Contains(maskedHeaders, k) {
				v = "******** (masked)"
			}
			d.Headers = append(d.Headers, [2]string{k, v})
		}
	}
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Disposition", "Etag", "Last-Modified"} {
		h.Del(k)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		debugPageHTML.Execute(w, d)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	var b strings.Builder
	fmt.Fprintf(&b, "500 Internal Server Error\n\npanic: %s\n\n%s %s %s\n", d.Panic, d.Method, d.URL, d.Proto)
	for _, kv := range d.Headers {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&b, "\n%s", d.Stack)
	w.Write([]byte(b.String()))
}

// trackingWriter records whether the response has started, so that a
// panic after it is not answered with a second status line.
type trackingWriter struct {
	http.ResponseWriter
	mu      sync.Mutex
	started bool
}

func (w *trackingWriter) start() {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
}

func (w *trackingWriter) isStarted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

func (w *trackingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.start()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Flush keeps streaming handlers working.
func (w *trackingWriter) Flush() {
	w.start()
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack keeps websockets working; a panic after it cannot be answered.
func (w *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.start()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
