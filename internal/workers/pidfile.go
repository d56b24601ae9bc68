package workers

import (
	"fmt"
	"os"
	"strconv"

	"github.com/remuda/remuda/internal/safefile"
)

// pidFileMode is the mode of the pidfile: the master's own file, which
// every user may read and none but its owner may write.
const pidFileMode = 0o644

// pidContent is what the pidfile of this process holds.
func pidContent() []byte { return []byte(strconv.Itoa(os.Getpid()) + "\n") }

// writePIDFile writes this process's PID to path, atomically (a reader sees
// the old content or the new, never a part), as a new file of its own,
// mode pidFileMode: it is made under a random name in path's directory,
// with O_EXCL, then renamed to path. A symbolic link or another user's
// file at path is replaced, never written through or taken over; a
// directory that another user can write in is refused, since that user
// could replace the pidfile afterwards (see internal/safefile).
func writePIDFile(path string) error {
	if err := safefile.WriteReplace(path, pidContent(), pidFileMode); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// removePIDFile removes the pidfile if it is still this process's: a
// regular file of this process's user that holds its PID. A file another
// user owns, a symbolic link, or a pidfile the next master (USR2) has
// written since is left alone.
func removePIDFile(path string) {
	safefile.RemoveOwn(path, pidContent())
}
