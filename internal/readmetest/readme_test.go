package readmetest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// readmes are the files whose shell blocks run, as globs relative to the
// repository root. bench/README.md is not one: its first command is the
// three-minute benchmark (bench's own test runs its smoke run).
var readmes = []string{"README.md", "systemd/README.md", "examples/*/README.md"}

// readmeTimeout bounds one README's run: its blocks build the server
// (tens of seconds on a busy machine) and run it.
const readmeTimeout = 4 * time.Minute

// repoRoot returns the directory of the module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// readmeFile is one README and its blocks.
type readmeFile struct {
	rel    string // path from the repository root
	blocks []Block
}

// loadReadmes parses every README of the list.
func loadReadmes(t *testing.T, root string) []readmeFile {
	t.Helper()
	var files []readmeFile
	for _, glob := range readmes {
		matches, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil || len(matches) == 0 {
			t.Fatalf("glob %s: got %d files (%v), want at least one", glob, len(matches), err)
		}
		for _, path := range matches {
			rel, _ := filepath.Rel(root, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := Parse(rel, string(b))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, readmeFile{rel, blocks})
		}
	}
	return files
}

// TestMarkers checks what the markers claim: a skipped block has a
// reason and is at least valid shell (bash -n), and a block said to be run
// by a script is, line for line.
func TestMarkers(t *testing.T) {
	root := repoRoot(t)
	var shell, skipped int
	for _, f := range loadReadmes(t, root) {
		for _, b := range f.blocks {
			if !b.IsShell() {
				continue
			}
			shell++
			if b.Skip() != "" {
				skipped++
				t.Logf("%s:%d: not run: %s", f.rel, b.Line, b.Skip())
				// Not run, but at least valid shell.
				if out, err := exec.Command("bash", "-n", "-c", b.Text).CombinedOutput(); err != nil {
					t.Errorf("%s:%d: bash -n: %v\n%s", f.rel, b.Line, err, out)
				}
			}
			script := b.RanBy()
			if script == "" {
				continue
			}
			data, err := os.ReadFile(filepath.Join(root, script))
			if err != nil {
				t.Errorf("%s:%d: in %s: %v", f.rel, b.Line, script, err)
				continue
			}
			lines := strings.Split(string(data), "\n")
			for i := range lines {
				lines[i] = strings.TrimSpace(lines[i])
			}
			for _, cmd := range commands(b.Text) {
				if !slices.Contains(lines, cmd) {
					t.Errorf("%s:%d: the block says %s runs it, but %s has no line %q", f.rel, b.Line, script, script, cmd)
				}
			}
		}
	}
	t.Logf("%d shell blocks, %d of them not run here", shell, skipped)
	if shell == 0 {
		t.Error("no shell block in any README: the parser or the list is wrong")
	}
}

// commands returns a block's command lines: trimmed, without comment
// lines or trailing comments.
func commands(text string) []string {
	var cmds []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, " #"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

var (
	runSockRE      = regexp.MustCompile(`/run/[A-Za-z0-9_./-]*\.sock\b`)
	nginxUnixRE    = regexp.MustCompile(`(?m)^\s*server\s+unix:(\S+?)[\s;]`)
	readmeSocketRE = regexp.MustCompile(`\$\{SOCKET:-([^}]+)\}`)
)

// TestOneSocketPath: the README's quickstart, the socket unit and the
// nginx example must name one unix socket, or nginx, set up as the
// READMEs say, answers 502.
func TestOneSocketPath(t *testing.T) {
	root := repoRoot(t)
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var want string
	for _, l := range strings.Split(read("systemd/server.socket"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ListenStream=/"); ok {
			if want != "" {
				t.Fatalf("server.socket: two unix sockets, %s and /%s", want, v)
			}
			want = "/" + v
		}
	}
	if want == "" {
		t.Fatal("server.socket: no unix ListenStream=")
	}
	if m := nginxUnixRE.FindStringSubmatch(read("examples/nginx/remuda.conf")); m == nil || m[1] != want {
		t.Errorf("examples/nginx/remuda.conf: upstream %q, want unix:%s as in server.socket", m, want)
	}
	if m := readmeSocketRE.FindStringSubmatch(read("README.md")); m == nil || m[1] != want {
		t.Errorf("README.md: ${SOCKET:-…} default %q, want %s as in server.socket", m, want)
	}
	// Every /run/….sock any of them mentions, but Gunicorn's own.
	files := []string{"README.md", "systemd/README.md", "systemd/server.service", "systemd/server.socket", "examples/nginx/remuda.conf"}
	more, _ := filepath.Glob(filepath.Join(root, "examples/*/README.md"))
	for _, m := range more {
		rel, _ := filepath.Rel(root, m)
		files = append(files, rel)
	}
	for _, rel := range files {
		for _, p := range runSockRE.FindAllString(read(rel), -1) {
			if p != want && p != "/run/gunicorn.sock" {
				t.Errorf("%s: mentions %s, want %s as in server.socket", rel, p, want)
			}
		}
	}
}

// copyDir is where freshCopy puts the repository, the same path at every
// run and for every README: Go's build cache keys a package on its
// directory, so at one path the READMEs' builds after the first take
// seconds, not a minute each. lockFile keeps two runs on one machine apart.
var (
	copyDir  = filepath.Join(os.TempDir(), "remuda-readmetest", "remuda")
	lockFile = filepath.Join(os.TempDir(), "remuda-readmetest.lock")
)

// lockCopyDir waits until no other test process uses copyDir, and holds
// it until the test ends.
func lockCopyDir(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("flock %s: %v", lockFile, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// freshCopy replaces copyDir with the repository's files, as a fresh clone
// of the tree as it stands would hold them (tracked and new files, not
// ignored ones: on CI, itself a fresh clone, exactly the clone).
func freshCopy(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("git ls-files in %s: %v: not a git work tree", root, err)
	}
	dst := copyDir
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		info, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the tree, not committed yet
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				t.Fatal(err)
			}
			err = os.Symlink(target, to)
		case info.Mode().IsRegular():
			var b []byte
			if b, err = os.ReadFile(src); err == nil {
				err = os.WriteFile(to, b, info.Mode().Perm())
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// environment is the runner's environment less SERVER_* and the README's
// named variables, plus the values the runner gives those it adapts.
func environment(t *testing.T, names []string) (env, set []string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SERVER_") || slices.Contains(names, k) {
			continue
		}
		env = append(env, kv)
	}
	scratch := t.TempDir()
	for _, n := range names {
		var v string
		switch {
		case strings.HasSuffix(n, "PORT"):
			_, v, _ = net.SplitHostPort(proctest.FreeAddr(t))
		case strings.HasSuffix(n, "SOCKET"):
			v = filepath.Join(scratch, strings.ToLower(n)+".sock")
		case strings.HasSuffix(n, "DIR"):
			v = filepath.Join(scratch, strings.ToLower(n))
			if err := os.Mkdir(v, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			continue // the README's default
		}
		set = append(set, n+"="+v)
	}
	return append(env, set...), set
}

// jobGrace is how long jobs still running when a README ends get to end
// by themselves (a server the README stopped drains first).
const jobGrace = 10 * time.Second

// script is the bash program that runs a README's shell blocks in order.
func script(rel string, blocks []Block, grace time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "readmetest_grace=%d\n", max(1, grace/(100*time.Millisecond)))
	s.WriteString(`set -euo pipefail
set -m -b
readmetest_cleanup() {
	set +x
	local i p
	# Jobs the README stopped may still be draining.
	for i in $(seq "$readmetest_grace"); do
		[ -z "$(jobs -pr)" ] && break
		sleep 0.1
	done
	for p in $(jobs -pr); do
		echo "readmetest: job $p still running at the end: killed" >&2
		kill -KILL -- "-$p" 2>/dev/null || true
	done
}
trap readmetest_cleanup EXIT
set -x
`)
	for _, b := range blocks {
		fmt.Fprintf(&s, ": '### %s:%d'\n%s", rel, b.Line, b.Text)
	}
	return s.String()
}

// TestReadmes runs the shell blocks of every README, each README in a
// fresh copy of the repository.
func TestReadmes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the READMEs build the server and run it (tens of seconds)")
	}
	if proctest.RaceEnabled() {
		t.Skip("race detector: it would check nothing of the processes the READMEs start")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash not found")
	}
	root := repoRoot(t)
	lockCopyDir(t)
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(copyDir)) }) // before the unlock: cleanups run last in, first out
	start := time.Now()
	// One after the other, in one directory: see copyDir.
	for _, f := range loadReadmes(t, root) {
		t.Run(f.rel, func(t *testing.T) { runReadme(t, root, f) })
	}
	t.Logf("every README in %s", time.Since(start).Round(time.Millisecond))
}

func runReadme(t *testing.T, root string, f readmeFile) {
	var run []Block
	for _, b := range f.blocks {
		switch {
		case !b.IsShell():
		case b.Skip() != "":
			t.Logf("%s:%d: not run: %s", f.rel, b.Line, b.Skip())
		case b.RanBy() != "":
			t.Logf("%s:%d: not run here: %s runs it (TestMarkers checks)", f.rel, b.Line, b.RanBy())
		default:
			run = append(run, b)
		}
	}
	if len(run) == 0 {
		t.Skipf("%s has no shell block to run", f.rel)
	}
	dir := freshCopy(t, root)
	env, set := environment(t, Named(run))
	start := time.Now()
	out, err := execute(t, dir, env, script(f.rel, run, jobGrace), readmeTimeout)
	t.Logf("%s: %d shell blocks run in %s, with %q\n%s", f.rel, len(run), time.Since(start).Round(time.Millisecond), set, out)
	if err != nil {
		t.Fatalf("%s: %v (the output above ends at the failing command)", f.rel, err)
	}
}

// execute runs a script with bash in dir and returns its output, stdout
// and stderr interleaved.
func execute(t *testing.T, dir string, env []string, program string, timeout time.Duration) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "readme.sh")
	if err := os.WriteFile(path, []byte(program), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On timeout, TERM to bash's process group: bash's EXIT trap then
	// kills the jobs, each in a group of its own (set -m).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %s: %w", timeout, err)
	}
	return out.String(), err
}
