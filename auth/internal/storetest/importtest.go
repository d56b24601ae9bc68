package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
)

// Importer is a store that can take simplejwt's refresh tokens, as
// `server importusers` needs: auth's SQLite and auth/postgres's Store.
type Importer interface {
	auth.Store
	ImportRefreshTokens(ctx context.Context, tokens []auth.ImportedToken) (added, blacklisted int, err error)
}

// ImportRefreshTokens imports simplejwt's tokens into a store that
// already holds some: new ones are added, outstanding or blacklisted, each
// its own family; one held is blacklisted if the import says so, and none
// is made usable again; a second import changes nothing; a bad token makes
// the import write nothing.
func ImportRefreshTokens(t *testing.T, open func(t *testing.T) Importer) {
	ctx := t.Context()
	s := open(t)
	exp := Now.Add(time.Hour)
	Add(t, s, "held-outstanding", "held-outstanding")
	Add(t, s, "held-consumed", "held-consumed")
	Consume(t, s, "held-consumed", auth.ConsumeOK)
	Add(t, s, "held-blacklisted", "held-blacklisted")
	if err := s.Blacklist(ctx, "held-blacklisted", Now); err != nil {
		t.Fatal(err)
	}
	bl := Now.Add(-time.Minute)
	tokens := []auth.ImportedToken{
		{JTI: "new-outstanding", UserID: "1", CreatedAt: Now.Add(-time.Hour), ExpiresAt: exp},
		{JTI: "new-blacklisted", UserID: "1", ExpiresAt: exp, BlacklistedAt: bl},
		{JTI: "held-outstanding", UserID: "1", ExpiresAt: exp, BlacklistedAt: bl},
		{JTI: "held-consumed", UserID: "1", ExpiresAt: exp},
		{JTI: "held-blacklisted", UserID: "1", ExpiresAt: exp},
	}
	added, blacklisted, err := s.ImportRefreshTokens(ctx, tokens)
	if err != nil {
		t.Fatal(err)
	}
	if added != 2 || blacklisted != 2 {
		t.Errorf("got %d added, %d blacklisted; want 2 (the new ones), 2 (new-blacklisted, held-outstanding)", added, blacklisted)
	}
	for jti, want := range map[string]auth.ConsumeResult{
		"new-outstanding":  auth.ConsumeOK,
		"new-blacklisted":  auth.ConsumeRevoked,
		"held-outstanding": auth.ConsumeRevoked,
		"held-consumed":    auth.ConsumeReused,
		"held-blacklisted": auth.ConsumeRevoked,
	} {
		State(t, s, jti, want)
	}
	rt := Consume(t, s, "new-outstanding", auth.ConsumeOK)
	SameToken(t, "new-outstanding", rt, auth.RefreshToken{JTI: "new-outstanding", Family: "new-outstanding", UserID: "1", ExpiresAt: exp})
	Consume(t, s, "new-blacklisted", auth.ConsumeRevoked)

	// Again: nothing new, and new-outstanding, consumed since, stays so.
	added, blacklisted, err = s.ImportRefreshTokens(ctx, tokens)
	if err != nil || added != 0 || blacklisted != 0 {
		t.Errorf("the same import again: %d added, %d blacklisted, %v; want 0, 0", added, blacklisted, err)
	}
	State(t, s, "new-outstanding", auth.ConsumeReused)

	// All or none.
	_, _, err = s.ImportRefreshTokens(ctx, []auth.ImportedToken{
		{JTI: "fine", UserID: "1", ExpiresAt: exp, BlacklistedAt: bl},
		{JTI: "bad", UserID: "alice", ExpiresAt: exp},
	})
	if err == nil {
		t.Error("a token with user id alice: no error")
	}
	State(t, s, "fine", auth.ConsumeUnknown)

	// FlushExpired drops imported tokens as any other.
	if n, err := s.FlushExpired(ctx, exp.Add(time.Second)); err != nil || n != 5 {
		t.Errorf("FlushExpired after they expired: %d, %v; want the 5 tokens", n, err)
	}
}
