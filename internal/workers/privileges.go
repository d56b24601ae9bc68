package workers

import (
	"fmt"
	"os"
	"syscall"
)

// dropPrivileges gives the unix sockets to cred's user and group, then
// makes this process (every thread: Go does that since 1.16) that user,
// with that group as its only one. A process that is that user already
// keeps going (a master started by USR2 after the drop).
func dropPrivileges(ls []listener, cred *syscall.Credential) error {
	if os.Geteuid() == int(cred.Uid) && os.Getegid() == int(cred.Gid) {
		return nil
	}
	for _, l := range ls {
		if l.network == "unix" {
			// Lchown: a symbolic link swapped in at the path since the bind
			// must not turn into a chown of its target.
			if err := os.Lchown(l.addr, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("drop privileges: %w", err)
			}
		}
	}
	if err := syscall.Setgroups([]int{int(cred.Gid)}); err != nil {
		return fmt.Errorf("drop privileges: setgroups: %w", err)
	}
	if err := syscall.Setgid(int(cred.Gid)); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", cred.Gid, err)
	}
	if err := syscall.Setuid(int(cred.Uid)); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", cred.Uid, err)
	}
	return nil
}
