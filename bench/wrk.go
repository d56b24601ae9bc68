package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrk drives t with `wrk -t1 -c64 -d<d> --latency` and parses its report.
// One thread: wrk then takes at most one of the machine's cores, and the
// servers compete for the rest on equal terms. wrk counts whole seconds,
// so d is rounded up to one.
func (b *bench) wrk(ctx context.Context, t target, d time.Duration) (measure, error) {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", wrkSeconds(d)), "--latency"}
	for k, vs := range t.header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	cmd := exec.CommandContext(ctx, b.wrkBin, append(args, t.url)...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := b.groups.start(cmd); err != nil {
		return measure{}, fmt.Errorf("start wrk: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return measure{}, ctx.Err()
		}
		return measure{}, fmt.Errorf("wrk %s: %w: %s", t.url, err, out.String())
	}
	m, err := parseWrk(out.String())
	if err != nil {
		return measure{}, fmt.Errorf("wrk %s: %w in:\n%s", t.url, err, out.String())
	}
	return m, nil
}

// wrkSeconds is d in whole seconds, rounded up, at least 1.
func wrkSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// parseWrk reads the figures from wrk's report:
//
//	  Latency Distribution
//	     50%    1.18ms
//	     ...
//	     99%    9.49ms
//	  39024 requests in 1.01s, 8.78MB read
//	  Socket errors: connect 0, read 1, write 0, timeout 0
//	  Non-2xx or 3xx responses: 5
//	Requests/sec:  38665.91
//
// The last two lines before Requests/sec appear only when not zero.
// Socket errors and non-2xx answers both count as failed.
func parseWrk(out string) (measure, error) {
	var m measure
	var have50, have99, haveRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var err error
		switch {
		case len(f) == 2 && f[0] == "50%":
			m.p50, err = time.ParseDuration(f[1])
			have50 = true
		case len(f) == 2 && f[0] == "99%":
			m.p99, err = time.ParseDuration(f[1])
			have99 = true
		case len(f) == 2 && f[0] == "Requests/sec:":
			m.rps, err = strconv.ParseFloat(f[1], 64)
			haveRPS = true
		case len(f) == 5 && strings.Join(f[:4], " ") == "Non-2xx or 3xx responses:":
			var n int64
			n, err = strconv.ParseInt(f[4], 10, 64)
			m.failed += n
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// connect N, read N, write N, timeout N
			for i := 3; i < len(f); i += 2 {
				var n int64
				n, err = strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				if err != nil {
					break
				}
				m.failed += n
			}
		}
		if err != nil {
			return measure{}, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
	}
	if !have50 || !have99 || !haveRPS {
		return measure{}, fmt.Errorf("no 50%%, 99%% or Requests/sec line")
	}
	return m, nil
}
