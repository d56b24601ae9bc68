// Package pgtest runs a throwaway PostgreSQL server for tests: a cluster
// made by initdb in a temporary directory, listening on a free port of
// 127.0.0.1 with trust authentication, fsync off, and removed when the
// test (or, for the shared cluster, the test binary) ends. Only tests
// import it.
//
// The server binaries are looked for in /usr/lib/postgresql/<version>/bin
// (Debian's layout; the newest version wins), then on PATH. Without them a
// test that asks for a cluster is skipped, with the package to install.
//
// PostgreSQL refuses to run as root. When the test runs as root (as in
// CI), initdb and postgres run as the "postgres" OS user, in a temporary
// directory given to that user.
//
// Every server process carries proctest's run mark in its environment, so
// proctest.Leftovers reports a server that outlived its tests. The server
// is also started with a parent-death signal: if the test binary dies
// without cleaning up (a panic, a -timeout), the kernel kills the
// postmaster, and its backends exit when they see it gone.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/remuda/remuda/internal/proctest"
)

// MaxConnections is the server's max_connections: room for the
// multi-process tests, whose every process holds a pool.
const MaxConnections = 200

// startTimeout bounds initdb and the wait for a started server to accept
// queries: generous, the machine may be busy.
const startTimeout = 60 * time.Second

// Cluster is one running (or stopped) PostgreSQL server and its data
// directory. Its methods are safe for concurrent use.
type Cluster struct {
	bin  string              // directory of initdb and postgres
	dir  string              // temporary root: data/, the socket, owned by the server's user
	cred *syscall.Credential // whom the server runs as; nil: as us
	port int

	mu     sync.Mutex
	server *exec.Cmd     // nil when stopped
	exited chan struct{} // closed when server has exited
	log    *logBuffer

	dbs atomic.Int64 // databases made by NewDatabase
}

// Start makes and starts a cluster of the test's own, which t.Cleanup
// stops and removes. It skips the test when PostgreSQL is not installed.
// Use it for a test that stops or restarts the server; Shared is cheaper
// otherwise.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start()
	if errors.Is(err, errNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.remove)
	return c
}

var shared struct {
	sync.Mutex
	c   *Cluster
	err error
}

// Shared returns the test binary's shared cluster, started on first use
// (one initdb for the whole package). Give each test a database of its
// own with NewDatabase. A package that calls Shared must call Run from its
// TestMain, which stops the cluster once the tests are done; do not Stop
// or Restart it. Shared skips the test when PostgreSQL is not installed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start()
	}
	if errors.Is(shared.err, errNotInstalled) {
		t.Skip(shared.err)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.c
}

// Run runs the tests, then stops and removes the shared cluster if one was
// started; it returns m.Run's code. Call it from TestMain in place of
// m.Run.
func Run(m *testing.M) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		shared.c.remove()
		shared.c = nil
	}
	return code
}

var errNotInstalled = errors.New("pgtest: PostgreSQL server not installed: apt-get install postgresql")

// binDir finds the directory of initdb and postgres.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if d := filepath.Dir(p); executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errNotInstalled
}

// pgVersion is the major version of a /usr/lib/postgresql/<v>/bin path.
func pgVersion(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// start makes a cluster: initdb, then the server.
func start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, log: &logBuffer{}}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses root: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are root's and closed to the server's user.
	if c.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.RemoveAll(c.dir)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	if c.port, err = freePort(); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := c.command(ctx, "initdb", "--pgdata", c.dataDir(), "--username", "postgres",
		"--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	if err := c.run(); err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// command prepares a server binary to run as the server's user, in the
// cluster's directory, marked as a process of this test run.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), proctest.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run starts the server and waits until it accepts queries.
func (c *Cluster) run() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server != nil {
		return errors.New("pgtest: server already running")
	}
	cmd := c.command(context.Background(), "postgres",
		"-D", c.dataDir(),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.dir,
		"-c", "max_connections="+strconv.Itoa(MaxConnections),
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
	)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.WaitDelay = 5 * time.Second // backends hold the log pipe a moment longer
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.server, c.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-exited:
			c.server = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s\n%s", cmd.ProcessState, c.log)
		case <-ctx.Done():
			c.killLocked()
			return fmt.Errorf("pgtest: postgres not ready within %v: %w\n%s", startTimeout, err, c.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// URL is the connection URL of database db, as the superuser postgres.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// NewDatabase creates an empty database and returns its URL. The database
// goes with the cluster.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return c.URL(name)
}

// Stop shuts the server down the way an operator's fast shutdown does: the
// open sessions are terminated (SQLSTATE 57P01) and the server exits; then
// connections are refused until Restart.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
}

// Restart starts the stopped server again, on the same port and data, and
// waits until it accepts queries.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := c.run(); err != nil {
		t.Fatal(err)
	}
}

// stop sends sig to the postmaster and waits for it to exit, killing its
// process group after a grace period.
func (c *Cluster) stop(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return nil
	}
	c.server.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.killLocked()
		return fmt.Errorf("pgtest: postgres did not stop within 30s of %v; killed\n%s", sig, c.log)
	}
	// Backends exit with the postmaster; make sure, as they share its group.
	syscall.Kill(-c.server.Process.Pid, syscall.SIGKILL)
	c.server = nil
	return nil
}

// killLocked kills the server's process group and waits for the
// postmaster.
func (c *Cluster) killLocked() {
	if c.server == nil {
		return
	}
	syscall.Kill(-c.server.Process.Pid, syscall.SIGKILL)
	<-c.exited
	c.server = nil
}

// remove stops the server at once (immediate shutdown) and deletes its
// directory.
func (c *Cluster) remove() {
	if err := c.stop(syscall.SIGQUIT); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.RemoveAll(c.dir)
}

// freePort returns a TCP port of 127.0.0.1 free right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// logBuffer keeps the server's output for error messages.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 8<<10 {
		s = "…" + s[len(s)-8<<10:]
	}
	return strings.TrimSpace(s)
}
