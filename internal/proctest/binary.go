package proctest

import (
	"os/exec"
	"testing"
)

// Binary returns the path of the program name, looked up in /usr/sbin
// (where Debian puts daemons, often outside a user's PATH) and then on
// PATH, or skips t saying which Debian package installs it (.ci/run does).
func Binary(t testing.TB, name, pkg string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skipf("%s is not installed (Debian package %s; .ci/run installs it)", name, pkg)
	return ""
}
