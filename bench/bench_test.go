package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

func TestMain(m *testing.M) {
	// Every process the harness starts inherits our environment: marked
	// with the run, any that outlives the tests fails the run.
	for _, kv := range proctest.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	os.Exit(proctest.Run(m))
}

// TestSmoke runs the whole harness briefly, as `go run ./bench -smoke`
// does: every row must be produced, and no load may have a failed
// request — the reload rows least of all. The targets are not checked.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and runs it under load for ~15 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var out strings.Builder
	rows, err := run(ctx, options{smoke: true, load: "auto"}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("run -smoke: %v", err)
	}
	for _, p := range smokeProblems(rows) {
		t.Error(p)
	}
	reloads := 0
	for _, r := range rows {
		if r.key == "hup-failed" || r.key == "usr2-failed" {
			reloads++
			if r.failed != 0 || !r.pass {
				t.Errorf("%s: got %s, want 0 failed requests", r.metric, r.figure)
			}
		}
	}
	if reloads != 2 {
		t.Errorf("got %d reload rows with failure counts, want 2 (HUP, USR2)", reloads)
	}
}

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
	tests := []struct {
		name string
		out  string
		want measure
	}{
		{name: "with errors", out: report,
			want: measure{rps: 38665.91, p50: 612 * time.Microsecond, p99: 1020 * time.Millisecond, failed: 12}},
		{name: "clean", out: strings.ReplaceAll(strings.ReplaceAll(report,
			"  Socket errors: connect 1, read 2, write 0, timeout 4\n", ""), "  Non-2xx or 3xx responses: 5\n", ""),
			want: measure{rps: 38665.91, p50: 612 * time.Microsecond, p99: 1020 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if err != nil || got != tt.want {
				t.Errorf("parseWrk: got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("parseWrk of an error message: got no error")
	}
}

func TestPercentile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		pct    int
		want   time.Duration
	}{
		{"none", nil, 99, 0},
		{"one", []time.Duration{7}, 50, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 of 1..100", hundred, 100, 100},
		{"p99 of 1..10", hundred[:10], 99, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.pct); got != tt.want {
				t.Errorf("percentile(%v, %d) = %v, want %v", tt.sorted, tt.pct, got, tt.want)
			}
		})
	}
}
