package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ImportRefreshTokens records refresh tokens another deployment issued with
// the same signing key (simplejwt's outstanding and blacklisted tokens,
// from ParseDjangoDump), in one transaction: all or none. A jti the store
// does not hold is added, as the first token of a family of its own (as a
// token adopted on first sight), outstanding, or blacklisted as of its
// BlacklistedAt. A jti it holds already keeps its record, and is
// blacklisted if the import says so: an import never makes a token usable
// again (a token consumed or blacklisted here stays so). It returns how
// many tokens were added, and how many the import blacklisted (added so,
// or blacklisted now).
func (s *SQLite) ImportRefreshTokens(ctx context.Context, tokens []ImportedToken) (added, blacklisted int, err error) {
	if err := s.ready(); err != nil {
		return 0, 0, err
	}
	now := time.Now()
	err = s.write(ctx, func(tx *sql.Tx) error {
		added, blacklisted = 0, 0
		state, err := tx.PrepareContext(ctx, `SELECT blacklisted_at IS NOT NULL FROM refresh_tokens WHERE jti = ?`)
		if err != nil {
			return err
		}
		defer state.Close()
		insert, err := tx.PrepareContext(ctx, `
			INSERT INTO refresh_tokens (jti, family, user_id, created_at, expires_at, blacklisted_at)
			VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer insert.Close()
		revoke, err := tx.PrepareContext(ctx, `UPDATE refresh_tokens SET blacklisted_at = ? WHERE jti = ? AND blacklisted_at IS NULL`)
		if err != nil {
			return err
		}
		defer revoke.Close()
		for _, t := range tokens {
			uid, ok := sqliteUserID(t.UserID)
			if t.JTI == "" || !ok {
				return fmt.Errorf("token %q: want a jti and a decimal user id (got %q)", t.JTI, t.UserID)
			}
			var bl *int64
			if !t.BlacklistedAt.IsZero() {
				at := t.BlacklistedAt.Unix()
				bl = &at
			}
			var was bool
			err := state.QueryRowContext(ctx, t.JTI).Scan(&was)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				created := t.CreatedAt
				if created.IsZero() {
					created = now
				}
				if _, err := insert.ExecContext(ctx, t.JTI, t.JTI, uid, created.Unix(), t.ExpiresAt.Unix(), bl); err != nil {
					return fmt.Errorf("token %q: %w", t.JTI, err)
				}
				added++
				if bl != nil {
					blacklisted++
				}
			case err != nil:
				return fmt.Errorf("token %q: %w", t.JTI, err)
			case !was && bl != nil:
				if _, err := revoke.ExecContext(ctx, *bl, t.JTI); err != nil {
					return fmt.Errorf("token %q: %w", t.JTI, err)
				}
				blacklisted++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("auth: sqlite: import refresh tokens: %w", s.fail(err))
	}
	return added, blacklisted, nil
}
