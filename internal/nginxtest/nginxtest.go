// Package nginxtest runs a throwaway nginx for tests: the reverse proxy
// that Remuda's example configuration (examples/nginx) puts in front of
// the server, started in the foreground in a temporary prefix on a free
// port of 127.0.0.1.
package nginxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/remuda/remuda/internal/proctest"
)

// Nginx is a running nginx.
type Nginx struct {
	// URL is where it listens: http://127.0.0.1:PORT.
	URL string
	// Addr is its host:port, to substitute for the listen address of a
	// site's configuration.
	Addr string
	p    *proctest.Proc
	dir  string
}

// Binary returns the path of nginx, or skips t with what to install.
func Binary(t testing.TB) string { return proctest.Binary(t, "nginx", "nginx") }

// Addr picks the address Start will listen on, so that a test can write
// it into the site's configuration first.
func Addr(t testing.TB) string { return proctest.FreeAddr(t) }

// Start runs nginx with site (what a deployment puts in conf.d: upstream
// and server blocks) inside a minimal http block, and waits until it
// answers on addr, which the site must listen on. nginx runs as the test's
// user and writes its error log to its stderr (shown if the test fails);
// it is killed when the test ends.
func Start(t testing.TB, addr, site string) *Nginx {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		// Root's nginx would run its workers as nobody, who cannot reach
		// the server's unix socket (mode 0660).
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr info;
events { worker_connections 512; }
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	include %[2]s/site.conf;
}
`, user, dir)
	for name, text := range map[string]string{"nginx.conf": conf, "site.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s\nsite:\n%s", err, out, site)
	}
	p := proctest.Start(t, bin, nil, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr")
	n := &Nginx{URL: "http://" + addr, Addr: addr, p: p, dir: dir}
	if !proctest.WaitUntil(10*time.Second, func() bool {
		_, _, err := proctest.Get(n.URL+"/", time.Second)
		return err == nil
	}) {
		t.Fatalf("nginx on %s did not answer within 10 s", addr)
	}
	return n
}
