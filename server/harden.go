package server

import (
	"encoding/json"
	"net/http"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/remuda/remuda/internal/serve"
)

// Security headers prod adds to every response; a handler may replace
// them. Keys are canonical, so they go into the header map as they are;
// each value is a slice of its own length and capacity, so a handler that
// appends to it gets a copy. A slice, not a map: ranging over a map costs
// more than the three stores.
var securityHeaders = [...]struct {
	key   string
	value []string
}{
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"Referrer-Policy", []string{"same-origin"}},
}

// hsts is added when the request came over TLS, or a trusted proxy says it
// did (the forwarded headers of others are removed before this runs).
var hsts = []string{"max-age=31536000"}

// harden is the middleware around the app: security headers, and panics
// answered 500 with the request id while the stack goes to the log only.
// (The body size limit is the HTTP layer's: serve.Options.MaxBodySize.)
func harden(h http.Handler, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		for _, h := range securityHeaders {
			hdr[h.key] = h.value
		}
		if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
			hdr["Strict-Transport-Security"] = hsts
		}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			id := r.Header.Get(serve.RequestIDHeader)
			log.Error("panic", serve.Clipped("method", r.Method), serve.Clipped("path", r.URL.Path),
				zap.String("request_id", id), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			// If the response had begun, net/http aborts the connection.
			writeError(w, http.StatusInternalServerError, "Internal server error", id)
		}()
		h.ServeHTTP(w, r)
	})
}

// writeError answers status with DRF's {"detail": ...} body, and the
// request id when given.
func writeError(w http.ResponseWriter, status int, detail, requestID string) {
	body := map[string]string{"detail": detail}
	if requestID != "" {
		body["request_id"] = requestID
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
