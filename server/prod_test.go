package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// startProd runs the test app in prod with 2 workers and an access log.
func startProd(t *testing.T) (*proctest.Proc, string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envApp + "=1"}, "run", "--prod", "--workers", "2", "--bind", addr, "--access-log", "-")
	p.WaitReady(t, 1)
	return p, addr
}

// rawRequest writes raw bytes on a new connection and returns the status
// line of the answer ("" if the connection closed without one).
func rawRequest(t *testing.T, addr string, raw []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write(raw) // the server may answer before it has read it all
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestProdHardening(t *testing.T) {
	p, addr := startProd(t)
	url := "http://" + addr
	workers := proctest.Children(p.Pid())

	t.Run("security headers", func(t *testing.T) {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("HSTS %q over plain HTTP from no proxy, want none", got)
		}
		req, _ := http.NewRequest("GET", url+"/healthz", nil)
		req.Header.Set("X-Forwarded-Proto", "https") // from 127.0.0.1: a trusted proxy by default
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
			t.Errorf("HSTS %q behind a trusted proxy saying https, want max-age", got)
		}
	})
	t.Run("forwarded for", func(t *testing.T) {
		req, _ := http.NewRequest("GET", url+"/whoami", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "203.0.113.7" {
			t.Errorf("RemoteAddr behind a trusted proxy: %q, want the client's 203.0.113.7", b)
		}
	})
	t.Run("panic", func(t *testing.T) {
		resp, err := http.Get(url + "/panic")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body map[string]string
		json.Unmarshal(b, &body)
		if resp.StatusCode != 500 || body["detail"] != "Internal server error" || body["request_id"] == "" {
			t.Errorf("panic: %d %s, want 500 with the detail and a request id", resp.StatusCode, b)
		}
		if strings.Contains(string(b), "secret-detail") || strings.Contains(string(b), "goroutine") {
			t.Errorf("the panic's detail reached the client: %s", b)
		}
		line := p.WaitFor(t, 2*time.Second, 1, "panic logged", proctest.Msg("panic"))[0]
		if line.Fields["request_id"] != body["request_id"] || !strings.Contains(line.Raw, "secret-detail-xyz") || !strings.Contains(line.Raw, "goroutine") {
			t.Errorf("panic log line lacks the request id, the value or the stack: %s", line.Raw)
		}
	})
	t.Run("20 MiB body", func(t *testing.T) {
		got := rawRequest(t, addr, []byte(fmt.Sprintf("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 20<<20)))
		if !strings.HasPrefix(got, "HTTP/1.1 413") {
			t.Errorf("20 MiB body: %q, want 413", got)
		}
	})
	t.Run("2 MiB header", func(t *testing.T) {
		raw := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"
		if got := rawRequest(t, addr, []byte(raw)); !strings.HasPrefix(got, "HTTP/1.1 431") && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("2 MiB header: %q, want 431 or 400", got)
		}
	})
	t.Run("Content-Length and Transfer-Encoding", func(t *testing.T) {
		raw := "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		if got := rawRequest(t, addr, []byte(raw)); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("Content-Length with Transfer-Encoding: %q, want 400", got)
		}
	})
	t.Run("malformed corpus", func(t *testing.T) {
		files, _ := filepath.Glob("../internal/strict/testdata/invalid/*.http")
		if len(files) < 50 {
			t.Fatalf("%d corpus files", len(files))
		}
		for _, f := range files {
			raw, _ := os.ReadFile(f)
			got := rawRequest(t, addr, raw)
			if !strings.HasPrefix(got, "HTTP/1.1 400") && !strings.HasPrefix(got, "HTTP/1.1 414") && !strings.HasPrefix(got, "HTTP/1.1 431") {
				t.Errorf("%s: %q, want 400, 414 or 431", filepath.Base(f), got)
			}
		}
		t.Logf("%d malformed or smuggling requests refused", len(files))
	})
	t.Run("garbage request line", func(t *testing.T) {
		if got := rawRequest(t, addr, []byte("GARBAGE\r\n\r\n")); !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("garbage request line: %q, want 400", got)
		}
	})

	if now := proctest.Children(p.Pid()); !slices.Equal(slices.Sorted(slices.Values(now)), slices.Sorted(slices.Values(workers))) {
		t.Errorf("workers %v after the probes, want the original %v", now, workers)
	}
	if status, _, err := proctest.Get(url+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("after the probes: %d %v", status, err)
	}
}

func TestProdSlowHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	p, addr := startProd(t)
	const n = 300
	var dropped atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	var longest atomic.Int64
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			// A byte of headers every second, never the end of them.
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
			for ctx.Err() == nil {
				if _, err := io.WriteString(c, "X"); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
					break
				}
			}
			d := time.Since(start)
			if ctx.Err() == nil {
				dropped.Add(1)
				for old := longest.Load(); d.Nanoseconds() > old && !longest.CompareAndSwap(old, d.Nanoseconds()); old = longest.Load() {
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	t0 := time.Now()
	status, _, err := proctest.Get("http://"+addr+"/healthz", 5*time.Second)
	took := time.Since(t0)
	if status != 200 || took > time.Second {
		t.Errorf("a normal request among %d slow ones: %d %v after %v, want 200 within 1s", n, status, err, took)
	}
	proctest.WaitUntil(16*time.Second, func() bool { return dropped.Load() == n })
	t.Logf("normal request answered in %v; %d of %d slow connections dropped, the last after %v",
		took, dropped.Load(), n, time.Duration(longest.Load()).Round(time.Millisecond))
	if dropped.Load() != n {
		t.Errorf("%d of %d slow connections dropped within 15s", dropped.Load(), n)
	}
	if len(proctest.Children(p.Pid())) != 2 {
		t.Errorf("workers after the slow clients: %v", proctest.Children(p.Pid()))
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestProdTLS(t *testing.T) {
	certFile, keyFile, pool := proctest.SelfSigned(t)
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envApp + "=1"}, "run", "--prod", "--workers", "2", "--bind", addr,
		"--certfile", certFile, "--keyfile", keyFile)
	p.WaitReady(t, 1)

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET over TLS: %d %s TLS %x, want 200 over HTTP/2 with TLS 1.2+", resp.StatusCode, resp.Proto, resp.TLS.Version)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got == "" {
		t.Error("no HSTS over TLS")
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get("https://" + addr + "/healthz"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if status, _, err := proctest.Get("http://"+addr+"/healthz", 2*time.Second); status == 200 {
		t.Errorf("plain HTTP on the TLS port answered 200 (%v)", err)
	}
}

func TestProdDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop privileges (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the test binary that nobody may execute.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir makes both 0700
	bin := filepath.Join(dir, "app")
	proctest.CopyBinary(t, bin)
	sock := filepath.Join(dir, "app.sock")
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, bin, []string{envApp + "=1"}, "run", "--prod", "--workers", "2", "--bind", addr,
		"--bind", "unix:"+sock, "--user", "nobody")
	p.WaitReady(t, 1)
	uid := func(pid int) string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				return f[1]
			}
		}
		return ""
	}
	for _, pid := range append([]int{p.Pid()}, proctest.Children(p.Pid())...) {
		if got := uid(pid); got != nobody.Uid {
			t.Errorf("process %d runs as uid %s, want nobody (%s)", pid, got, nobody.Uid)
		}
	}
	if fi, err := os.Stat(sock); err != nil || fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid) != nobody.Uid {
		t.Errorf("unix socket %s not given to nobody: %v", sock, err)
	}
	if status, _, err := proctest.Get("http://"+addr+"/healthz", 2*time.Second); status != 200 {
		t.Errorf("GET /healthz as nobody: %d %v", status, err)
	}
}
