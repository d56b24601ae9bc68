package loadgen

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

// WrkCommand is `wrk -t1 -c<conns> -d<d> --timeout 10s --latency` on url
// with the header given as name, value pairs. One thread: wrk then takes at
// most one core. wrk counts whole seconds, so d is rounded up to one. wrk
// never retries: a connection the server resets or closes before answering
// is a socket error ("read"), and it reconnects at once after an answer
// with "Connection: close". It also counts as a socket error ("timeout")
// an answer that arrived later than its --timeout, 2 s by default: 10 s
// here, so that socket errors are requests lost, not slow ones (a server
// built with the race detector, beside other tests, answers some requests
// after 2 s). The command leads a process group of its own, which ctx's
// end kills.
func WrkCommand(ctx context.Context, bin string, conns int, d time.Duration, url string, header ...string) *exec.Cmd {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", WrkSeconds(d)), "--timeout", "10s", "--latency"}
	for i := 0; i+1 < len(header); i += 2 {
		args = append(args, "-H", header[i]+": "+header[i+1])
	}
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// WrkSeconds is d in whole seconds, rounded up, at least 1.
func WrkSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// WrkReport is what wrk reported.
type WrkReport struct {
	Requests     int64   // answered, whatever their status
	RPS          float64 // Requests/sec
	P50, P99     time.Duration
	SocketErrors int64 // connect, read, write and timeout errors
	Non2xx       int64 // answers other than 2xx or 3xx
}

// Failed counts socket errors and answers other than 2xx or 3xx.
func (r WrkReport) Failed() int64 { return r.SocketErrors + r.Non2xx }

// ParseWrk reads wrk's report:
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
// The socket-error and non-2xx lines appear only when not zero.
func ParseWrk(out string) (WrkReport, error) {
	var r WrkReport
	var have50, have99, haveRPS, haveRequests bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var err error
		switch {
		case len(f) == 2 && f[0] == "50%":
			r.P50, err = time.ParseDuration(f[1])
			have50 = true
		case len(f) == 2 && f[0] == "99%":
			r.P99, err = time.ParseDuration(f[1])
			have99 = true
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.RPS, err = strconv.ParseFloat(f[1], 64)
			haveRPS = true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.Requests, err = strconv.ParseInt(f[0], 10, 64)
			haveRequests = true
		case len(f) == 5 && strings.Join(f[:4], " ") == "Non-2xx or 3xx responses:":
			r.Non2xx, err = strconv.ParseInt(f[4], 10, 64)
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// connect N, read N, write N, timeout N
			for i := 3; i < len(f) && err == nil; i += 2 {
				var n int64
				n, err = strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				r.SocketErrors += n
			}
		}
		if err != nil {
			return WrkReport{}, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
	}
	if !have50 || !have99 || !haveRPS || !haveRequests {
		return WrkReport{}, fmt.Errorf("no 50%%, 99%%, requests or Requests/sec line")
	}
	return r, nil
}
