package workers

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadiness: GET and HEAD on ReadinessPath are answered before the
// app, 200 until stop and 503 after; every other request reaches the app.
func TestReadiness(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	var ready readiness
	h := ready.handler(app)
	tests := []struct {
		method, target string
		stopped        bool
		want           int
		body           string
	}{
		{"GET", "/readyz", false, 200, "ready\n"},
		{"HEAD", "/readyz", false, 200, ""},
		{"GET", "/readyz?verbose", false, 200, "ready\n"},
		{"POST", "/readyz", false, http.StatusTeapot, ""},
		{"GET", "/readyz/", false, http.StatusTeapot, ""},
		{"GET", "/healthz", false, http.StatusTeapot, ""},
		{"GET", "/readyz", true, 503, "stopping\n"},
		{"HEAD", "/readyz", true, 503, ""},
		{"GET", "/healthz", true, http.StatusTeapot, ""},
	}
	for _, tt := range tests {
		if tt.stopped {
			ready.stop()
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
		body := rec.Body.String()
		if tt.method == "HEAD" {
			body = "" // httptest's recorder keeps what a server would not send
		}
		if rec.Code != tt.want || body != tt.body {
			t.Errorf("%s %s (stopped %v): got %d %q, want %d %q", tt.method, tt.target, tt.stopped, rec.Code, body, tt.want, tt.body)
		}
		if tt.want != http.StatusTeapot && rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tt.method, tt.target, rec.Header().Get("Cache-Control"))
		}
	}
}
