package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/remuda/remuda/auth"
)

// refreshImporter is a store that can take the refresh tokens another
// deployment issued: simplejwt's outstanding and blacklisted tokens, so that
// a token simplejwt had blacklisted (rotated out, or logged out) stays
// refused after the switch. *auth.SQLite and *auth.Postgres are.
type refreshImporter interface {
	ImportRefreshTokens(ctx context.Context, tokens []auth.ImportedToken) (added, blacklisted int, err error)
}

// importUsers is `server importusers --from-django FILE`: the users of a
// `manage.py dumpdata auth.user token_blacklist` file, with their ids and
// password hashes, and simplejwt's record of the refresh tokens it issued
// and blacklisted (the token_blacklist app's tables). The tokens go first,
// then the users, each all or none: an import that fails half-way leaves
// no user able to log in who was not before, and running it again
// completes it. Tokens already expired, beyond the leeway, are left out:
// they are refused anyway. A dump without token_blacklist records imports
// the users, with a warning.
func importUsers(inv *invocation) int {
	stdout, cfg := inv.stdout, inv.cfg
	file := inv.own["from-django"]
	if file == "" {
		inv.errorf("--from-django FILE is required (the output of manage.py dumpdata auth.user token_blacklist)")
		return ExitUsage
	}
	f, err := os.Open(file)
	if err != nil {
		inv.errorf("%v", err)
		return ExitUsage
	}
	defer f.Close()
	dump, err := auth.ParseDjangoDump(f)
	if err != nil {
		inv.errorf("%s: %v", file, err)
		return ExitError
	}
	st, err := openStore(cfg)
	if err != nil {
		inv.errorf("%v", err)
		return ExitError
	}
	defer st.Close()
	ctx := context.Background()

	if len(dump.Tokens) == 0 && dump.Orphans == 0 {
		inv.errorf("warning: %s holds no token_blacklist records: if the Django project "+
			"uses rest_framework_simplejwt.token_blacklist, the refresh tokens it blacklisted will be accepted here until "+
			"they expire; dump with `manage.py dumpdata auth.user token_blacklist`", file)
	} else {
		ti, ok := st.(refreshImporter)
		if !ok {
			inv.errorf("%s: this store (%T) cannot import refresh tokens (nothing imported)", file, st)
			return ExitError
		}
		live := make([]auth.ImportedToken, 0, len(dump.Tokens))
		cutoff := time.Now().Add(-cfg.JWTLeeway)
		for _, t := range dump.Tokens {
			if !t.ExpiresAt.Before(cutoff) {
				live = append(live, t)
			}
		}
		added, blacklisted, err := ti.ImportRefreshTokens(ctx, live)
		if err != nil {
			inv.errorf("%s: %v (nothing imported)", file, err)
			return ExitError
		}
		fmt.Fprintf(stdout, "imported %d refresh tokens from %s: %d added, %d blacklisted; %d expired and %d of deleted users left out\n",
			len(live), file, added, blacklisted, len(dump.Tokens)-len(live), dump.Orphans)
	}

	created, updated, err := st.ImportUsers(ctx, dump.Users)
	if err != nil {
		inv.errorf("%s: %v (no user imported)", file, err)
		return ExitError
	}
	fmt.Fprintf(stdout, "imported %d users from %s: %d created, %d updated\n", len(dump.Users), file, created, updated)
	return ExitOK
}
