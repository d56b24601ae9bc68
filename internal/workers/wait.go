package workers

import (
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit returns once process pid has exited, without reaping it: the
// exec.Cmd's Wait that follows then returns at once.
//
// Wait alone blocks an OS thread in waitid(2) for as long as the child
// lives, and the Go runtime never ends a thread it made: a master would
// keep one thread, with its two stacks (48 KiB), for every worker that was
// ever alive at the same time as the others, and during reloads draining
// generations overlap. Waiting for a pidfd to become readable takes the
// runtime's poller instead, no thread. Where pidfds are missing (Linux
// before 5.10), awaitExit returns at once and Wait blocks a thread as it
// did.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// Read calls the func until it returns true, waiting for the fd to be
	// readable in between; an error (the poller cannot take the fd) ends
	// the wait too.
	rc.Read(func(fd uintptr) bool {
		// WNOWAIT: look, and leave the child for Wait to reap. Linux
		// zeroes info when no child has exited.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
}
