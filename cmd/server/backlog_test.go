package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// checkSendQ checks that ss(8) shows the socket listening on addr with a
// listen queue (its Send-Q column) of want.
func checkSendQ(t *testing.T, addr, want string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("ss", "-ltnH", "sport = :"+port).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	f := strings.Fields(string(out))
	if i := slices.Index(f, "LISTEN"); i < 0 || i+2 >= len(f) || f[i+2] != want {
		t.Errorf("ss -ltnH 'sport = :%s': got %q, want a listening socket with Send-Q %s", port, out, want)
	}
}

// TestBacklogAndRequestLimits starts the binary in prod with --backlog and
// Gunicorn's request limits, and checks that ss(8) shows the listen queue
// asked for (the Send-Q column of a listening socket), in the dev server
// too, and that a worker
// refuses a request line and a head past the limits with 414 and 431, the
// connection closed, while it serves a request within them.
func TestBacklogAndRequestLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server; go test without -short runs it")
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss (Debian package iproute2) is not installed")
	}
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY=" + secret},
		"run", "--prod", "--workers", "1", "--bind", addr, "--database", "sqlite:"+filepath.Join(t.TempDir(), "server.db"),
		"--backlog", "37", "--limit-request-line", "100", "--limit-request-fields", "3")
	p.WaitReady(t, 1)

	checkSendQ(t, addr, "37")
	// The dev server binds through the same code, with the same queue.
	devAddr := proctest.FreeAddr(t)
	dev := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_RELOAD=0"},
		"run", "--bind", devAddr, "--database", "sqlite:"+filepath.Join(t.TempDir(), "dev.db"), "--backlog", "41")
	dev.WaitFor(t, 10*time.Second, 1, "dev listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	checkSendQ(t, devAddr, "41")

	long := "/" + strings.Repeat("a", 100)
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"within the limits", "GET /" + strings.Repeat("a", 80) + " HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n", http.StatusNotFound},
		{"request line of 101 bytes", "GET " + long + " HTTP/1.1\r\nHost: a\r\n\r\n", http.StatusRequestURITooLong},
		{"four fields", "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: t\r\nX-A: 1\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.req)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("got status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusNotFound {
				if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
					t.Errorf("got %v after the refusal, want EOF", err)
				}
			}
		})
	}
}

// TestUnixBindMissingDirectory checks that binding a unix socket in a
// directory that does not exist stops the binary with a message saying so
// and how to create it.
func TestUnixBindMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "remuda")
	p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY=" + secret},
		"run", "--prod", "--workers", "1", "--bind", "unix:"+filepath.Join(dir, "remuda.sock"),
		"--database", "sqlite:"+filepath.Join(t.TempDir(), "server.db"))
	if code := p.Wait(t, 15*time.Second); code == 0 {
		t.Errorf("got exit status 0, want an error")
	}
	var all strings.Builder
	for _, l := range p.Lines() {
		all.WriteString(l.Raw + "\n")
	}
	for _, want := range []string{"directory " + dir + " does not exist", "RuntimeDirectory="} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("got output %q, want it to contain %q", all.String(), want)
		}
	}
}
