package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remuda/remuda/auth/internal/testkit"
)

// loginSite is an Auth on a fresh SQLite store, served by httptest, with
// the login outcomes it reported.
type loginSite struct {
	a     *Auth
	store *SQLite
	url   string

	mu       sync.Mutex
	outcomes []LoginOutcome
	errs     []error
}

func newLoginSite(t *testing.T) *loginSite {
	t.Helper()
	st := openTestSQLite(t)
	ls := &loginSite{store: st}
	a, err := New(Config{
		Tokens:                 TokenConfig{SecretKey: "login-test-key-0123456789-abcdefghijklmn"},
		RotateRefreshTokens:    true,
		BlacklistAfterRotation: true,
		OnLogin: func(_ *http.Request, _ string, o LoginOutcome) {
			ls.mu.Lock()
			ls.outcomes = append(ls.outcomes, o)
			ls.mu.Unlock()
		},
		OnError: func(_ *http.Request, err error) {
			ls.mu.Lock()
			ls.errs = append(ls.errs, err)
			ls.mu.Unlock()
		},
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	ls.a = a
	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ls.url = srv.URL
	return ls
}

func (ls *loginSite) user(t *testing.T, name, password string) User {
	t.Helper()
	u, err := CreateUser(t.Context(), ls.store, name, password)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// login posts a login and returns the reply.
func (ls *loginSite) login(t *testing.T, username, password string) testkit.Reply {
	t.Helper()
	return testkit.Post(t, ls.url+"/api/token/", map[string]string{"username": username, "password": password})
}

// attempts is how many login attempts the store counts for username from
// 127.0.0.1 (httptest's clients) in the throttle window.
func (ls *loginSite) attempts(t *testing.T, username string) int {
	t.Helper()
	n, _, err := ls.store.LoginFailures(t.Context(), username, "127.0.0.1", time.Now().Add(-ThrottleWindow))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

const badLoginBody = `{"detail":"No active account found with the given credentials"}`

// TestLoginThrottleConcurrent sends 12 failed logins for one username at
// once: at most ThrottleFailures check a password (401), the others are
// answered 429 with Retry-After.
func TestLoginThrottleConcurrent(t *testing.T) {
	ls := newLoginSite(t)
	ls.user(t, "alice", "correct horse")
	const n = 12
	replies := make([]testkit.Reply, n)
	testkit.Race(n, func(i int) error {
		replies[i] = ls.login(t, "alice", fmt.Sprint("wrong horse ", i))
		return nil
	})
	count := map[int]int{}
	for _, r := range replies {
		count[r.StatusCode]++
		if r.StatusCode == 429 {
			secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > int(ThrottleWindow/time.Second)+1 {
				t.Errorf("429 with Retry-After %q, want 1 to %d seconds", r.Header.Get("Retry-After"), int(ThrottleWindow/time.Second)+1)
			}
		}
	}
	t.Logf("%d concurrent failed logins: %v", n, count)
	if count[401] > ThrottleFailures || count[401]+count[429] != n {
		t.Errorf("%d concurrent failed logins: got %v, want at most %d × 401 and the rest 429", n, count, ThrottleFailures)
	}
	if got := ls.attempts(t, "alice"); got != count[401] {
		t.Errorf("attempts counted: %d, want one per 401 (%d)", got, count[401])
	}
}

// TestLoginThrottleRule checks what a success does to the count: it
// forgets the failures before it; and once the limit is reached, the right
// password waits too.
func TestLoginThrottleRule(t *testing.T) {
	ls := newLoginSite(t)
	ls.user(t, "alice", "correct horse")
	for i := range ThrottleFailures - 1 {
		if r := ls.login(t, "alice", "wrong horse"); r.StatusCode != 401 || r.Body != badLoginBody {
			t.Fatalf("failure %d: got %d %s", i+1, r.StatusCode, r.Body)
		}
	}
	if r := ls.login(t, "alice", "correct horse"); r.StatusCode != 200 {
		t.Fatalf("the right password after %d failures: got %d %s, want 200", ThrottleFailures-1, r.StatusCode, r.Body)
	}
	if got := ls.attempts(t, "alice"); got != 0 {
		t.Errorf("attempts after a success: %d, want 0 (the failures before it forgotten)", got)
	}
	for i := range ThrottleFailures {
		if r := ls.login(t, "alice", "wrong horse"); r.StatusCode != 401 {
			t.Fatalf("failure %d after the success: got %d %s, want 401", i+1, r.StatusCode, r.Body)
		}
	}
	r := ls.login(t, "alice", "correct horse")
	secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
	want := fmt.Sprintf(`{"detail":"Request was throttled. Expected available in %d seconds."}`, secs)
	if r.StatusCode != 429 || secs < 895 || secs > 901 || r.Body != want {
		t.Errorf("the right password after %d failures: got %d, Retry-After %q, %s; want 429, about 900, %s",
			ThrottleFailures, r.StatusCode, r.Header.Get("Retry-After"), r.Body, want)
	}
	if got := ls.attempts(t, "alice"); got != ThrottleFailures {
		t.Errorf("attempts after a throttled login: %d, want %d (a 429 is not counted)", got, ThrottleFailures)
	}
}

// TestThrottledSecondIsSingular: DRF says "1 second".
func TestThrottledSecondIsSingular(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want string
	}{
		{0, `{"detail":"Request was throttled. Expected available in 1 second."}`},
		{1500 * time.Millisecond, `{"detail":"Request was throttled. Expected available in 2 seconds."}`},
	} {
		w := httptest.NewRecorder()
		throttled(w, tt.wait)
		if got := w.Body.String(); got != tt.want {
			t.Errorf("throttled(%v): got %s, want %s", tt.wait, got, tt.want)
		}
	}
}

// hogHashing takes every hashing slot of the process until the test ends
// or the returned func is called, and shortens the wait of logins.
func hogHashing(t *testing.T, wait time.Duration) (release func()) {
	t.Helper()
	g := hashing()
	if err := g.acquire(t.Context(), g.size); err != nil {
		t.Fatal(err)
	}
	old := passwordWait
	passwordWait = wait
	var once sync.Once
	release = func() {
		once.Do(func() {
			g.release(g.size)
			passwordWait = old
		})
	}
	t.Cleanup(release)
	return release
}

// TestLoginHashingBusy takes every hashing slot: logins of a known user,
// an unknown user and an inactive one wait the same bounded time, then
// get 503 with Retry-After, their attempts not counted; once a slot is
// free, logins succeed.
func TestLoginHashingBusy(t *testing.T) {
	ls := newLoginSite(t)
	ls.user(t, "alice", "correct horse")
	carol := ls.user(t, "carol", "correct horse")
	if err := ls.store.SetActive(t.Context(), carol.ID, false); err != nil {
		t.Fatal(err)
	}
	const wait = 300 * time.Millisecond
	release := hogHashing(t, wait)
	const busy = `{"detail":"Too many logins are being checked at once. Try again shortly.","code":"service_unavailable"}`
	for _, c := range []struct{ what, user, password string }{
		{"right password", "alice", "correct horse"},
		{"wrong password", "alice", "wrong horse"},
		{"unknown user", "nobody", "correct horse"},
		{"inactive user", "carol", "correct horse"},
	} {
		start := time.Now()
		r := ls.login(t, c.user, c.password)
		took := time.Since(start)
		t.Logf("%s with every slot busy: %d after %v", c.what, r.StatusCode, took)
		if r.StatusCode != 503 || r.Header.Get("Retry-After") != "1" || r.Body != busy {
			t.Errorf("%s with every slot busy: got %d, Retry-After %q, %s; want 503, 1, %s",
				c.what, r.StatusCode, r.Header.Get("Retry-After"), r.Body, busy)
		}
		if took < wait || took > wait+time.Second {
			t.Errorf("%s with every slot busy: answered after %v, want %v and a little", c.what, took, wait)
		}
		if got := ls.attempts(t, c.user); got != 0 {
			t.Errorf("%s: %d attempts counted, want 0: its password was never checked", c.what, got)
		}
	}
	ls.mu.Lock()
	if len(ls.errs) > 0 {
		t.Errorf("OnError got %v; a busy hashing bound is not a store error", ls.errs)
	}
	ls.mu.Unlock()

	// A slot freed while logins wait: they are served.
	passwordWait = 5 * time.Second
	done := make(chan testkit.Reply)
	go func() { done <- ls.login(t, "alice", "correct horse") }()
	time.Sleep(100 * time.Millisecond)
	release()
	if r := <-done; r.StatusCode != 200 {
		t.Errorf("a login waiting when a slot came free: got %d %s, want 200", r.StatusCode, r.Body)
	}
}

// TestLoginStoreFaults makes the store refuse writes (a full disk, a
// read-only database) under the login endpoint: 503 with Retry-After,
// never 500, and nothing written.
func TestLoginStoreFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inject func(t *testing.T, s *SQLite)
	}{
		{"full", sqliteFillAll},
		{"read-only", func(t *testing.T, s *SQLite) { sqliteOneConn(t, s, "query_only = 1") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ls := newLoginSite(t)
			u := ls.user(t, "alice", "correct horse")
			tt.inject(t, ls.store)
			for _, password := range []string{"correct horse", "wrong horse"} {
				r := ls.login(t, "alice", password)
				if r.StatusCode != 503 || r.Header.Get("Retry-After") != strconv.Itoa(UnavailableRetryAfter) ||
					!strings.Contains(r.Body, `"code":"service_unavailable"`) {
					t.Errorf("login (%s) with the database %s: got %d, Retry-After %q, %s; want 503, %d, service_unavailable",
						password, tt.name, r.StatusCode, r.Header.Get("Retry-After"), r.Body, UnavailableRetryAfter)
				}
			}
			ls.mu.Lock()
			if len(ls.errs) == 0 {
				t.Error("OnError got nothing")
			} else {
				t.Logf("OnError: %v", ls.errs[0])
			}
			ls.mu.Unlock()
			if got, _ := ls.store.UserByID(t.Context(), u.ID); !got.LastLogin.IsZero() {
				t.Errorf("last login %v after failed logins, want never", got.LastLogin)
			}
		})
	}
}

// sqliteFillAll is sqliteFill, then fills the last page of each table and
// index a login writes to, so that a login's first write fails.
func sqliteFillAll(t *testing.T, s *SQLite) {
	t.Helper()
	sqliteFill(t, s)
	ctx := t.Context()
	for i := 0; ; i++ {
		_, err := s.db.ExecContext(ctx, `INSERT INTO login_failures (username, addr, at) VALUES ('~filler', '~', ?)`, i)
		if err != nil {
			break
		}
	}
	if _, _, err := s.ReserveLogin(ctx, "alice", "127.0.0.1", time.Now(), time.Time{}, 100); err == nil {
		t.Fatal("the database is not full: a login attempt is still counted")
	}
}

// TestRotateRefreshRetry makes the write of a refresh fail: the presented
// token stays valid, the client's retry gets a new pair, and no family is
// revoked.
func TestRotateRefreshRetry(t *testing.T) {
	ls := newLoginSite(t)
	ls.user(t, "alice", "correct horse")
	r := ls.login(t, "alice", "correct horse")
	var pair map[string]string
	if r.StatusCode != 200 || json.Unmarshal([]byte(r.Body), &pair) != nil {
		t.Fatalf("login: %d %s", r.StatusCode, r.Body)
	}
	claims, err := ls.a.tokens.Parse(pair["refresh"], refreshType, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var reused []string
	ls.a.cfg.OnTokenReuse = func(_ *http.Request, _, family string) { reused = append(reused, family) }
	req := httptest.NewRequestWithContext(t.Context(), "POST", "/api/token/refresh/", nil)

	// Every insert of another token than the presented one fails.
	if _, err := ls.store.db.ExecContext(t.Context(), `CREATE TRIGGER injected_fault BEFORE INSERT ON refresh_tokens
		WHEN NEW.jti != '`+claims.JTI+`' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`); err != nil {
		t.Fatal(err)
	}
	if next, err := ls.a.rotateRefresh(req, claims, claims.UserID); err == nil {
		t.Fatalf("rotateRefresh with the successor's insert failing: got %q, no error", next)
	}
	if state, _ := ls.store.RefreshState(t.Context(), claims.JTI); state != ConsumeOK {
		t.Errorf("the presented token after a failed rotation: %s, want ConsumeOK (not consumed)", state)
	}
	if _, err := ls.store.db.ExecContext(t.Context(), `DROP TRIGGER injected_fault`); err != nil {
		t.Fatal(err)
	}
	next, err := ls.a.rotateRefresh(req, claims, claims.UserID)
	if err != nil {
		t.Fatalf("rotateRefresh retried: %v", err)
	}
	// Parse at the clock of now, not of the test's start: the new token's iat
	// may be a second later, and a token issued in the future is refused.
	nc, err := ls.a.tokens.Parse(next, refreshType, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(reused) > 0 {
		t.Errorf("families revoked: %v, want none", reused)
	}
	if state, _ := ls.store.RefreshState(t.Context(), nc.JTI); state != ConsumeOK {
		t.Errorf("the new refresh token: %s, want ConsumeOK", state)
	}
	// The new token rotates in turn; the old one is now a replay.
	if _, err := ls.a.rotateRefresh(req, nc, nc.UserID); err != nil {
		t.Errorf("rotateRefresh of the new token: %v", err)
	}
	if _, err := ls.a.rotateRefresh(req, claims, claims.UserID); err != ErrTokenBlacklisted || len(reused) != 1 {
		t.Errorf("rotateRefresh of the spent token: got %v and %d revocations, want ErrTokenBlacklisted and 1", err, len(reused))
	}
}
