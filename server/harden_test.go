package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestHarden checks the middleware on its own: security headers on every
// response, HSTS only over TLS, and a panic answered 500 with the request
// id and no stack.
func TestHarden(t *testing.T) {
	ran := false
	h := harden(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = true
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		w.Write([]byte("ok"))
	}), zap.NewNop())

	for _, tt := range []struct {
		name, path, body, proto string
		status                  int
		ran, hsts               bool
	}{
		{name: "plain", path: "/", status: 200, ran: true},
		{name: "behind TLS", path: "/", proto: "https", status: 200, ran: true, hsts: true},
		{name: "panic", path: "/panic", status: 500, ran: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ran = false
			r := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
			r.Header.Set("X-Request-ID", "abc")
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status || ran != tt.ran {
				t.Fatalf("status %d, handler ran %t; want %d, %t", w.Code, ran, tt.status, tt.ran)
			}
			if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if got := w.Header().Get("Strict-Transport-Security") != ""; got != tt.hsts {
				t.Errorf("HSTS set %t, want %t", got, tt.hsts)
			}
			if tt.status == 500 && (!strings.Contains(w.Body.String(), `"request_id":"abc"`) || strings.Contains(w.Body.String(), "boom")) {
				t.Errorf("panic body %s: want the request id and not the panic value", w.Body)
			}
		})
	}
}

// BenchmarkHarden is the middleware's cost per request without a body:
// it must not allocate.
func BenchmarkHarden(b *testing.B) {
	h := harden(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), zap.NewNop())
	r := httptest.NewRequest("GET", "/healthz", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
