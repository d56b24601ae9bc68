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
		t.Skip("builds the server and runs it under load for ~20 s")
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
		switch r.key {
		case "hup-failed", "usr2-failed", "hup-wrk", "usr2-wrk":
			reloads++
			if r.skip {
				t.Logf("%s: %s", r.metric, r.figure)
			} else if r.failed != 0 || !r.pass {
				t.Errorf("%s: got %s, want 0 failed requests", r.metric, r.figure)
			}
		}
	}
	if reloads != 4 {
		t.Errorf("got %d reload rows with failure counts, want 4 (HUP, USR2; Go clients, wrk)", reloads)
	}
}

func TestFromSignal(t *testing.T) {
	tests := []struct {
		name, err string
		want      string
	}{
		{"after", "1.234s: reused connection: read answer: EOF", "+12ms reused connection: read answer: EOF"},
		{"before", "1.000s: new connection: dial: refused", "-222ms new connection: dial: refused"},
		{"other form", "boom", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromSignal(tt.err, 1222*time.Millisecond); got != tt.want {
				t.Errorf("fromSignal(%q, 1.222s) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestSocketsLeftOut(t *testing.T) {
	const err = "+3ms reused connection: read answer: read tcp 127.0.0.1:59514->127.0.0.1:40379: read: connection reset by peer"
	const want = "+3ms reused connection: read answer: read: connection reset by peer"
	if got := sockets.ReplaceAllString(err, ""); got != want {
		t.Errorf("sockets left out of %q: got %q, want %q", err, got, want)
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
