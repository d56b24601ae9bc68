package serve

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remuda/remuda/internal/metrics"
)

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP is what a prod worker adds to each request before and
// after the app's handler: request id, trusted-proxy check, timeout,
// metrics, and (in the "access log" case) the JSON access-log line,
// encoded and written to a discarding sink.
func BenchmarkServeHTTP(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	proxies, _ := ParseProxies("127.0.0.1,::1")
	accessLog := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), zap.InfoLevel))
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"bare", Options{}},
		{"prod", Options{Timeout: 30 * time.Second, Proxies: proxies, Metrics: new(metrics.Set)}},
		{"prod with access log", Options{Timeout: 30 * time.Second, Proxies: proxies, Metrics: new(metrics.Set), AccessLog: accessLog}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(ok, bc.opts)
			r := httptest.NewRequest("GET", "/healthz", nil)
			r.RemoteAddr = "127.0.0.1:50000"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				s.serveHTTP(w, r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
