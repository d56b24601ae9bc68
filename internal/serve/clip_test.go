package serve

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestClipped(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"short", "/api/token/", "/api/token/"},
		{"at the cap", strings.Repeat("a", MaxLogValue), strings.Repeat("a", MaxLogValue)},
		{"over the cap", strings.Repeat("a", MaxLogValue+1), strings.Repeat("a", MaxLogValue) + "…"},
		{"cut inside a character", strings.Repeat("a", MaxLogValue-1) + "é", strings.Repeat("a", MaxLogValue-1) + "…"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Clipped("k", tt.in).String
			if got != tt.want {
				t.Errorf("Clipped(%d bytes) = %d bytes %q…, want %d bytes", len(tt.in), len(got), got[:min(len(got), 20)], len(tt.want))
			}
			if !utf8.ValidString(got) {
				t.Errorf("Clipped(%d bytes) is not valid UTF-8", len(tt.in))
			}
		})
	}
}

// An access-log line stays short whatever the client sends.
func TestAccessLineCapped(t *testing.T) {
	var buf bytes.Buffer
	access := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel))
	s := New(okHandler, Options{AccessLog: access})
	r := httptest.NewRequest("GET", "/"+strings.Repeat("p", 8<<10), nil)
	r.Header.Set("User-Agent", strings.Repeat("u", 60<<10))
	s.serveHTTP(httptest.NewRecorder(), r)
	if n := buf.Len(); n > 2*MaxLogValue+512 || n == 0 {
		t.Errorf("access line of %d bytes for an 8 KiB path and a 60 KiB user agent, want at most %d", n, 2*MaxLogValue+512)
	}
}
