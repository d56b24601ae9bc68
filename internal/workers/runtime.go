package workers

import (
	"os"
	"runtime"
	"strconv"
)

// runtimeEnv adds to a worker's environment the Go runtime settings that
// fit one process among several. Go sizes a process for the whole machine:
// GOMAXPROCS is the number of CPUs (within the cgroup's CPU quota, since
// Go 1.25), and the heap may grow until the machine runs out. A worker is
// one of workers processes that the kernel already spreads over the CPUs,
// so each gets its share:
//
//   - GOMAXPROCS = ceil(CPUs / workers), at least 1. With one worker per CPU
//     (the default) each worker runs one P: no idle P spinning to steal
//     work from another, fewer threads and per-P caches (less memory), and
//     no worker contending with its siblings for the other CPUs' time.
//   - GOMEMLIMIT = 90% of Config.MaxMemory, when that is set: the garbage
//     collector works harder as the worker nears its limit, so that
//     garbage alone does not get it recycled; a real leak still does.
//
// The price of one P: a worker uses at most its share of the CPUs even
// when it holds more than its share of the connections, which keep-alive
// clients opening connections in a burst can make happen (bench/README.md
// measured splits of 64 connections from 20/44 to 1/63).
//
// GOMAXPROCS or GOMEMLIMIT set in the master's environment is passed on
// unchanged: the operator's choice wins.
func runtimeEnv(env []string, cfg Config, workers int) []string {
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		cpus := runtime.GOMAXPROCS(0)
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, (cpus+workers-1)/max(workers, 1))))
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok && cfg.MaxMemory > 0 {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(cfg.MaxMemory/10*9, 10))
	}
	return env
}
