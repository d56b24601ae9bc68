package workers

import (
	"net/http"
	"sync/atomic"
)

// ReadinessPath is the readiness endpoint every worker answers itself,
// before the app's routes see the request: GET or HEAD answers 200 "ready"
// while the service serves, and 503 "stopping" from the TERM that stops it
// on, through Config.ShutdownDelay and the drain (on the connections that
// can still reach the worker then). A worker that retires while the
// service goes on (HUP, TTOU, a recycle) keeps answering 200: its
// successors serve on the same sockets. Other methods on the path go to
// the app. It is what a load balancer or a Kubernetes readinessProbe
// should poll; any of the app's own routes (the demo app's /healthz)
// answers as usual throughout, for liveness.
const ReadinessPath = "/readyz"

// readiness is a worker's answer on ReadinessPath.
type readiness struct {
	stopping atomic.Bool
}

// stop makes the readiness endpoint answer 503 from now on.
func (r *readiness) stop() { r.stopping.Store(true) }

// handler answers ReadinessPath and passes every other request to next.
func (r *readiness) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != ReadinessPath || req.Method != http.MethodGet && req.Method != http.MethodHead {
			next.ServeHTTP(w, req)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		if r.stopping.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("stopping\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
}
