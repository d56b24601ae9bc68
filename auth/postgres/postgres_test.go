package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/auth/internal/storetest"
	"github.com/remuda/remuda/auth/internal/testkit"
	"github.com/remuda/remuda/internal/pgtest"
	"github.com/remuda/remuda/internal/proctest"
)

// TestMain lets the test binary impersonate a worker process opening the
// store (child). It stops the shared PostgreSQL cluster once the tests
// are done, and fails the run if a process it started outlived them.
func TestMain(m *testing.M) {
	testkit.RunChild(envChild, child)
	code := pgtest.Run(m)
	if left := proctest.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "processes outlived the tests: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// cluster returns the package's shared PostgreSQL cluster. The
// PostgreSQL tests are skipped in -short mode: the first one pays for an
// initdb (seconds on a busy machine).
func cluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL tests are not short")
	}
	return pgtest.Shared(t)
}

// openTest opens a Store on a new, empty database.
func openTest(t *testing.T) *Store {
	t.Helper()
	return openAt(t, cluster(t).NewDatabase(t))
}

func openAt(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresStore(t *testing.T) {
	c := cluster(t)
	storetest.Run(t, func(t *testing.T) auth.Store { return openAt(t, c.NewDatabase(t)) })
	storetest.RunFaults(t, func(t *testing.T) (auth.Store, storetest.Faults) {
		url := c.NewDatabase(t)
		return openAt(t, url), faults{url}
	})
}

func TestPostgresImportRefreshTokens(t *testing.T) {
	c := cluster(t)
	storetest.ImportRefreshTokens(t, func(t *testing.T) storetest.Importer { return openAt(t, c.NewDatabase(t)) })
}

// TestPostgresRefreshAfterFailedWrite fails the new token's insert as a
// full disk would, after the presented token's consumption, during a
// refresh (storetest.RefreshAfterFailedWrite).
func TestPostgresRefreshAfterFailedWrite(t *testing.T) {
	url := cluster(t).NewDatabase(t)
	f := faults{url}
	storetest.RefreshAfterFailedWrite(t, openAt(t, url), func(presented string) {
		f.failInserts(t, "NEW.jti <> '"+presented+"'")
	}, func() { f.Heal(t) })
}

// faults fails inserts with a trigger that raises disk_full, as
// a full disk would.
type faults struct{ url string }

// exec runs statements on a connection of its own.
func (f faults) exec(t *testing.T, stmts ...string) {
	t.Helper()
	c, err := pgx.Connect(t.Context(), f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, stmt := range stmts {
		if _, err := c.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func (f faults) FailRefreshInsert(t *testing.T, jti string) {
	t.Helper()
	f.failInserts(t, "NEW.jti = '"+jti+"'")
}

// failInserts makes the inserts of refresh tokens that meet cond (a
// PL/pgSQL condition on NEW) fail; Heal undoes it.
func (f faults) failInserts(t *testing.T, cond string) {
	t.Helper()
	f.exec(t, `CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF `+cond+` THEN
				RAISE EXCEPTION 'injected fault: no space left on device' USING ERRCODE = 'disk_full';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER injected_fault BEFORE INSERT ON refresh_tokens FOR EACH ROW EXECUTE FUNCTION injected_fault()`)
}

func (f faults) Heal(t *testing.T) {
	t.Helper()
	f.exec(t, `DROP TRIGGER injected_fault ON refresh_tokens`, `DROP FUNCTION injected_fault()`)
}

func TestPostgresConfig(t *testing.T) {
	tests := []struct {
		name, url string
		maxConns  int32
		timeout   time.Duration
		app       string
	}{
		{"defaults", "postgres://u@db.example/app", DefaultPool, DefaultConnectTimeout, "remuda"},
		{"URL's own", "postgres://u@db.example/app?pool_max_conns=9&connect_timeout=7&application_name=billing", 9, 7 * time.Second, "billing"},
		{"key=value", "host=db.example user=u pool_max_conns=2", 2, DefaultConnectTimeout, "remuda"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := poolConfig(tt.url)
			if err != nil {
				t.Fatalf("poolConfig(%q): %v", tt.url, err)
			}
			if cfg.MaxConns != tt.maxConns {
				t.Errorf("MaxConns: got %d, want %d", cfg.MaxConns, tt.maxConns)
			}
			if cfg.ConnConfig.ConnectTimeout != tt.timeout {
				t.Errorf("ConnectTimeout: got %v, want %v", cfg.ConnConfig.ConnectTimeout, tt.timeout)
			}
			if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != tt.app {
				t.Errorf("application_name: got %q, want %q", got, tt.app)
			}
			if _, ok := cfg.ConnConfig.RuntimeParams["pool_max_conns"]; ok {
				t.Error("pool_max_conns left among the run-time parameters")
			}
		})
	}
	_, err := poolConfig("postgres://u:s3cret@db.example:notaport/app")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("poolConfig of a bad URL: got error %v, want one without the password", err)
	}
}

// TestPostgresRecords checks what the rows hold where the Store interface
// cannot tell, and the connection settings.
func TestPostgresRecords(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	var app string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&app); err != nil || app != "remuda" {
		t.Errorf("application_name: got %q, %v; want remuda", app, err)
	}
	storetest.Add(t, s, "c", "c")
	storetest.Consume(t, s, "c", auth.ConsumeOK)
	storetest.Consume(t, s, "c", auth.ConsumeReused)
	var consumed time.Time
	if err := s.pool.QueryRow(ctx, `SELECT consumed_at FROM refresh_tokens WHERE jti = 'c'`).Scan(&consumed); err != nil || !consumed.Equal(storetest.Now) {
		t.Errorf("consumed_at: got %v, %v; want %v", consumed, err, storetest.Now)
	}
	if err := s.AddRefresh(ctx, auth.RefreshToken{JTI: "x", Family: "x", UserID: "alice", ExpiresAt: storetest.Now}); err == nil {
		t.Error("AddRefresh with a non-decimal user id: got no error")
	}
}

// versions returns the rows of the version table.
func versions(t *testing.T, url string) (versions []int) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT version FROM remuda_schema ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

func checkVersions(t *testing.T, url string) {
	t.Helper()
	got := versions(t, url)
	want := make([]int, len(schema))
	for i := range want {
		want[i] = i + 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("remuda_schema versions: got %v, want %v (one row each)", got, want)
	}
}

// TestPostgresOpenConcurrent opens 20 stores at once on an empty database,
// as the workers of two hosts do at boot: none may fail, and each
// migration is applied once.
func TestPostgresOpenConcurrent(t *testing.T) {
	const n = 20
	url := cluster(t).NewDatabase(t)
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), url)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	t.Logf("%d concurrent opens of an empty database: %v", n, time.Since(start))
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	checkVersions(t, url)
	// And again, on the migrated database.
	openAt(t, url)
	checkVersions(t, url)
}

func TestPostgresNewerSchemaRefused(t *testing.T) {
	url := cluster(t).NewDatabase(t)
	s := openAt(t, url)
	if _, err := s.pool.Exec(t.Context(), `INSERT INTO remuda_schema VALUES (99, now())`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), url); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a version 99 database: got error %v, want one naming schema version 99", err)
	}
}

// envChild, set to a database URL, makes the test binary a child
// of TestPostgresProcesses.
const envChild = "REMUDA_TEST_POSTGRES_CHILD"

// childJTI is the refresh token every child adds and consumes.
const childJTI = "multi-process"

// childOpens is how many stores each child opens at once.
const childOpens = 5

// child is a child of TestPostgresProcesses. It prints "ready",
// waits for its stdin to close, then opens childOpens stores at
// once on the database at url; each adds and consumes childJTI once
// and prints "result=<ConsumeResult>".
func child(url string) error {
	fmt.Println("ready")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("wait for start: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out []string
		all []error
	)
	for range childOpens {
		wg.Go(func() {
			res, err := func() (auth.ConsumeResult, error) {
				s, err := Open(ctx, url)
				if err != nil {
					return 0, err
				}
				defer s.Close()
				rt := auth.RefreshToken{JTI: childJTI, Family: childJTI, UserID: "1", ExpiresAt: time.Now().Add(time.Hour)}
				if err := s.AddRefresh(ctx, rt); err != nil {
					return 0, err
				}
				res, _, err := s.ConsumeRefresh(ctx, childJTI, time.Now())
				return res, err
			}()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				all = append(all, err)
				return
			}
			out = append(out, "result="+res.String())
		})
	}
	wg.Wait()
	fmt.Println(strings.Join(out, "\n"))
	return errors.Join(all...)
}

// TestPostgresProcesses starts 4 processes that each open 5 stores at the
// same moment on one empty database (20 openers racing to migrate it),
// then each store adds and consumes the same refresh token once: exactly
// one of the 20 may consume it.
func TestPostgresProcesses(t *testing.T) {
	const procs = 4
	dbURL := cluster(t).NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()

	children := testkit.StartChildren(t, ctx, procs, envChild+"="+dbURL)
	start := time.Now()
	for _, c := range children {
		c.Stdin.Close()
	}
	results := map[string]int{}
	for i, c := range children {
		out, _ := io.ReadAll(c.Stdout)
		if err := c.Cmd.Wait(); err != nil {
			t.Errorf("child %d: %v; stderr: %s", i, err, c.Stderr.String())
			continue
		}
		for line := range strings.Lines(string(out)) {
			results[strings.TrimPrefix(strings.TrimSpace(line), "result=")]++
		}
	}
	t.Logf("%d processes × %d stores opened, migrated, added and consumed in %v: %v", procs, childOpens, time.Since(start), results)
	if n := procs * childOpens; results["ConsumeOK"] != 1 || results["ConsumeReused"] != n-1 {
		t.Errorf("results: got %v, want 1 auth.ConsumeOK and %d ConsumeReused", results, n-1)
	}
	checkVersions(t, dbURL)
}

// TestPostgresOutage stops the database under a running Auth: store calls
// fail fast with ErrUnavailable, the token endpoints answer 503, protected
// routes keep serving valid tokens (cached user, or the token alone); once
// the database is back, the same store serves logins again.
func TestPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("PostgreSQL tests are not short")
	}
	c := pgtest.Start(t) // a cluster of its own: this test stops it
	s := openAt(t, c.NewDatabase(t))
	ctx := t.Context()

	var logins []auth.LoginOutcome
	var mu sync.Mutex
	a, err := auth.New(auth.Config{
		Tokens:                 auth.TokenConfig{SecretKey: "outage-test-key-0123456789-abcdefghijkl"},
		RotateRefreshTokens:    true,
		BlacklistAfterRotation: true,
		UserCacheTTL:           50 * time.Millisecond,
		OnLogin: func(r *http.Request, username string, outcome auth.LoginOutcome) {
			mu.Lock()
			logins = append(logins, outcome)
			mu.Unlock()
		},
	}, s)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	mux.Handle("/hello/", a.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		fmt.Fprintf(w, "hello %s (%s)", u.Username, u.ID)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, name := range []string{"alice", "bob"} {
		if _, err := auth.CreateUser(ctx, s, name, "correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	alice := outageLogin(t, srv.URL, "alice")
	bob := outageLogin(t, srv.URL, "bob") // never seen by Required before the outage
	if code, body := testkit.Get(t, srv.URL+"/hello/", alice["access"]); code != 200 {
		t.Fatalf("protected route before the outage: got %d %s", code, body)
	}

	c.Stop(t)
	time.Sleep(100 * time.Millisecond) // alice's cache entry is now stale

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"UserByID", func(ctx context.Context) error { _, err := s.UserByID(ctx, "1"); return err }},
		{"UserByUsername", func(ctx context.Context) error { _, err := s.UserByUsername(ctx, "alice"); return err }},
		{"ConsumeRefresh", func(ctx context.Context) error { _, _, err := s.ConsumeRefresh(ctx, "x", storetest.Now); return err }},
		{"LoginFailures", func(ctx context.Context) error {
			_, _, err := s.LoginFailures(ctx, "alice", "::1", storetest.Now)
			return err
		}},
		{"ChangePassword", func(ctx context.Context) error { return s.ChangePassword(ctx, "1", "h", storetest.Now) }},
	}
	for _, tt := range calls {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := tt.call(ctx)
		cancel()
		took := time.Since(start)
		t.Logf("%s during the outage: %v in %v", tt.name, err, took)
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s during the outage: got error %v, want ErrUnavailable", tt.name, err)
		}
		if took > 3*time.Second {
			t.Errorf("%s during the outage took %v, want under 3s", tt.name, took)
		}
	}
	if _, err := Open(t.Context(), c.URL("postgres")); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("Open during the outage: got error %v, want ErrUnavailable", err)
	}

	const unavailable = `{"detail":"The authentication service is temporarily unavailable. Try again shortly.","code":"service_unavailable"}`
	for _, tt := range []struct{ path, field, token string }{
		{"/api/token/", "", ""},
		{"/api/token/refresh/", "refresh", alice["refresh"]},
		{"/api/token/blacklist/", "refresh", alice["refresh"]},
		{"/api/token/verify/", "token", alice["refresh"]},
	} {
		body := map[string]string{tt.field: tt.token}
		if tt.field == "" {
			body = map[string]string{"username": "alice", "password": "correct horse"}
		}
		resp := testkit.Post(t, srv.URL+tt.path, body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || resp.Body != unavailable {
			t.Errorf("POST %s during the outage: got %d, Retry-After %q, %s; want 503, 5, %s",
				tt.path, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Body, unavailable)
		}
	}
	// An access token's verification needs no store.
	if resp := testkit.Post(t, srv.URL+"/api/token/verify/", map[string]string{"token": alice["access"]}); resp.StatusCode != 200 {
		t.Errorf("verify an access token during the outage: got %d %s, want 200", resp.StatusCode, resp.Body)
	}
	for _, tt := range []struct {
		who, token, want string
	}{
		{"alice (stale cache entry)", alice["access"], "hello alice (1)"},
		{"bob (no cache entry: the token alone)", bob["access"], "hello  (2)"},
	} {
		for range 3 {
			if code, body := testkit.Get(t, srv.URL+"/hello/", tt.token); code != 200 || body != tt.want {
				t.Errorf("protected route for %s during the outage: got %d %q, want 200 %q", tt.who, code, body, tt.want)
			}
		}
	}
	if code, _ := testkit.Get(t, srv.URL+"/hello/", alice["access"]+"x"); code != 401 {
		t.Errorf("protected route with a bad token during the outage: got %d, want 401", code)
	}

	c.Restart(t)
	start := time.Now()
	for {
		resp := testkit.Post(t, srv.URL+"/api/token/", map[string]string{"username": "alice", "password": "correct horse"})
		if resp.StatusCode == 200 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("login after the restart: still %d %s after %v", resp.StatusCode, resp.Body, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("login served again %v after the restart", time.Since(start))
	mu.Lock()
	t.Logf("login outcomes: %v", logins)
	if logins[0] != auth.LoginSucceeded || logins[2] != auth.LoginUnavailable || logins[len(logins)-1] != auth.LoginSucceeded {
		t.Errorf("login outcomes: got %v, want success, success, unavailable, …, success", logins)
	}
	mu.Unlock()
}

func outageLogin(t *testing.T, base, username string) map[string]string {
	t.Helper()
	resp := testkit.Post(t, base+"/api/token/", map[string]string{"username": username, "password": "correct horse"})
	var pair map[string]string
	if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.Body), &pair) != nil {
		t.Fatalf("login %s: got %d %s", username, resp.StatusCode, resp.Body)
	}
	return pair
}

// TestPostgresFaults makes the database refuse writes as a full disk, a
// read-only database and a revoked privilege do: every write then fails
// with ErrUnavailable, and nothing is written.
func TestPostgresFaults(t *testing.T) {
	c := cluster(t)
	tests := []struct {
		name string
		// inject makes the store's writes fail; it returns the URL the
		// store is opened on, and heal undoes the fault.
		inject func(t *testing.T, url string, open func(url string) *Store) (s *Store, heal func())
	}{
		{"disk full (53100)", func(t *testing.T, url string, open func(string) *Store) (*Store, func()) {
			s := open(url)
			f := faults{url}
			f.exec(t, `CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`)
			for _, table := range []string{"users", "refresh_tokens", "login_failures", "revoked_families"} {
				f.exec(t, `CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE OR DELETE ON `+table+` FOR EACH STATEMENT EXECUTE FUNCTION full_disk()`)
			}
			return s, func() {
				for _, table := range []string{"users", "refresh_tokens", "login_failures", "revoked_families"} {
					f.exec(t, `DROP TRIGGER full_disk ON `+table)
				}
			}
		}},
		{"read-only database (25006)", func(t *testing.T, url string, open func(string) *Store) (*Store, func()) {
			s := open(url)
			name := databaseName(t, url)
			f := faults{c.URL("postgres")} // a session not made read-only, to undo it
			f.exec(t, `ALTER DATABASE `+name+` SET default_transaction_read_only = on`)
			s.pool.Reset() // new sessions take the setting
			return s, func() { f.exec(t, `ALTER DATABASE `+name+` RESET default_transaction_read_only`) }
		}},
		{"privilege revoked (42501)", func(t *testing.T, url string, open func(string) *Store) (*Store, func()) {
			name := databaseName(t, url)
			role := "app_" + name
			f := faults{url}
			f.exec(t, `CREATE ROLE `+role+` LOGIN`, `ALTER DATABASE `+name+` OWNER TO `+role)
			s := open(strings.Replace(url, "postgres@", role+"@", 1)) // the role migrates: it owns the tables
			f.exec(t, `REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM `+role)
			return s, func() { f.exec(t, `GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+role) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := c.NewDatabase(t)
			ctx := t.Context()
			var u auth.User
			s, heal := tt.inject(t, url, func(url string) *Store {
				s := openAt(t, url)
				var err error
				if u, err = s.CreateUser(ctx, "alice", "hash", true); err != nil {
					t.Fatal(err)
				}
				storetest.Add(t, s, "presented", "fam")
				return s
			})
			writes := []struct {
				name string
				call func() error
			}{
				{"CreateUser", func() error { _, err := s.CreateUser(ctx, "bob", "hash", true); return err }},
				{"ReserveLogin", func() error {
					_, _, err := s.ReserveLogin(ctx, "alice", "192.0.2.1", storetest.Now, storetest.Now.Add(-time.Hour), 5)
					return err
				}},
				{"RecordLogin", func() error {
					return s.RecordLogin(ctx, auth.Login{UserID: u.ID, At: storetest.Now, PasswordHash: "new",
						Refresh: auth.RefreshToken{JTI: "login", Family: "login", UserID: u.ID, ExpiresAt: storetest.Now}})
				}},
				{"RotateRefresh", func() error {
					_, _, err := s.RotateRefresh(ctx, auth.RefreshToken{JTI: "presented", Family: "presented", UserID: "1", ExpiresAt: storetest.Now},
						auth.RefreshToken{JTI: "next", UserID: "1", ExpiresAt: storetest.Now}, storetest.Now)
					return err
				}},
				{"RevokeFamily", func() error { return s.RevokeFamily(ctx, "fam", storetest.Now) }},
			}
			for _, w := range writes {
				if err := w.call(); !errors.Is(err, auth.ErrUnavailable) {
					t.Errorf("%s: got error %v, want ErrUnavailable", w.name, err)
				}
			}
			t.Logf("e.g. %v", writes[0].call())
			heal()
			s.pool.Reset()
			if got, err := s.UserByID(ctx, u.ID); err != nil || got.PasswordHash != "hash" || !got.LastLogin.IsZero() {
				t.Errorf("alice after the failed writes: %+v, %v; want as created", got, err)
			}
			if _, err := s.UserByUsername(ctx, "bob"); !errors.Is(err, auth.ErrNotFound) {
				t.Errorf("bob after a failed CreateUser: %v, want ErrNotFound", err)
			}
			if n, _, err := s.LoginFailures(ctx, "alice", "192.0.2.1", time.Time{}); err != nil || n != 0 {
				t.Errorf("attempts after a failed ReserveLogin: %d, %v; want 0", n, err)
			}
			storetest.State(t, s, "presented", auth.ConsumeOK)
			storetest.State(t, s, "next", auth.ConsumeUnknown)
			storetest.State(t, s, "login", auth.ConsumeUnknown)
		})
	}
}

// databaseName is the database name of url.
func databaseName(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}
