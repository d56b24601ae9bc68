package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	const report = `Running 1s test @ http://127.0.0.1:18123/healthz
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.64ms    1.79ms  15.45ms   89.71%
    Req/Sec    39.00k     3.21k   45.97k    80.00%
  Latency Distribution
     50%  612.00us
     75%    1.82ms
     90%    3.53ms
     99%    1.02s
  39024 requests in 1.01s, 8.78MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  38665.91
Transfer/sec:      8.70MB
`
	const (
		socketErrors = "  Socket errors: connect 1, read 2, write 0, timeout 4\n"
		non2xx       = "  Non-2xx or 3xx responses: 5\n"
	)
	clean := WrkReport{Requests: 39024, RPS: 38665.91, P50: 612 * time.Microsecond, P99: 1020 * time.Millisecond}
	with := func(socket, non2xx int64) WrkReport {
		r := clean
		r.SocketErrors, r.Non2xx = socket, non2xx
		return r
	}
	tests := []struct {
		name       string
		out        string
		want       WrkReport
		wantFailed int64
	}{
		{"with errors", report, with(7, 5), 12},
		{"socket errors only", strings.ReplaceAll(report, non2xx, ""), with(7, 0), 7},
		{"non-2xx only", strings.ReplaceAll(report, socketErrors, ""), with(0, 5), 5},
		{"clean", strings.ReplaceAll(strings.ReplaceAll(report, socketErrors, ""), non2xx, ""), clean, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrk(tt.out)
			if err != nil || got != tt.want {
				t.Errorf("ParseWrk: got %+v, %v; want %+v", got, err, tt.want)
			}
			if got.Failed() != tt.wantFailed {
				t.Errorf("Failed(): got %d, want %d", got.Failed(), tt.wantFailed)
			}
		})
	}
}

func TestParseWrkErrors(t *testing.T) {
	const report = `  Latency Distribution
     50%  612.00us
     99%    1.02s
  39024 requests in 1.01s, 8.78MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
Requests/sec:  38665.91
`
	if _, err := ParseWrk(report); err != nil {
		t.Fatalf("ParseWrk of the report the rows break: %v", err)
	}
	tests := []struct {
		name, out string
	}{
		{"an error message", "unable to connect to 127.0.0.1:1 Connection refused\n"},
		{"a bad latency", strings.Replace(report, "612.00us", "612.00zz", 1)},
		{"a bad socket error count", strings.Replace(report, "read 2,", "read x,", 1)},
		{"no requests line", strings.Replace(report, "  39024 requests in 1.01s, 8.78MB read\n", "", 1)},
		{"no 99% line", strings.Replace(report, "     99%    1.02s\n", "", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ParseWrk(tt.out); err == nil {
				t.Errorf("ParseWrk: got %+v and no error, want an error", got)
			}
		})
	}
}

func TestWrkSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 1},
		{500 * time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{5 * time.Second, 5},
	}
	for _, tt := range tests {
		if got := WrkSeconds(tt.d); got != tt.want {
			t.Errorf("WrkSeconds(%v): got %d, want %d", tt.d, got, tt.want)
		}
	}
}
