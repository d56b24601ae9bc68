// Command bench is Remuda's load harness: one command that builds the
// demo server (cmd/server) and a plain net/http server (bench/baseline),
// runs them side by side on 127.0.0.1, and prints how they compare.
//
//	go run ./bench                  # 5 rounds × 5 s per comparison, ~3 min
//	go run ./bench -smoke           # everything once, briefly: does the harness work?
//	go run ./bench -rounds 9 -duration 10s
//
// It measures, each against a target (README.md lists them):
//
//  1. /healthz req/s, ours against the baseline;
//  2. the JWT-protected /hello/ against /healthz, on our server;
//  3. /healthz with the JSON access log on against off;
//  4. HUP and USR2 under load: failed requests with clients that never
//     retry (loadgen's, then wrk), and p99 while the new generation takes
//     over against p99 before;
//  5. the time from exec to the first 200;
//  6. the idle memory (RSS) of the master and of each worker;
//  7. the master's memory after 100 HUPs in a row.
//
// Throughput is measured with wrk when it is on PATH (-load), else with
// loadgen's Go keep-alive clients; both sides of a comparison are driven the
// same way, alternately, and the median of the rounds' ratios is the
// figure. The final table has a PASS or FAIL per target, and the exit
// status is 1 if a target is missed (with -smoke: if a row is missing or
// a load had failed requests), 2 if the harness could not run.
//
// Every process the harness starts leads a process group of its own, and
// every group is killed on the way out, on an error or an interrupt too.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK     = 0
	exitMissed = 1 // a target missed; with -smoke, a row missing or a failed request
	exitError  = 2 // a bad flag, or the harness could not run
)

// The user the harness creates, to get an access token for /hello/.
const (
	username = "bench"
	password = "bench-password-not-a-secret"
)

// options are the command-line flags.
type options struct {
	rounds   int           // rounds of each throughput comparison
	duration time.Duration // each load run
	starts   int           // start-ups measured for exec-to-first-200
	idle     time.Duration // quiet time before the idle RSS is read
	smoke    bool          // everything once, briefly; targets not checked
	load     string        // auto, wrk or go
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of each throughput comparison")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run (wrk counts whole seconds)")
	flag.IntVar(&o.starts, "starts", 5, "start-ups measured for the exec-to-first-200 median")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "quiet time before the idle RSS is read (an idle worker returns its free heap within 2 s)")
	flag.BoolVar(&o.smoke, "smoke", false, "run everything once, briefly (1 round, 1s loads), and check only that the harness works")
	flag.StringVar(&o.load, "load", "auto", "throughput load generator: auto (wrk if on PATH), wrk, or go")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(exitError)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rows, err := run(ctx, o, os.Stdout)
	stop()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: %w", err)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(exitError)
	}
	os.Exit(verdict(os.Stdout, o, rows))
}

// verdict prints what is wrong with rows, if anything, and returns the
// exit status.
func verdict(w io.Writer, o options, rows []row) int {
	if o.smoke {
		problems := smokeProblems(rows)
		for _, p := range problems {
			fmt.Fprintf(w, "smoke: %s\n", p)
		}
		if len(problems) > 0 {
			return exitMissed
		}
		fmt.Fprintln(w, "smoke: every row produced, no failed request (targets not checked)")
		return exitOK
	}
	missed := 0
	for _, r := range rows {
		if !r.pass && !r.skip {
			missed++
		}
	}
	if missed > 0 {
		fmt.Fprintf(w, "%d of %d targets missed\n", missed, len(rows))
		return exitMissed
	}
	return exitOK
}

// bench is one run of the harness.
type bench struct {
	opts options
	out  io.Writer

	dir         string   // temporary: binaries, database, access log, pidfile
	root        string   // the module's directory
	serverBin   string   // cmd/server, built
	baselineBin string   // bench/baseline, built
	wrkBin      string   // wrk's path, or "" for the Go generator
	reloadWrk   string   // wrk's path for the wrk reload rows, or "" if not on PATH
	loadDesc    string   // the load generator, as printed
	db          string   // the SQLite database of every server
	accessLog   string   // the access log of the "log on" server
	env         []string // the servers' environment
	groups      groups   // every process started
}

// run runs the whole harness and prints its progress and the final table
// to out. Every process it started is gone when it returns.
func run(ctx context.Context, o options, out io.Writer) ([]row, error) {
	if o.smoke {
		o.rounds, o.duration, o.starts, o.idle = 1, time.Second, 1, 500*time.Millisecond
	}
	if o.rounds < 1 || o.starts < 1 || o.duration < time.Second {
		return nil, fmt.Errorf("want -rounds ≥ 1, -starts ≥ 1, -duration ≥ 1s; got %d, %d, %v", o.rounds, o.starts, o.duration)
	}
	// Like wrk -t1, the Go generator gets one core at most: the servers
	// compete for the others on equal terms.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))

	dir, err := os.MkdirTemp("", "remuda-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &bench{opts: o, out: out, dir: dir, db: filepath.Join(dir, "server.db"), accessLog: filepath.Join(dir, "access.log")}
	defer b.groups.killAll()
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	b.printMachine(out)
	rows, err := b.measure(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(out)
	printTable(out, rows)
	return rows, nil
}

// setUp finds the load generator, builds the binaries, and creates the
// user.
func (b *bench) setUp(ctx context.Context) error {
	// The wrk reload rows use wrk whenever it is installed, whatever the
	// throughput load.
	wrk, errWrk := exec.LookPath("wrk")
	b.reloadWrk = wrk
	switch b.opts.load {
	case "auto":
		b.wrkBin = wrk
	case "wrk":
		if errWrk != nil {
			return fmt.Errorf("-load wrk: %w", errWrk)
		}
		b.wrkBin = wrk
	case "go":
	default:
		return fmt.Errorf("-load %q: want auto, wrk or go", b.opts.load)
	}
	b.loadDesc = b.describeLoad()

	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	b.root = filepath.Dir(strings.TrimSpace(string(gomod)))
	b.serverBin, b.baselineBin = filepath.Join(b.dir, "server"), filepath.Join(b.dir, "baseline")
	for bin, pkg := range map[string]string{b.serverBin: "./cmd/server", b.baselineBin: "./bench/baseline"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = b.root
		// Static, as the README builds for production: no libc mapped
		// into every process (1.3 MiB of RSS each). Both sides alike.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}

	key := make([]byte, 48)
	rand.Read(key)
	// The servers' environment is ours without SERVER_* variables, which
	// would change their config, plus a random secret key.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SERVER_") {
			b.env = append(b.env, kv)
		}
	}
	b.env = append(b.env, "SERVER_SECRET_KEY="+base64.StdEncoding.EncodeToString(key))

	cmd := exec.CommandContext(ctx, b.serverBin, "createuser", "--username", username, "--password-stdin", "--database", "sqlite:"+b.db)
	cmd.Env = b.env
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("createuser: %w\n%s", err, out)
	}
	return nil
}

// measure produces every row of the final table, printing the details as
// it goes.
func (b *bench) measure(ctx context.Context) ([]row, error) {
	ours, err := b.startServer(ctx, "ours")
	if err != nil {
		return nil, err
	}
	logged, err := b.startServer(ctx, "ours (access log)", "--access-log", b.accessLog)
	if err != nil {
		return nil, err
	}
	base, err := b.startBaseline(ctx)
	if err != nil {
		return nil, err
	}
	if err := sameResponse(ctx, "http://"+ours.addr+"/healthz", "http://"+base.addr+"/healthz"); err != nil {
		return nil, err
	}
	access, err := b.token(ctx, ours.addr)
	if err != nil {
		return nil, err
	}
	bearer := []string{"Authorization", "Bearer " + access}
	comparisons := []*comparison{
		{key: "healthz", metric: "/healthz req/s, ours / baseline", min: 1.00,
			a: side{name: "ours", target: healthz(ours)},
			b: side{name: "baseline", target: healthz(base)}},
		{key: "hello", metric: "ours req/s, JWT /hello/ / /healthz", min: 0.85,
			a: side{name: "/hello/", target: target{addr: ours.addr, path: "/hello/", header: bearer}},
			b: side{name: "/healthz", target: healthz(ours)}},
		{key: "access-log", metric: "ours /healthz req/s, access log on / off", min: 0.90,
			a: side{name: "log on", target: healthz(logged), after: b.emptyAccessLog},
			b: side{name: "log off", target: healthz(ours)}},
	}
	var rows []row
	for _, c := range comparisons {
		if err := b.compare(ctx, c); err != nil {
			return nil, err
		}
		rows = append(rows, c.row())
	}
	logged.stop()
	base.stop()

	// Idle memory: the server has served every route for minutes (-smoke:
	// seconds), and now rests.
	if err := sleep(ctx, b.opts.idle); err != nil {
		return nil, err
	}
	mem, err := memoryRows(ours)
	if err != nil {
		return nil, err
	}
	ours.stop()

	pidfile := filepath.Join(b.dir, "server.pid")
	reloading, err := b.startServer(ctx, "ours (reloads)", "--pidfile", pidfile)
	if err != nil {
		return nil, err
	}
	// One server takes every reload: HUP and USR2 under loadgen clients,
	// then under wrk. Each USR2 leaves a new master in the same group.
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2} {
		r, err := b.reloadUnderLoad(ctx, reloading, sig, pidfile)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r.rows()...)
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2} {
		r, err := b.reloadUnderWrk(ctx, reloading, sig, pidfile)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	reloading.stop()

	times, err := b.execToFirst200(ctx, b.opts.starts)
	if err != nil {
		return nil, err
	}
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + med) / 2
	}
	rows = append(rows, row{
		key:    "exec-to-200",
		metric: fmt.Sprintf("exec to first 200, median of %d", len(times)),
		figure: ms(med),
		target: "≤ 300ms",
		pass:   med <= 300*time.Millisecond,
	})
	reloaded, err := b.memoryAfterReloads(ctx)
	if err != nil {
		return nil, err
	}
	return append(append(rows, mem...), reloaded), nil
}

// healthz is p's /healthz.
func healthz(p *proc) target {
	return target{addr: p.addr, path: "/healthz"}
}

// token logs the harness's user in on the server at addr and returns an
// access token (valid 1 h: --access-token-lifetime).
func (b *bench) token(ctx context.Context, addr string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/api/token/", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("obtain a token: %w", err)
	}
	defer resp.Body.Close()
	var tokens struct{ Access string }
	if err := json.NewDecoder(resp.Body).Decode(&tokens); err != nil || resp.StatusCode != http.StatusOK || tokens.Access == "" {
		return "", fmt.Errorf("obtain a token: status %d, %w", resp.StatusCode, errors.Join(err, errors.New("no access token")))
	}
	return tokens.Access, nil
}

// emptyAccessLog checks that the "log on" server did write its access log,
// and empties it, so that the runs do not fill the disk (the server
// appends: its next line goes to the start).
func (b *bench) emptyAccessLog() error {
	fi, err := os.Stat(b.accessLog)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("access log %s is empty after a run", b.accessLog)
	}
	return os.Truncate(b.accessLog, 0)
}

// memoryRows reads the RSS of p's master and of each of its workers.
func memoryRows(p *proc) ([]row, error) {
	workers := children(p.master)
	if len(workers) != 2 {
		return nil, fmt.Errorf("master %d has workers %v, want 2", p.master, workers)
	}
	slices.Sort(workers)
	var rows []row
	for i, pid := range append([]int{p.master}, workers...) {
		n, err := rss(pid)
		if err != nil {
			return nil, err
		}
		r := row{key: "rss-master", metric: "idle RSS, master", target: "≤ 15 MiB", pass: n <= 15*mib}
		if i > 0 {
			r = row{key: "rss-worker", metric: fmt.Sprintf("idle RSS, worker %d", i), target: "≤ 20 MiB", pass: n <= 20*mib}
		}
		r.figure = fmt.Sprintf("%.1f MiB", float64(n)/mib)
		rows = append(rows, r)
	}
	return rows, nil
}

// sameResponse checks that two URLs answer alike: the same status, body,
// header names and header value lengths (Date and X-Request-Id differ in
// value, not in length). The baseline must answer as Remuda does, or the
// ratio would measure the length of the answers.
func sameResponse(ctx context.Context, ours, baseline string) error {
	shape := func(url string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d %q", resp.StatusCode, body)
		for _, k := range slices.Sorted(maps.Keys(resp.Header)) {
			fmt.Fprintf(&b, " %s:%d", k, len(resp.Header.Get(k)))
		}
		return b.String(), nil
	}
	a, err := shape(ours)
	if err != nil {
		return fmt.Errorf("GET %s: %w", ours, err)
	}
	b, err := shape(baseline)
	if err != nil {
		return fmt.Errorf("GET %s: %w", baseline, err)
	}
	if a != b {
		return fmt.Errorf("the baseline does not answer as Remuda does:\n  ours:     %s\n  baseline: %s", a, b)
	}
	return nil
}
