package server

// Reload on code change, dev only.
//
// The dev server watches the Go sources of the main module it was built
// from (polling mtimes every reloadPoll: no fsnotify dependency), rebuilds
// the main package with `go build` when they change, and on success
// replaces itself with the new binary by syscall.Exec: same PID, same
// terminal, no chain of parents growing at every reload. Before the exec it
// drains (the connections already queued are served, in-flight requests
// finish) and hands its listening sockets over: their descriptors are
// duplicated without FD_CLOEXEC, so they survive the exec, and their numbers
// travel in envDevListenFDS, which the new process reads and unsets and
// serves on instead of binding. Between the drain and the moment the new
// code serves, nobody accepts, but the sockets stay open: new connections
// wait in the kernel's backlog and are served late, never refused.
//
// A build that fails leaves the old code serving; the compiler's message is
// printed. Reload is off with SERVER_RELOAD=0, and unavailable (logged once)
// when the binary has no module build info, was built from a file list or as
// a test, no go.mod of its main module is found from the working directory
// up, or there is no go command on PATH.
//
// Only the main module is watched: a replace directive pointing at another
// directory is not followed.
//
// How builds are named: by os.CreateTemp in the build directory. Each build
// reserves <name>-<random> (created empty with O_EXCL; go build overwrites
// it), so its name differs from the running binary's and from every earlier
// build's, and nothing needs to survive the exec for that. The PID and a
// counter did not do: exec keeps the PID and restarts the counter, so the
// second reload built over the running binary's own name, removed it as the
// predecessor's binary, and could not exec it. A failed build removes
// its file, and the running binary, when a reload built it, is removed just
// before the exec (Linux keeps a running executable's inode): the directory
// holds the running binary and the build in progress, if any, and the
// process that stops rather than reloads removes it. The directory travels
// in envDevBuildDir and is taken as ours only when the running binary lies
// in it: a variable set by hand cannot make the server remove another
// directory.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

const (
	// envDevListenFDS carries, across a dev reload's exec, the numbers of
	// the inherited listening descriptors, comma-separated, in --bind order.
	envDevListenFDS = "REMUDA_DEV_LISTEN_FDS"
	// envDevBuildDir is the directory the reloads build into, kept across
	// execs and removed when the dev server stops.
	envDevBuildDir = "REMUDA_DEV_BUILD_DIR"
	// envDevBuilt is the fingerprint of the sources the running binary was
	// built from: a change made during a build triggers the next at once.
	envDevBuilt = "REMUDA_DEV_BUILT"
	// envReload set to "0", "false" or "off" turns reload off.
	envReload = "SERVER_RELOAD"
	// reloadPoll is how often the sources' mtimes are polled.
	reloadPoll = 300 * time.Millisecond
)

// devInherited is what a reloaded dev process received from its
// predecessor, read (and unset) once at start by takeDevInherited.
type devInherited struct {
	fds      []int
	buildDir string
	built    uint64
}

// takeDevInherited reads and unsets the environment a dev reload passes.
func takeDevInherited() (devInherited, error) {
	var in devInherited
	fds, dir, built := os.Getenv(envDevListenFDS), os.Getenv(envDevBuildDir), os.Getenv(envDevBuilt)
	os.Unsetenv(envDevListenFDS)
	os.Unsetenv(envDevBuildDir)
	os.Unsetenv(envDevBuilt)
	// The directory is ours (close removes it whole) only if a reload
	// built the running binary there.
	if dir != "" && filepath.Dir(os.Args[0]) == filepath.Clean(dir) {
		in.buildDir = dir
	}
	in.built, _ = strconv.ParseUint(built, 16, 64)
	if fds == "" {
		return in, nil
	}
	for s := range strings.SplitSeq(fds, ",") {
		fd, err := strconv.Atoi(s)
		if err != nil || fd < 3 {
			return in, fmt.Errorf("%s=%q: want comma-separated descriptor numbers", envDevListenFDS, fds)
		}
		in.fds = append(in.fds, fd)
	}
	return in, nil
}

// listeners turns the inherited descriptors into listeners; the
// descriptors themselves are closed (net.FileListener keeps a duplicate,
// close-on-exec, so later children do not inherit them).
func (in devInherited) listeners() ([]net.Listener, error) {
	var lns []net.Listener
	for _, fd := range in.fds {
		f := os.NewFile(uintptr(fd), "listener-"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("inherited listener fd %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// reloader watches a main module's sources and rebuilds its main package.
type reloader struct {
	log      *zap.Logger
	goCmd    string // the go command
	root     string // the main module's directory
	pkg      string // the main package's import path
	name     string // the binary's base name
	buildDir string // where builds go; the process that exits (rather than
	// reloading) removes it: exec keeps the PID, so that is one process
	built uint64 // fingerprint of the sources the running binary came from
}

// newReloader returns a reloader for the running binary, or nil (logged)
// when reload is off or unavailable.
func newReloader(log *zap.Logger, in devInherited) *reloader {
	switch strings.ToLower(os.Getenv(envReload)) {
	case "0", "false", "off", "no":
		log.Info("reload on code change is off", zap.String("env", envReload))
		return nil
	}
	unavailable := func(why string) *reloader {
		log.Info("reload on code change unavailable: restart the server by hand after a change", zap.String("reason", why))
		return nil
	}
	bi, ok := debug.ReadBuildInfo()
	switch {
	case !ok || bi.Main.Path == "":
		return unavailable("the binary has no module build info")
	case bi.Path == "command-line-arguments":
		return unavailable("built from a list of files: build or run the package instead (go run .)")
	case strings.HasSuffix(bi.Path, ".test"):
		return unavailable("a test binary")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return unavailable("no go command on PATH")
	}
	wd, err := os.Getwd()
	if err != nil {
		return unavailable("no working directory")
	}
	root, err := findModule(wd, bi.Main.Path)
	if err != nil {
		return unavailable(err.Error())
	}
	r := &reloader{log: log, goCmd: goCmd, root: root, pkg: bi.Path, name: filepath.Base(bi.Path), buildDir: in.buildDir, built: in.built}
	if r.buildDir == "" {
		r.buildDir, err = os.MkdirTemp("", "remuda-dev-")
		if err != nil {
			return unavailable("no temporary directory: " + err.Error())
		}
	}
	if r.built == 0 {
		r.built = r.fingerprint()
	}
	return r
}

// findModule looks for the go.mod of module from dir up to the root, as the
// go command does, and returns its directory.
func findModule(dir, module string) (string, error) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if got := modulePath(b); got != module {
				return "", fmt.Errorf("%s is module %q, not the binary's %q", filepath.Join(dir, "go.mod"), got, module)
			}
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %q in the working directory or above", module)
		}
		dir = parent
	}
}

// modulePath is the module line of a go.mod.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`+"`")
		}
	}
	return ""
}

// fingerprint hashes the path, size and mtime of the module's non-test Go
// files, go.mod and go.sum. Hidden, underscore, testdata and vendor
// directories and nested modules are skipped, as the go command does.
func (r *reloader) fingerprint() uint64 {
	h := fnv.New64a()
	filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed during the walk, or unreadable: skip it
		}
		name := d.Name()
		if d.IsDir() {
			if path == r.root {
				return nil
			}
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		watched := strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") ||
			path == filepath.Join(r.root, "go.mod") || path == filepath.Join(r.root, "go.sum")
		if !watched {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", path, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return h.Sum64()
}

// watch polls the sources until they change and build, and returns the
// new binary's path. A failed build is printed and the watch goes on. It
// returns "" when stop is closed.
func (r *reloader) watch(stop <-chan struct{}) string {
	t := time.NewTicker(reloadPoll)
	defer t.Stop()
	seen := r.built
	pending := r.fingerprint() != r.built // changed while the last build ran
	for {
		select {
		case <-stop:
			return ""
		case <-t.C:
		}
		fp := r.fingerprint()
		if fp != seen {
			// An editor may write in several steps: build once the
			// sources stay still for a poll.
			seen, pending = fp, true
			continue
		}
		if !pending {
			continue
		}
		pending = false
		bin, err := r.build(stop)
		if err != nil {
			continue // reported by build; wait for the next change
		}
		r.built = fp
		return bin
	}
}

// build runs go build for the main package into a file of its own (see
// how builds are named, at the top), and returns the new binary's path. A
// compile error is printed as is, under a line saying so. Closing stop
// kills the build (the server is stopping). On failure no file is left.
func (r *reloader) build(stop <-chan struct{}) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r.log.Info("sources changed: rebuilding", zap.String("package", r.pkg))
	f, err := os.CreateTemp(r.buildDir, r.name+"-*")
	if err != nil {
		r.log.Warn("no file to build into: still serving the previous code", zap.Error(err))
		return "", err
	}
	bin := f.Name()
	f.Close()
	start := time.Now()
	cmd := exec.CommandContext(ctx, r.goCmd, "build", "-o", bin, r.pkg)
	cmd.Dir = r.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.Remove(bin)
		if ctx.Err() != nil {
			return "", err // stopping: nothing to report
		}
		r.log.Warn("build failed: still serving the previous code; the compiler says:", zap.Error(err))
		fmt.Fprintf(os.Stderr, "%s\n--- end of go build output ---\n", bytes.TrimRight(out.Bytes(), "\n"))
		return "", err
	}
	r.log.Info("build done: switching to the new code", zap.Duration("duration", time.Since(start)))
	return bin, nil
}

// close removes the build directory, at exit.
func (r *reloader) close() {
	if r != nil {
		os.RemoveAll(r.buildDir)
	}
}

// handOver duplicates the listeners' descriptors without FD_CLOEXEC, so
// they survive exec, and stops the listeners from unlinking their unix
// socket files when closed. It returns the descriptor numbers; on error,
// none (it closes the duplicates it made).
func handOver(lns []net.Listener) (fds []int, err error) {
	defer func() {
		if err != nil {
			closeFDs(fds)
			fds = nil
		}
	}()
	for _, ln := range lns {
		sc, ok := ln.(syscall.Conn)
		if !ok {
			return fds, fmt.Errorf("listener %s: no descriptor", ln.Addr())
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return fds, err
		}
		var dup int
		var dupErr error
		if err := rc.Control(func(fd uintptr) {
			// Go opens every file close-on-exec; a dup is not.
			syscall.ForkLock.RLock()
			dup, dupErr = syscall.Dup(int(fd))
			syscall.ForkLock.RUnlock()
		}); err != nil {
			return fds, err
		}
		if dupErr != nil {
			return fds, fmt.Errorf("dup listener %s: %w", ln.Addr(), dupErr)
		}
		fds = append(fds, dup)
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
	}
	return fds, nil
}

// closeFDs closes descriptors handOver made, when they are not passed on.
func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// execReload replaces the process with bin, passing the listening
// descriptors fds; it returns only on failure.
func (r *reloader) execReload(bin string, fds []int) error {
	strs := make([]string, len(fds))
	for i, fd := range fds {
		strs[i] = strconv.Itoa(fd)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == envDevListenFDS || k == envDevBuildDir || k == envDevBuilt
	})
	env = append(env,
		envDevListenFDS+"="+strings.Join(strs, ","),
		envDevBuildDir+"="+r.buildDir,
		envDevBuilt+"="+strconv.FormatUint(r.built, 16),
	)
	// The running binary, when an earlier reload built it, is ours to
	// remove: Linux keeps its inode until the exec replaces it. Builds
	// never reuse a name, so it is not bin; the check costs nothing.
	self := os.Args[0]
	if filepath.Dir(self) == filepath.Clean(r.buildDir) && self != bin {
		os.Remove(self)
	}
	r.log.Sync()
	err := syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), env)
	return fmt.Errorf("exec %s: %w", bin, err)
}
