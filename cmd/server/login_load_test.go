package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/internal/proctest"
)

// Logins at once: the throttle counts each attempt before its password is
// checked, and password hashing is bounded in each worker.

// TestLoginThrottleConcurrentAcrossWorkers sends 12 failed logins for one
// username from one address at once to 4 workers: at most 5 check a
// password (401), the others are answered 429 with Retry-After; then the
// right password is throttled too, as documented (429 until the oldest
// failure leaves the 15-minute window).
func TestLoginThrottleConcurrentAcrossWorkers(t *testing.T) {
	s := startSite(t, t.TempDir())
	withUser(t, s)
	const n = 12
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = jsonBody("username", "alice", "password", fmt.Sprint("wrong horse ", i))
	}
	replies := heldPosts(t, s.url, "/api/token/", bodies)
	count := map[int]int{}
	for _, r := range replies {
		count[r.status]++
		switch r.status {
		case 401:
			want(t, "a failed login", r, 401, badLogin)
		case 429:
			secs, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 901 {
				t.Errorf("429 with Retry-After %q, want 1 to 901 seconds", r.header.Get("Retry-After"))
			}
			want(t, "a throttled login", r, 429, fmt.Sprintf(`{"detail":"Request was throttled. Expected available in %d seconds."}`, secs))
		default:
			t.Errorf("a concurrent failed login: %d %s, want 401 or 429", r.status, r.body)
		}
	}
	pids := map[int]int{}
	for _, l := range s.p.Find(func(l proctest.Line) bool { return l.Msg() == "request" && l.Fields["path"] == "/api/token/" }) {
		pids[l.Int("pid")]++
	}
	t.Logf("%d concurrent failed logins for one username, served by %d workers (per pid: %v): %d × 401, %d × 429",
		n, len(pids), pids, count[401], count[429])
	if len(pids) < 2 {
		t.Errorf("%d logins were served by %d worker, want several: the throttle must hold across workers", n, len(pids))
	}
	if count[401] > auth.ThrottleFailures {
		t.Errorf("%d concurrent failed logins: %d checked a password (401), want at most %d", n, count[401], auth.ThrottleFailures)
	}
	if count[401]+count[429] != n {
		t.Errorf("%d concurrent failed logins: got %v", n, count)
	}

	// The documented rule: past the limit, the right password waits too.
	r := postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
	if count[401] == auth.ThrottleFailures {
		secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
		if r.status != 429 || secs < 890 || secs > 901 {
			t.Errorf("the right password after %d failures: %d, Retry-After %q, want 429 and about 900", count[401], r.status, r.header.Get("Retry-After"))
		}
	} else if r.status != 200 {
		t.Errorf("the right password after %d failures: %d %s, want 200", count[401], r.status, r.body)
	}
}

// heldPosts sends a JSON POST of each body to path on its own connection,
// all at once, on several workers: it opens the connections one by one, a
// few milliseconds apart (a burst of connections goes to the one worker
// that wins the race to accept the first), and sends each request but the
// last byte of its body; then it sends every last byte at once, so that
// the handlers, which read the whole body first, start together. It
// returns the replies in the order of bodies.
func heldPosts(t *testing.T, base, path string, bodies []string) []reply {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	conns := make([]net.Conn, len(bodies))
	for i, body := range bodies {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			path, addr, len(body), body[:len(body)-1])
		conns[i] = c
		time.Sleep(20 * time.Millisecond)
	}
	replies := make([]reply, len(bodies))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(c, bodies[i][len(bodies[i])-1:]); err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			replies[i] = reply{resp.StatusCode, resp.Header, string(b)}
		})
	}
	wg.Wait()
	return replies
}

// TestLoginBurstMemory sends 48 logins at once to 2 workers: 36 right
// passwords and 12 wrong ones for 12 users. Each worker hashes at most
// auth.PasswordHashingSlots passwords at once, so their RSS grows by a
// bounded amount (at most 150 MiB together; before the bound, 24 logins
// took one worker from 24 to 473 MB). Excess logins wait, or get 503 with
// Retry-After within auth.MaxPasswordWait; every 200 holds tokens that
// work.
func TestLoginBurstMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("48 password hashes")
	}
	s := startSite(t, t.TempDir(), "--workers", "2")
	st := s.store(t)
	const users, each = 12, 4 // 4 attempts per user: under the throttle's 5
	for i := range users {
		addUser(t, st, fmt.Sprint("user", i), "correct horse", true)
	}
	workers := proctest.Children(s.p.Pid())
	if len(workers) != 2 {
		t.Fatalf("workers %v, want 2", workers)
	}
	before := int64(0)
	for _, pid := range workers {
		before += procStatus(t, pid, "VmRSS")
	}

	type result struct {
		r        reply
		right    bool
		duration time.Duration
	}
	results := make([]result, users*each)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Go(func() {
			<-start
			password := "correct horse"
			if i%each == 0 {
				password = "wrong horse"
			}
			began := time.Now()
			r := postJSON(t, s.url+"/api/token/", jsonBody("username", fmt.Sprint("user", i/each), "password", password))
			results[i] = result{r, password == "correct horse", time.Since(began)}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	burst := time.Since(began)

	peak := int64(0)
	var peaks []string
	for _, pid := range workers {
		hwm := procStatus(t, pid, "VmHWM")
		peak += hwm
		peaks = append(peaks, fmt.Sprintf("%d: peak %.1f MiB", pid, proctest.MiB(hwm)))
	}
	count := map[string]int{}
	var slowest time.Duration
	for _, res := range results {
		r := res.r
		kind := "wrong"
		if res.right {
			kind = "right"
		}
		count[fmt.Sprintf("%s %d", kind, r.status)]++
		slowest = max(slowest, res.duration)
		switch {
		case r.status == 200 && res.right:
			m := r.json(t)
			access, _ := m["access"].(string)
			refresh, _ := m["refresh"].(string)
			want(t, "a burst login's access token", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
			want(t, "a burst login's refresh token", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", refresh)), 200, `{}`)
		case r.status == 401 && !res.right:
		case r.status == 503:
			if r.header.Get("Retry-After") != "1" || !strings.Contains(r.body, `"code":"service_unavailable"`) {
				t.Errorf("a 503 in the burst: Retry-After %q, %s; want 1 and service_unavailable", r.header.Get("Retry-After"), r.body)
			}
			if limit := auth.MaxPasswordWait + 2*time.Second; res.duration > limit {
				t.Errorf("a 503 in the burst came after %v, want within %v", res.duration, limit)
			}
		default:
			t.Errorf("a login (%s password) in the burst: %d %s", kind, r.status, r.body)
		}
	}
	grew := peak - before
	perWorker := map[int]int{}
	for _, l := range s.p.Find(func(l proctest.Line) bool { return l.Msg() == "request" && l.Fields["path"] == "/api/token/" }) {
		perWorker[l.Int("pid")]++
	}
	t.Logf("48 logins at once on 2 workers (logins per worker pid: %v) in %v (slowest answer %v): %v; RSS %.1f MiB before, peak %.1f MiB (+%.1f MiB; %s)",
		perWorker, burst, slowest, count, proctest.MiB(before), proctest.MiB(peak), proctest.MiB(grew), strings.Join(peaks, ", "))
	switch {
	case proctest.RaceEnabled():
		t.Log("built with -race: the race detector's shadow memory makes the RSS bound meaningless")
	case grew > 150<<20:
		t.Errorf("the 2 workers' RSS grew by %.1f MiB in a burst of 48 logins, want at most 150 MiB", proctest.MiB(grew))
	}
}

// procStatus is a /proc/PID/status memory field (VmRSS, VmHWM), in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	n, err := proctest.Memory(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
