package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/remuda/remuda/auth"
)

// ImportRefreshTokens records refresh tokens another deployment issued, in
// one transaction, as (*SQLite).ImportRefreshTokens does: a jti not held is
// added as a family of its own, outstanding or blacklisted; a jti held
// keeps its record and is blacklisted if the import says so, never made
// usable again. It returns how many were added, and how many the import
// blacklisted.
func (p *Store) ImportRefreshTokens(ctx context.Context, tokens []auth.ImportedToken) (added, blacklisted int, err error) {
	var (
		now        = second(time.Now())
		jtis       = make([]string, len(tokens))
		users      = make([]int64, len(tokens))
		created    = make([]time.Time, len(tokens))
		expires    = make([]time.Time, len(tokens))
		blacklists = make([]*time.Time, len(tokens))
	)
	for i, t := range tokens {
		uid, ok := userID(t.UserID)
		if t.JTI == "" || !ok {
			return 0, 0, fmt.Errorf("auth: postgres: import refresh tokens: token %q: want a jti and a decimal user id (got %q)", t.JTI, t.UserID)
		}
		jtis[i], users[i], created[i], expires[i] = t.JTI, uid, now, second(t.ExpiresAt)
		if !t.CreatedAt.IsZero() {
			created[i] = second(t.CreatedAt)
		}
		if !t.BlacklistedAt.IsZero() {
			at := second(t.BlacklistedAt)
			blacklists[i] = &at
		}
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		added, blacklisted = 0, 0
		// One statement for every token: the jtis held before, then the
		// upsert, whose RETURNING has the rows it inserted or blacklisted.
		held := map[string]bool{}
		rows, err := tx.Query(ctx, `SELECT jti FROM refresh_tokens WHERE jti = ANY($1)`, jtis)
		if err != nil {
			return err
		}
		for rows.Next() {
			var jti string
			if err := rows.Scan(&jti); err != nil {
				rows.Close()
				return err
			}
			held[jti] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `
			INSERT INTO refresh_tokens AS t (jti, family, user_id, created_at, expires_at, blacklisted_at)
			SELECT jti, jti, user_id, created_at, expires_at, blacklisted_at
			FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
				AS i (jti, user_id, created_at, expires_at, blacklisted_at)
			ON CONFLICT (jti) DO UPDATE SET blacklisted_at = excluded.blacklisted_at
				WHERE t.blacklisted_at IS NULL AND excluded.blacklisted_at IS NOT NULL
			RETURNING jti, blacklisted_at IS NOT NULL`,
			jtis, users, created, expires, blacklists)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				jti string
				bl  bool
			)
			if err := rows.Scan(&jti, &bl); err != nil {
				rows.Close()
				return err
			}
			if !held[jti] {
				added++
			}
			if bl {
				blacklisted++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, 0, errorf("import refresh tokens", err)
	}
	return added, blacklisted, nil
}
