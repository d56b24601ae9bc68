package server

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// credential resolves --user and --group; nil when no user is given.
func credential(cfg Config) (*syscall.Credential, error) {
	if cfg.User == "" {
		return nil, nil
	}
	u, err := user.Lookup(cfg.User)
	if err != nil {
		if u, err = user.LookupId(cfg.User); err != nil {
			return nil, fmt.Errorf("user %q: no such user", cfg.User)
		}
	}
	gid := u.Gid
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			if g, err = user.LookupGroupId(cfg.Group); err != nil {
				return nil, fmt.Errorf("group %q: no such group", cfg.Group)
			}
		}
		gid = g.Gid
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q: ids %s:%s are not numeric", cfg.User, u.Uid, gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(g)}, nil
}
