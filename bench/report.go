package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// row is a line of the final table: one figure against its target.
type row struct {
	key    string // stable name, for tests: healthz, hup-failed, rss-master, ...
	metric string
	figure string
	target string
	pass   bool  // the figure meets the target
	skip   bool  // not measured (a tool is missing): neither PASS nor FAIL
	failed int64 // failed requests in the row's load; any fails -smoke too
}

// wantRows is the key of every row a run produces, in order; rss-worker
// rows come one per worker.
var wantRows = []string{"healthz", "hello", "access-log", "hup-failed", "hup-p99",
	"usr2-failed", "usr2-p99", "hup-wrk", "usr2-wrk", "exec-to-200", "rss-master", "rss-worker", "rss-worker", "rss-master-hups"}

// printTable prints rows as the final table.
func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tfigure\ttarget\tresult")
	for _, r := range rows {
		result := "PASS"
		switch {
		case r.skip:
			result = "SKIP"
		case !r.pass:
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.metric, r.figure, r.target, result)
	}
	tw.Flush()
}

// smokeProblems lists what makes a -smoke run fail: a missing row, or a
// row whose load had failed requests. Targets are not checked: a short
// run on a busy machine says nothing about them. A skipped row counts as
// produced.
func smokeProblems(rows []row) []string {
	var problems []string
	got := make(map[string]int)
	for _, r := range rows {
		got[r.key]++
		if r.failed > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d failed requests", r.metric, r.failed))
		}
	}
	want := make(map[string]int)
	for _, k := range wantRows {
		want[k]++
	}
	for _, k := range wantRows {
		if got[k] < want[k] {
			problems = append(problems, fmt.Sprintf("row %s: got %d, want %d", k, got[k], want[k]))
			want[k] = 0 // once per key
		}
	}
	return problems
}
