package strict

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestCheckFields(t *testing.T) {
	many := http.Header{}
	for i := range DefaultFields + 1 {
		many.Set("X-Field-"+strconv.Itoa(i), "v")
	}
	for _, tt := range []struct {
		name   string
		h      http.Header
		lim    Limits
		status int
		reason string
	}{
		{"plain", http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}}, DefaultLimits, 0, ""},
		{"too many fields", many, DefaultLimits, 431, "too many request header fields"},
		{"as many as the limit", many, Limits{Fields: DefaultFields + 1}, 0, ""},
		{"a field too large", http.Header{"X-Big": {strings.Repeat("b", DefaultFieldSize)}}, DefaultLimits, 431, "request header field too large"},
		{"a field as large as the limit", http.Header{"X-Big": {strings.Repeat("b", DefaultFieldSize-len("X-Big")-4)}}, DefaultLimits, 0, ""},
		{"two Content-Type", http.Header{"Content-Type": {"text/plain", "text/html"}}, DefaultLimits, 400, "duplicate Content-Type"},
		{"two Content-Length", http.Header{"Content-Length": {"1", "1"}}, DefaultLimits, 400, "duplicate Content-Length"},
		{"two Host", http.Header{"Host": {"a", "b"}}, DefaultLimits, 400, "duplicate Host"},
		{"two Range", http.Header{"Range": {"bytes=0-1", "bytes=2-3"}}, DefaultLimits, 400, "duplicate Range"},
		{"conflicting schemes", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Ssl": {"off"}}, DefaultLimits, 400, "conflicting X-Forwarded scheme fields"},
		{"agreeing schemes", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Ssl": {"on"}}, DefaultLimits, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, reason := CheckFields(tt.h, tt.lim)
			if status != tt.status || reason != tt.reason {
				t.Errorf("got %d %q, want %d %q", status, reason, tt.status, tt.reason)
			}
		})
	}
}
