// Package readmetest runs the READMEs: every shell block of README.md,
// systemd/README.md and examples/*/README.md is executed, in order, by
// bash, in a fresh copy of the repository, with the real binaries the
// blocks build. It holds no code a program uses; the tests are the point.
//
// # What runs
//
// A shell block is a fenced block whose info string is sh, bash or shell.
// Other fences (go, toml, ini, nginx, none) are not run. A console block is
// an error: it mixes commands and output, and nothing could tell which is
// which; write an sh block and put the output in "# …" comments.
//
// The shell blocks of one README run in one bash process, in the order of
// the file, as a reader pasting them into one terminal would: variables,
// the working directory and background jobs carry over from block to
// block. Bash runs with errexit, nounset and pipefail, so a failing
// command or an unset variable fails the README (a reader would see the
// error; the test must too). It also runs with job control on (set -m -b),
// as an interactive shell does: "kill %1" signals the whole job, a "go run"
// and the program it started alike, and a job that has ended leaves the
// job table at once, as it does before an interactive prompt. A README
// starts a server with a trailing "&", waits for it with
// "until curl -fs …; do sleep 1; done", and stops it with "kill %1; wait":
// the wait makes sure the job has ended, and freed its port and its job
// number, before the next block starts another. Jobs still running at the
// end get 10 s to finish, then are killed.
//
// # Ports and paths
//
// A README adapts to the machine only through the variables it names with
// a default, as "${PORT:-8000}" or "${DESTDIR:=}". The runner overrides
// exactly these, by name:
//
//	…PORT     a free TCP port on 127.0.0.1
//	…SOCKET   a unix socket path in a fresh temporary directory
//	…DIR      a fresh empty directory (DESTDIR: an install root)
//
// Every other variable a README names keeps the README's default (the
// runner unsets it, so the caller's environment does not leak in), as do
// SERVER_* variables. Nothing else is rewritten: the commands run as
// written.
//
// # Blocks that cannot run here
//
// An HTML comment on the line before a block's fence says why it does not
// run, and the README must say so to a human reader too:
//
//	<!-- readme-test: skip needs systemd as PID 1 -->
//
// skip needs a reason; the runner logs every skipped block with it, and
// checks that the block is at least valid shell (bash -n). A
// block that another script runs word for word says so instead, and the
// runner checks the claim, each command line against the script's lines:
//
//	<!-- readme-test: in .ci/run -->
//
// # Cost
//
// The blocks build the server and run it, so the test takes tens of
// seconds: it is skipped by -short, and under the race detector, which
// would check nothing of the processes the blocks start.
package readmetest
