// Package safefile creates, opens and removes the files a server keeps at
// paths an operator chose (a pidfile, log files), so that a file planted
// there by another user is neither followed nor adopted.
//
// What can be planted at a path, by a user who may write in its directory:
//
//   - a symbolic link, so that a process running as root writes where it
//     points (/etc/shadow, another service's config);
//   - a file of the planter's own, writable by everyone, so that a process
//     taking it over as its own (a pidfile rewritten in place) writes into
//     a file the planter keeps changing: `kill $(cat server.pid)` then kills
//     what the planter chose;
//   - a hard link to a file the planter may not write but the server may;
//   - a named pipe, whose open for writing blocks until someone reads it.
//
// Files are opened with O_NOFOLLOW, then checked on the descriptor
// (fstat), never by path: what was checked is what is written. A file
// replaced whole is written to a new file of a random name, created with
// O_EXCL in the same directory (a name already taken, by a symbolic link
// or a file, is never reused), then renamed over the old name; rename(2)
// replaces a symbolic link, never its target.
//
// The owners a file may have are this process's effective user, root, and,
// for OpenAppend, the users passed in (the user a master will become: a log
// file given to it by logrotate's `create` belongs to the server). Group
// write permission is left to the operator.
package safefile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// Why a file or directory is refused. Each comes wrapped in an
// *os.PathError that names the path.
var (
	ErrSymlink          = errors.New("is a symbolic link: give the path of the file itself")
	ErrOwner            = errors.New("is owned by another user")
	ErrWritableByOthers = errors.New("is writable by every user")
	ErrHardLinked       = errors.New("has other hard links")
	ErrNotRegular       = errors.New("is not a regular file")
	ErrUnsafeDir        = errors.New("is a directory another user can write in")
)

// trusted tells whether uid may own a file the server writes: this process's
// effective user, root, or one of owners.
func trusted(uid uint32, owners []int) bool {
	return uid == 0 || int(uid) == os.Geteuid() || slices.Contains(owners, int(uid))
}

// OpenAppend opens the file at path for appending (O_APPEND: the lines of
// several processes writing it never overwrite each other), creating it with
// mode perm (less the umask) if there is none, and reports whether it created
// it. It refuses a symbolic link, anything but a regular file (a character
// device of root's, such as /dev/null, is taken as it is), a file owned
// by a user other than this process's, root or owners, a file every user
// may write, and a file with other hard links. The error is an
// *os.PathError naming path, wrapping one of the Err values above or the
// open's own error. Opening never blocks (a named pipe is refused).
func OpenAppend(path string, perm os.FileMode, owners ...int) (f *os.File, created bool, err error) {
	const flags = unix.O_WRONLY | unix.O_APPEND | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	fd, err := open(path, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		fd, err = open(path, flags|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
		created = err == nil
		if errors.Is(err, unix.EEXIST) {
			// Made since the first open (by another process of ours, or
			// planted): open it, checked as any other.
			fd, err = open(path, flags, 0)
		}
	}
	if err != nil {
		return nil, false, openError("open", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if why := check(&st, owners); why != nil {
		unix.Close(fd)
		return nil, false, &os.PathError{Op: "open", Path: path, Err: why}
	}
	// O_NONBLOCK was for the open; the file is written with plain writes.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), created, nil
}

// check tells why a file the server would write is refused, or nil.
func check(st *unix.Stat_t, owners []int) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFCHR:
		if st.Uid == 0 && st.Nlink == 1 {
			return nil // /dev/null, a terminal: only root makes device nodes
		}
		return ErrNotRegular
	default:
		return ErrNotRegular
	}
	switch {
	case !trusted(st.Uid, owners):
		return fmt.Errorf("%w (uid %d; this process runs as uid %d)", ErrOwner, st.Uid, os.Geteuid())
	case st.Mode&0o002 != 0:
		return fmt.Errorf("%w (mode %04o)", ErrWritableByOthers, st.Mode&0o7777)
	case st.Nlink != 1:
		return fmt.Errorf("%w (%d links)", ErrHardLinked, st.Nlink)
	}
	return nil
}

// open is open(2), retried on EINTR.
func open(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openError is the error of a failed open of path: ErrSymlink for the ELOOP
// of O_NOFOLLOW on a symbolic link.
func openError(op, path string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			err = ErrSymlink
		}
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

// tempName makes the name of a new temporary file: prefix, then 26 random
// characters. A test replaces it to plant files at the names it will try.
var tempName = func(prefix string) string { return prefix + rand.Text() + ".tmp" }

// tempAttempts is how many names WriteReplace tries before it gives up.
const tempAttempts = 100

// WriteReplace replaces the file at path, atomically, with a new file of
// mode perm (exactly: the umask does not apply) holding data: a reader
// sees the old content or the new, never a part. The new file is made
// under a random name in path's directory, with O_EXCL (never a name that
// exists, a symbolic link or a file), then renamed to path: whatever was
// at path, a symbolic link included, is replaced, never written through.
//
// The directory must be one that no user but this process's and root can
// write in: owned by one of them, and not writable by every user unless
// sticky (as /tmp is: others cannot rename or remove the file there).
// Otherwise another user could replace the file once written; the error
// then wraps ErrUnsafeDir. (Group write is not checked.)
func WriteReplace(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := checkDir(dir); err != nil {
		return err
	}
	prefix := filepath.Join(dir, "."+filepath.Base(path)+".")
	var (
		fd   int
		tmp  string
		err  error
		flag = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	)
	for range tempAttempts {
		tmp = tempName(prefix)
		if fd, err = open(tmp, flag, 0o600); !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "create temporary for", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = f.Chmod(perm.Perm())
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// checkDir tells whether a user other than this process's or root could
// replace a file in dir.
func checkDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return &os.PathError{Op: "stat", Path: dir, Err: unix.ENOTDIR}
	case !trusted(st.Uid, nil):
		return &os.PathError{Op: "check directory", Path: dir, Err: fmt.Errorf("%w (owned by uid %d)", ErrUnsafeDir, st.Uid)}
	case st.Mode&0o002 != 0 && st.Mode&unix.S_ISVTX == 0:
		return &os.PathError{Op: "check directory", Path: dir, Err: fmt.Errorf("%w (mode %04o: writable by every user, not sticky)", ErrUnsafeDir, st.Mode&0o7777)}
	}
	return nil
}

// RemoveOwn removes the file at path if it is this process's own: a regular
// file owned by this process's effective user, with no other hard link, that
// holds exactly data. It follows no symbolic link, and removes nothing
// else (a file planted by another user, a file rewritten since, as by the
// next master after an upgrade). It reports whether it removed the file;
// a path with no file is not an error.
func RemoveOwn(path string, data []byte) (bool, error) {
	fd, err := open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		if err = openError("open", path, err); errors.Is(err, ErrSymlink) {
			return false, nil // not ours
		}
		return false, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Nlink != 1 {
		return false, nil
	}
	got, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	if err != nil || !bytes.Equal(got, data) {
		return false, err
	}
	if err := os.Remove(path); err != nil {
		return false, err
	}
	return true, nil
}
