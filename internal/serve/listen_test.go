package serve

import (
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestListenMissingDirectory checks that a unix bind whose directory is
// missing says so and how to create it.
func TestListenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "remuda")
	ln, err := Listen("unix:"+filepath.Join(dir, "server.sock"), 0)
	if err == nil {
		ln.Close()
		t.Fatal("got a listener, want an error")
	}
	for _, want := range []string{"directory " + dir + " does not exist", "create it", "RuntimeDirectory=remuda"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q, want it to contain %q", err, want)
		}
	}
	if got := runtimeDirName("/run/remuda"); got != "remuda" {
		t.Errorf("runtimeDirName(/run/remuda): got %q, want remuda", got)
	}
}

// TestSetBacklog checks with ss(8) that SetBacklog gives a TCP and a unix
// listening socket the queue asked for.
func TestSetBacklog(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss (Debian package iproute2) is not installed")
	}
	for _, addr := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "s.sock")} {
		ln, err := Listen(addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if err := SetBacklog(ln, 37); err != nil {
			t.Fatal(err)
		}
		if got := ssBacklog(t, ln.Addr()); got != 37 {
			t.Errorf("%s: got backlog %d, want 37", addr, got)
		}
	}
}

// ssBacklog returns the listen queue size ss(8) shows for the listening
// socket at addr: the Send-Q column of a listening socket.
func ssBacklog(t testing.TB, addr net.Addr) int {
	t.Helper()
	args := []string{"-lxH", "src", addr.String()}
	if ta, ok := addr.(*net.TCPAddr); ok {
		args = []string{"-ltnH", "sport = :" + strconv.Itoa(ta.Port)}
	}
	out, err := exec.Command("ss", args...).Output()
	if err != nil {
		t.Fatalf("ss %s: %v", strings.Join(args, " "), err)
	}
	f := strings.Fields(string(out))
	i := slices.Index(f, "LISTEN")
	if i < 0 || i+2 >= len(f) {
		t.Fatalf("ss %s: no listening socket in %q", strings.Join(args, " "), out)
	}
	n, err := strconv.Atoi(f[i+2])
	if err != nil {
		t.Fatalf("ss %s: Send-Q %q: %v", strings.Join(args, " "), f[i+2], err)
	}
	return n
}
