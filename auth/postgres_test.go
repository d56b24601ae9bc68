package auth

import (
	"bytes"
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

	"github.com/remuda/remuda/internal/pgtest"
)

// postgresCluster returns the package's shared PostgreSQL cluster. The
// PostgreSQL tests are skipped in -short mode: the first one pays for an
// initdb (seconds on a busy machine).
func postgresCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL tests are not short")
	}
	return pgtest.Shared(t)
}

// openTestPostgres opens a Postgres store on a new, empty database.
func openTestPostgres(t *testing.T) *Postgres {
	t.Helper()
	return openPostgresAt(t, postgresCluster(t).NewDatabase(t))
}

func openPostgresAt(t *testing.T, url string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(t.Context(), url)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresStore(t *testing.T) {
	c := postgresCluster(t)
	testStore(t, func(t *testing.T) Store { return openPostgresAt(t, c.NewDatabase(t)) })
	testStoreFaults(t, func(t *testing.T) (Store, storeFaults) {
		url := c.NewDatabase(t)
		return openPostgresAt(t, url), postgresFaults{url}
	})
}

// postgresFaults fails inserts with a trigger that raises disk_full, as
// a full disk would.
type postgresFaults struct{ url string }

// exec runs statements on a connection of its own.
func (f postgresFaults) exec(t *testing.T, stmts ...string) {
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

func (f postgresFaults) failRefreshInsert(t *testing.T, jti string) {
	t.Helper()
	f.exec(t, `CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.jti = '`+jti+`' THEN
				RAISE EXCEPTION 'injected fault: no space left on device' USING ERRCODE = 'disk_full';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER injected_fault BEFORE INSERT ON refresh_tokens FOR EACH ROW EXECUTE FUNCTION injected_fault()`)
}

func (f postgresFaults) heal(t *testing.T) {
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
		{"defaults", "postgres://u@db.example/app", DefaultPostgresPool, DefaultPostgresConnectTimeout, "remuda"},
		{"URL's own", "postgres://u@db.example/app?pool_max_conns=9&connect_timeout=7&application_name=billing", 9, 7 * time.Second, "billing"},
		{"key=value", "host=db.example user=u pool_max_conns=2", 2, DefaultPostgresConnectTimeout, "remuda"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := postgresConfig(tt.url)
			if err != nil {
				t.Fatalf("postgresConfig(%q): %v", tt.url, err)
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
	_, err := postgresConfig("postgres://u:s3cret@db.example:notaport/app")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("postgresConfig of a bad URL: got error %v, want one without the password", err)
	}
}

// TestPostgresRecords checks what the rows hold where the Store interface
// cannot tell, and the connection settings.
func TestPostgresRecords(t *testing.T) {
	s := openTestPostgres(t)
	ctx := t.Context()
	var app string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&app); err != nil || app != "remuda" {
		t.Errorf("application_name: got %q, %v; want remuda", app, err)
	}
	storeAdd(t, s, "c", "c")
	storeConsume(t, s, "c", ConsumeOK)
	storeConsume(t, s, "c", ConsumeReused)
	var consumed time.Time
	if err := s.pool.QueryRow(ctx, `SELECT consumed_at FROM refresh_tokens WHERE jti = 'c'`).Scan(&consumed); err != nil || !consumed.Equal(storeNow) {
		t.Errorf("consumed_at: got %v, %v; want %v", consumed, err, storeNow)
	}
	if err := s.AddRefresh(ctx, RefreshToken{JTI: "x", Family: "x", UserID: "alice", ExpiresAt: storeNow}); err == nil {
		t.Error("AddRefresh with a non-decimal user id: got no error")
	}
}

// postgresVersions returns the rows of the version table.
func postgresVersions(t *testing.T, url string) (versions []int) {
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

func checkPostgresVersions(t *testing.T, url string) {
	t.Helper()
	got := postgresVersions(t, url)
	want := make([]int, len(postgresSchema))
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
	url := postgresCluster(t).NewDatabase(t)
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := OpenPostgres(t.Context(), url)
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
	checkPostgresVersions(t, url)
	// And again, on the migrated database.
	openPostgresAt(t, url)
	checkPostgresVersions(t, url)
}

func TestPostgresNewerSchemaRefused(t *testing.T) {
	url := postgresCluster(t).NewDatabase(t)
	s := openPostgresAt(t, url)
	if _, err := s.pool.Exec(t.Context(), `INSERT INTO remuda_schema VALUES (99, now())`); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenPostgres(t.Context(), url); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		if err == nil {
			s.Close()
		}
		t.Errorf("OpenPostgres of a version 99 database: got error %v, want one naming schema version 99", err)
	}
}

// envPostgresChild, set to a database URL, makes the test binary a child
// of TestPostgresProcesses.
const envPostgresChild = "REMUDA_TEST_POSTGRES_CHILD"

// postgresChildOpens is how many stores each child opens at once.
const postgresChildOpens = 5

// postgresChild is a child of TestPostgresProcesses. It prints "ready",
// waits for its stdin to close, then opens postgresChildOpens stores at
// once on the database at url; each adds and consumes sqliteChildJTI once
// and prints "result=<ConsumeResult>".
func postgresChild(url string) error {
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
	for range postgresChildOpens {
		wg.Go(func() {
			res, err := func() (ConsumeResult, error) {
				s, err := OpenPostgres(ctx, url)
				if err != nil {
					return 0, err
				}
				defer s.Close()
				rt := RefreshToken{JTI: sqliteChildJTI, Family: sqliteChildJTI, UserID: "1", ExpiresAt: time.Now().Add(time.Hour)}
				if err := s.AddRefresh(ctx, rt); err != nil {
					return 0, err
				}
				res, _, err := s.ConsumeRefresh(ctx, sqliteChildJTI, time.Now())
				return res, err
			}()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				all = append(all, err)
				return
			}
			out = append(out, "result="+storeResultName(res))
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
	dbURL := postgresCluster(t).NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()

	children := startChildren(t, ctx, procs, envPostgresChild+"="+dbURL)
	start := time.Now()
	for _, c := range children {
		c.stdin.Close()
	}
	results := map[string]int{}
	for i, c := range children {
		out, _ := io.ReadAll(c.stdout)
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v; stderr: %s", i, err, c.stderr.String())
			continue
		}
		for line := range strings.Lines(string(out)) {
			results[strings.TrimPrefix(strings.TrimSpace(line), "result=")]++
		}
	}
	t.Logf("%d processes × %d stores opened, migrated, added and consumed in %v: %v", procs, postgresChildOpens, time.Since(start), results)
	if n := procs * postgresChildOpens; results["ConsumeOK"] != 1 || results["ConsumeReused"] != n-1 {
		t.Errorf("results: got %v, want 1 ConsumeOK and %d ConsumeReused", results, n-1)
	}
	checkPostgresVersions(t, dbURL)
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
	s := openPostgresAt(t, c.NewDatabase(t))
	ctx := t.Context()

	var logins []LoginOutcome
	var mu sync.Mutex
	a, err := New(Config{
		Tokens:                 TokenConfig{SecretKey: "outage-test-key-0123456789-abcdefghijkl"},
		RotateRefreshTokens:    true,
		BlacklistAfterRotation: true,
		UserCacheTTL:           50 * time.Millisecond,
		OnLogin: func(r *http.Request, username string, outcome LoginOutcome) {
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
		u, _ := UserFrom(r.Context())
		fmt.Fprintf(w, "hello %s (%s)", u.Username, u.ID)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, name := range []string{"alice", "bob"} {
		if _, err := CreateUser(ctx, s, name, "correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	alice := outageLogin(t, srv.URL, "alice")
	bob := outageLogin(t, srv.URL, "bob") // never seen by Required before the outage
	if code, body := outageGet(t, srv.URL+"/hello/", alice["access"]); code != 200 {
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
		{"ConsumeRefresh", func(ctx context.Context) error { _, _, err := s.ConsumeRefresh(ctx, "x", storeNow); return err }},
		{"LoginFailures", func(ctx context.Context) error {
			_, _, err := s.LoginFailures(ctx, "alice", "::1", storeNow)
			return err
		}},
		{"ChangePassword", func(ctx context.Context) error { return s.ChangePassword(ctx, "1", "h", storeNow) }},
	}
	for _, tt := range calls {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := tt.call(ctx)
		cancel()
		took := time.Since(start)
		t.Logf("%s during the outage: %v in %v", tt.name, err, took)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s during the outage: got error %v, want ErrUnavailable", tt.name, err)
		}
		if took > 3*time.Second {
			t.Errorf("%s during the outage took %v, want under 3s", tt.name, took)
		}
	}
	if _, err := OpenPostgres(t.Context(), c.URL("postgres")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OpenPostgres during the outage: got error %v, want ErrUnavailable", err)
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
		resp := outagePost(t, srv.URL+tt.path, body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || resp.body != unavailable {
			t.Errorf("POST %s during the outage: got %d, Retry-After %q, %s; want 503, 5, %s",
				tt.path, resp.StatusCode, resp.Header.Get("Retry-After"), resp.body, unavailable)
		}
	}
	// An access token's verification needs no store.
	if resp := outagePost(t, srv.URL+"/api/token/verify/", map[string]string{"token": alice["access"]}); resp.StatusCode != 200 {
		t.Errorf("verify an access token during the outage: got %d %s, want 200", resp.StatusCode, resp.body)
	}
	for _, tt := range []struct {
		who, token, want string
	}{
		{"alice (stale cache entry)", alice["access"], "hello alice (1)"},
		{"bob (no cache entry: the token alone)", bob["access"], "hello  (2)"},
	} {
		for range 3 {
			if code, body := outageGet(t, srv.URL+"/hello/", tt.token); code != 200 || body != tt.want {
				t.Errorf("protected route for %s during the outage: got %d %q, want 200 %q", tt.who, code, body, tt.want)
			}
		}
	}
	if code, _ := outageGet(t, srv.URL+"/hello/", alice["access"]+"x"); code != 401 {
		t.Errorf("protected route with a bad token during the outage: got %d, want 401", code)
	}

	c.Restart(t)
	start := time.Now()
	for {
		resp := outagePost(t, srv.URL+"/api/token/", map[string]string{"username": "alice", "password": "correct horse"})
		if resp.StatusCode == 200 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("login after the restart: still %d %s after %v", resp.StatusCode, resp.body, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("login served again %v after the restart", time.Since(start))
	mu.Lock()
	t.Logf("login outcomes: %v", logins)
	if logins[0] != LoginSucceeded || logins[2] != LoginUnavailable || logins[len(logins)-1] != LoginSucceeded {
		t.Errorf("login outcomes: got %v, want success, success, unavailable, …, success", logins)
	}
	mu.Unlock()
}

type outageReply struct {
	*http.Response
	body string
}

func outagePost(t *testing.T, u string, fields map[string]string) outageReply {
	t.Helper()
	b, _ := json.Marshal(fields)
	resp, err := http.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return outageReply{resp, string(body)}
}

func outageGet(t *testing.T, u, access string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func outageLogin(t *testing.T, base, username string) map[string]string {
	t.Helper()
	resp := outagePost(t, base+"/api/token/", map[string]string{"username": username, "password": "correct horse"})
	var pair map[string]string
	if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.body), &pair) != nil {
		t.Fatalf("login %s: got %d %s", username, resp.StatusCode, resp.body)
	}
	return pair
}

// TestPostgresFaults makes the database refuse writes as a full disk, a
// read-only database and a revoked privilege do: every write then fails
// with ErrUnavailable, and nothing is written.
func TestPostgresFaults(t *testing.T) {
	c := postgresCluster(t)
	tests := []struct {
		name string
		// inject makes the store's writes fail; it returns the URL the
		// store is opened on, and heal undoes the fault.
		inject func(t *testing.T, url string, open func(url string) *Postgres) (s *Postgres, heal func())
	}{
		{"disk full (53100)", func(t *testing.T, url string, open func(string) *Postgres) (*Postgres, func()) {
			s := open(url)
			f := postgresFaults{url}
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
		{"read-only database (25006)", func(t *testing.T, url string, open func(string) *Postgres) (*Postgres, func()) {
			s := open(url)
			name := postgresDatabase(t, url)
			f := postgresFaults{c.URL("postgres")} // a session not made read-only, to undo it
			f.exec(t, `ALTER DATABASE `+name+` SET default_transaction_read_only = on`)
			s.pool.Reset() // new sessions take the setting
			return s, func() { f.exec(t, `ALTER DATABASE `+name+` RESET default_transaction_read_only`) }
		}},
		{"privilege revoked (42501)", func(t *testing.T, url string, open func(string) *Postgres) (*Postgres, func()) {
			name := postgresDatabase(t, url)
			role := "app_" + name
			f := postgresFaults{url}
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
			var u User
			s, heal := tt.inject(t, url, func(url string) *Postgres {
				s := openPostgresAt(t, url)
				var err error
				if u, err = s.CreateUser(ctx, "alice", "hash", true); err != nil {
					t.Fatal(err)
				}
				storeAdd(t, s, "presented", "fam")
				return s
			})
			writes := []struct {
				name string
				call func() error
			}{
				{"CreateUser", func() error { _, err := s.CreateUser(ctx, "bob", "hash", true); return err }},
				{"ReserveLogin", func() error {
					_, _, err := s.ReserveLogin(ctx, "alice", "192.0.2.1", storeNow, storeNow.Add(-time.Hour), 5)
					return err
				}},
				{"RecordLogin", func() error {
					return s.RecordLogin(ctx, Login{UserID: u.ID, At: storeNow, PasswordHash: "new",
						Refresh: RefreshToken{JTI: "login", Family: "login", UserID: u.ID, ExpiresAt: storeNow}})
				}},
				{"RotateRefresh", func() error {
					_, _, err := s.RotateRefresh(ctx, RefreshToken{JTI: "presented", Family: "presented", UserID: "1", ExpiresAt: storeNow},
						RefreshToken{JTI: "next", UserID: "1", ExpiresAt: storeNow}, storeNow)
					return err
				}},
				{"RevokeFamily", func() error { return s.RevokeFamily(ctx, "fam", storeNow) }},
			}
			for _, w := range writes {
				if err := w.call(); !errors.Is(err, ErrUnavailable) {
					t.Errorf("%s: got error %v, want ErrUnavailable", w.name, err)
				}
			}
			t.Logf("e.g. %v", writes[0].call())
			heal()
			s.pool.Reset()
			if got, err := s.UserByID(ctx, u.ID); err != nil || got.PasswordHash != "hash" || !got.LastLogin.IsZero() {
				t.Errorf("alice after the failed writes: %+v, %v; want as created", got, err)
			}
			if _, err := s.UserByUsername(ctx, "bob"); !errors.Is(err, ErrNotFound) {
				t.Errorf("bob after a failed CreateUser: %v, want ErrNotFound", err)
			}
			if n, _, err := s.LoginFailures(ctx, "alice", "192.0.2.1", time.Time{}); err != nil || n != 0 {
				t.Errorf("attempts after a failed ReserveLogin: %d, %v; want 0", n, err)
			}
			storeState(t, s, "presented", ConsumeOK)
			storeState(t, s, "next", ConsumeUnknown)
			storeState(t, s, "login", ConsumeUnknown)
		})
	}
}

// postgresDatabase is the database name of url.
func postgresDatabase(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}
