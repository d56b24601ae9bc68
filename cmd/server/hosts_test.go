package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/remuda/remuda/internal/nginxtest"
	"github.com/remuda/remuda/internal/pgtest"
	"github.com/remuda/remuda/internal/proctest"
)

// Several hosts: instances of the binary, each its own master and workers
// as on a host of its own, sharing one PostgreSQL database.

// host is one instance of the binary in prod on database url.
type host struct {
	p   *proctest.Proc
	url string
}

// startHost starts an instance without waiting for it to be ready.
func startHost(t *testing.T, database string, workers int) *host {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY=" + secret},
		"run", "--prod", "--workers", fmt.Sprint(workers), "--bind", addr, "--database", database, "--access-log", "-")
	return &host{p: p, url: "http://" + addr}
}

// TestSeveralHosts runs two instances of 10 workers each on one empty
// PostgreSQL database behind the shipped nginx configuration: the 20
// workers boot at once and migrate the schema exactly once; a token one
// instance issued is honoured by the other; a refresh token blacklisted on
// one is refused by the other; requests through nginx are all answered,
// by both; and once one instance is killed, logins through nginx go on
// succeeding.
func TestSeveralHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, nginx and 20 workers")
	}
	nginxtest.Binary(t)
	database := pgtest.Start(t).NewDatabase(t)

	a, b := startHost(t, database, 10), startHost(t, database, 10)
	for _, h := range []*host{a, b} {
		h.p.WaitReady(t, 1)
		if errs := h.p.Find(func(l proctest.Line) bool { return l.Fields["level"] == "error" }); len(errs) > 0 {
			t.Errorf("instance %s logged errors while 20 workers booted at once: %s", h.url, errs[0].Raw)
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, versions int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM remuda_schema").Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows != versions || rows == 0 {
		t.Errorf("remuda_schema has %d rows for %d versions after 20 workers booted at once: want one migration each", rows, versions)
	}
	t.Logf("20 workers booted at once: %d migrations, one row each", rows)

	addUserTo(t, database, "alice", "correct horse")
	ra := postJSON(t, a.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
	if ra.status != 200 {
		t.Fatalf("login on instance A: %d %s", ra.status, ra.body)
	}
	access, refresh := ra.json(t)["access"].(string), ra.json(t)["refresh"].(string)
	want(t, "A's access token on B", do(t, "GET", b.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	want(t, "blacklist on A", postJSON(t, a.url+"/api/token/blacklist/", jsonBody("refresh", refresh)), 200, `{}`)
	want(t, "the blacklisted token on B", postJSON(t, b.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401, tokenNotValid("Token is blacklisted"))

	listen := nginxtest.Addr(t)
	n := nginxtest.Start(t, listen, nginxSite(t, listen, a.url[len("http://"):], b.url[len("http://"):]))
	for i := range 20 {
		want(t, fmt.Sprintf("request %d through nginx", i), do(t, "GET", n.URL+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	}
	for _, h := range []*host{a, b} {
		if served := len(h.p.Find(func(l proctest.Line) bool { return l.Msg() == "request" && l.Fields["path"] == "/hello/" })); served == 0 {
			t.Errorf("instance %s served none of the 20 requests through nginx", h.url)
		}
	}

	// A host dies: its master and every worker at once.
	syscall.Kill(-a.p.Pid(), syscall.SIGKILL)
	a.p.Wait(t, 10*time.Second)
	for i := range 10 {
		r := postJSON(t, n.URL+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
		if r.status != 200 {
			t.Errorf("login %d through nginx after instance A died: %d %s", i, r.status, r.body)
		}
	}

	// B stops gracefully: its workers close their pools on the way out.
	b.p.Signal(t, syscall.SIGTERM)
	if code := b.p.Wait(t, 30*time.Second); code != 0 {
		t.Errorf("instance B after TERM: exit %d, want 0", code)
	}
	if lines := b.p.Find(proctest.Msg("close after serving")); len(lines) > 0 {
		t.Errorf("a worker of B could not close its store: %s", lines[0].Raw)
	}
}

// addUserTo creates a user in database with `server createuser`, as an
// operator would.
func addUserTo(t *testing.T, database, name, password string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "createuser", "--username", name, "--password-stdin", "--database", database)
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("createuser: %v\n%s", err, out)
	}
}

// TestPostgresOutage stops PostgreSQL under light load and starts it
// again: logins answer 503 while it is down and protected routes keep
// answering 200; once it is back, logins succeed within 5 s, and no
// process of ours was restarted.
func TestPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	cluster := pgtest.Start(t)
	database := cluster.NewDatabase(t)
	h := startHost(t, database, 2)
	h.p.WaitReady(t, 1)
	workers := proctest.Children(h.p.Pid())
	addUserTo(t, database, "alice", "correct horse")
	access, _ := loginAt(t, h.url)

	// Light load: a login and a protected request every 50 ms, each
	// outcome counted by phase.
	var phase atomic.Int32 // 0 up, 1 down, 2 back
	var mu sync.Mutex
	counts := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			// Each outcome counts in the phase in which it arrived: a login
			// sent just before the stop may meet the stopping database.
			l := postJSON(t, h.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
			lp := phase.Load()
			g := do(t, "GET", h.url+"/hello/", "", "", bearer(access)...)
			gp := phase.Load()
			mu.Lock()
			counts[fmt.Sprintf("phase %d login %d", lp, l.status)]++
			counts[fmt.Sprintf("phase %d hello %d", gp, g.status)]++
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond)

	phase.Store(1)
	cluster.Stop(t)
	time.Sleep(500 * time.Millisecond) // sessions the pools held are gone
	r := postJSON(t, h.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
	want(t, "login while PostgreSQL is down", r, 503, `{"detail":"The authentication service is temporarily unavailable. Try again shortly.","code":"service_unavailable"}`)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	want(t, "protected route while PostgreSQL is down", do(t, "GET", h.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	time.Sleep(time.Second)

	cluster.Restart(t)
	back := time.Now()
	phase.Store(2)
	var recovered time.Duration
	for time.Since(back) < 5*time.Second {
		if r := postJSON(t, h.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse")); r.status == 200 {
			recovered = time.Since(back)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("outcomes under load: %v; logins back %v after PostgreSQL", counts, recovered)
	if recovered == 0 {
		t.Fatal("no successful login within 5 s of PostgreSQL's return")
	}
	for k, n := range counts {
		var p, status int
		var what string
		fmt.Sscanf(k, "phase %d %s %d", &p, &what, &status)
		if what == "hello" && status != 200 || what == "login" && status != 200 && !(p == 1 && status == 503) && !(p == 2 && status == 503) {
			t.Errorf("%d × %s", n, k)
		}
	}
	if counts["phase 1 login 503"] == 0 {
		t.Error("no login answered 503 under load while PostgreSQL was down")
	}
	if now := proctest.Children(h.p.Pid()); fmt.Sprint(now) != fmt.Sprint(workers) {
		t.Errorf("workers %v before the outage, %v after: want the same processes", workers, now)
	}
	if len(h.p.Find(proctest.Msg("worker exited"))) > 0 {
		t.Error("a worker exited during the outage")
	}
}

// loginAt obtains a pair from the instance at url.
func loginAt(t *testing.T, url string) (access, refresh string) {
	t.Helper()
	r := postJSON(t, url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	m := r.json(t)
	return m["access"].(string), m["refresh"].(string)
}
