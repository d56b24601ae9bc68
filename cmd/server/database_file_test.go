package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the test's own reads of a database file

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/internal/proctest"
)

// The database of a prod server is created once, by its master as it
// starts (or by `server migrate`, createuser, importusers), never by a
// worker; removed or replaced under a running server, it is reported
// within a second, and the auth endpoints answer 503.

// migrateDatabase runs `server migrate --database database`, as an operator
// does before a first start, and returns its output.
func migrateDatabase(t *testing.T, database string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "migrate", "--database", database)
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("server migrate --database %s: %v\n%s", database, err, out)
	}
	return string(out)
}

func TestMigrateCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	if out := migrateDatabase(t, "sqlite:"+path); out != "migrated "+path+" (created)\n" {
		t.Errorf("first migrate: %q, want %q", out, "migrated "+path+" (created)\n")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want -rw-------", fi.Mode().Perm())
	}
	if out := migrateDatabase(t, "sqlite:"+path); out != "migrated "+path+"\n" {
		t.Errorf("second migrate: %q, want %q", out, "migrated "+path+"\n")
	}
}

// TestProdMasterCreatesItsDatabase starts prod on a path where no
// database is: the master creates it before the first worker starts, says
// so once, and the workers serve from it; a HUP creates nothing.
func TestProdMasterCreatesItsDatabase(t *testing.T) {
	s := startSite(t, t.TempDir())
	created := s.p.Find(proctest.Msg("database created"))
	if len(created) != 1 || created[0].Fields["path"] != s.db || created[0].Fields["level"] != "warn" {
		t.Fatalf("database created lines %v: want one warning naming %s", created, s.db)
	}
	fi, err := os.Stat(s.db)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want -rw-------", fi.Mode().Perm())
	}
	withUser(t, s)
	login(t, s, "alice", "correct horse")

	s.p.Signal(t, syscall.SIGHUP)
	s.p.WaitReady(t, 2)
	if n := len(s.p.Find(proctest.Msg("database created"))); n != 1 {
		t.Errorf("%d database created lines after a HUP, want still 1", n)
	}
	login(t, s, "alice", "correct horse")
}

// withUser adds alice to the site's database through a store of the
// test's own, closed at once: the test holds no connection to the file.
func withUser(t *testing.T, s *site) auth.User {
	t.Helper()
	st, err := auth.OpenSQLite(s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return addUser(t, st, "alice", "correct horse", true)
}

// waitFileLost waits until every worker has logged that the database file
// is gone, and returns how long after since the last line came.
func waitFileLost(t *testing.T, s *site, workers int, since time.Time, want string) time.Duration {
	t.Helper()
	lines := s.p.WaitFor(t, 5*time.Second, workers, "workers reporting the database file "+want, proctest.Msg("database file removed or replaced"))
	took := time.Since(since)
	for _, l := range lines {
		if l.Fields["path"] != s.db || !strings.Contains(l.Raw, s.db+" was "+want) || l.Fields["level"] != "error" {
			t.Errorf("log line %s: want an error with path %s saying it was %s", l.Raw, s.db, want)
		}
	}
	return took
}

// unavailable checks that the token endpoints answer 503 and that a valid
// access token still opens the protected route.
func unavailable(t *testing.T, s *site, access, refresh string) {
	t.Helper()
	const body = `{"detail":"The authentication service is temporarily unavailable. Try again shortly.","code":"service_unavailable"}`
	for _, c := range []struct{ what, path, json string }{
		{"login", "/api/token/", jsonBody("username", "alice", "password", "correct horse")},
		{"refresh", "/api/token/refresh/", jsonBody("refresh", refresh)},
		{"verify a refresh token", "/api/token/verify/", jsonBody("token", refresh)},
		{"blacklist", "/api/token/blacklist/", jsonBody("refresh", refresh)},
	} {
		r := postJSON(t, s.url+c.path, c.json)
		want(t, c.what, r, 503, body)
		if r.header.Get("Retry-After") != "5" {
			t.Errorf("%s: Retry-After %q, want 5", c.what, r.header.Get("Retry-After"))
		}
	}
	want(t, "protected route with a valid token", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
}

// TestDatabaseRemovedUnderProd removes the database (and its -wal and
// -shm files) under a running prod server: every worker reports it within
// seconds, naming the path; the auth endpoints answer 503; a HUP's new
// workers refuse to boot rather than create an empty database, and the
// old ones keep answering.
func TestDatabaseRemovedUnderProd(t *testing.T) {
	if testing.Short() {
		t.Skip("a prod server and a HUP")
	}
	s := startSite(t, t.TempDir())
	withUser(t, s)
	access, refresh := login(t, s, "alice", "correct horse")

	removed := time.Now()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(s.db + suffix)
	}
	took := waitFileLost(t, s, 4, removed, "removed")
	t.Logf("removal reported by the 4 workers within %v", took)
	if took > 3*time.Second {
		t.Errorf("removal reported after %v, want within 3s", took)
	}
	unavailable(t, s, access, refresh)

	s.p.Signal(t, syscall.SIGHUP)
	s.p.WaitFor(t, 30*time.Second, 1, "the new generation's failure", proctest.Msg("new generation failed to boot, keeping the old one"))
	if lines := s.p.Find(proctest.Msg("worker stopped")); len(lines) == 0 || !strings.Contains(lines[0].Raw, "server migrate") {
		t.Errorf("a new worker's boot error %v: want it to say `server migrate`", lines)
	}
	if _, err := os.Stat(s.db); !os.IsNotExist(err) {
		t.Fatalf("after a HUP, a file is at %s: stat %v; want none (never an empty database)", s.db, err)
	}
	unavailable(t, s, access, refresh)
}

// TestDatabaseReplacedUnderProd moves a backup over the database of a
// running prod server: every worker reports it within seconds, the auth
// endpoints answer 503 rather than serve from a file that is no longer
// the database, and a restart serves from the backup.
func TestDatabaseReplacedUnderProd(t *testing.T) {
	if testing.Short() {
		t.Skip("two prod servers")
	}
	dir := t.TempDir()
	s := startSite(t, dir)
	withUser(t, s)
	backup := filepath.Join(dir, "backup.db")
	db, err := sql.Open("sqlite", s.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), `VACUUM INTO ?`, backup); err != nil {
		t.Fatal(err)
	}
	db.Close()
	access, refresh := login(t, s, "alice", "correct horse")

	replaced := time.Now()
	if err := os.Rename(backup, s.db); err != nil {
		t.Fatal(err)
	}
	took := waitFileLost(t, s, 4, replaced, "replaced")
	t.Logf("replacement reported by the 4 workers within %v", took)
	if took > 3*time.Second {
		t.Errorf("replacement reported after %v, want within 3s", took)
	}
	unavailable(t, s, access, refresh)

	s.p.Signal(t, syscall.SIGTERM)
	s.p.Wait(t, 30*time.Second)
	s = startSite(t, dir)
	login(t, s, "alice", "correct horse")
}
