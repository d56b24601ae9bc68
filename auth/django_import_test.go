package auth

import (
	"testing"
	"time"
)

// importingStore is a store with ImportRefreshTokens.
type importingStore interface {
	Store
	refreshImporter
}

func TestSQLiteImportRefreshTokens(t *testing.T) {
	testImportRefreshTokens(t, func(t *testing.T) importingStore { return openTestSQLite(t) })
}

func TestPostgresImportRefreshTokens(t *testing.T) {
	c := postgresCluster(t)
	testImportRefreshTokens(t, func(t *testing.T) importingStore { return openPostgresAt(t, c.NewDatabase(t)) })
}

// testImportRefreshTokens imports simplejwt's tokens into a store that
// already holds some: new ones are added, outstanding or blacklisted, each
// its own family; one held is blacklisted if the import says so, and none
// is made usable again; a second import changes nothing; a bad token makes
// the import write nothing.
func testImportRefreshTokens(t *testing.T, open func(t *testing.T) importingStore) {
	ctx := t.Context()
	s := open(t)
	exp := storeNow.Add(time.Hour)
	storeAdd(t, s, "held-outstanding", "held-outstanding")
	storeAdd(t, s, "held-consumed", "held-consumed")
	storeConsume(t, s, "held-consumed", ConsumeOK)
	storeAdd(t, s, "held-blacklisted", "held-blacklisted")
	if err := s.Blacklist(ctx, "held-blacklisted", storeNow); err != nil {
		t.Fatal(err)
	}
	bl := storeNow.Add(-time.Minute)
	tokens := []ImportedToken{
		{JTI: "new-outstanding", UserID: "1", CreatedAt: storeNow.Add(-time.Hour), ExpiresAt: exp},
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
	for jti, want := range map[string]ConsumeResult{
		"new-outstanding":  ConsumeOK,
		"new-blacklisted":  ConsumeRevoked,
		"held-outstanding": ConsumeRevoked,
		"held-consumed":    ConsumeReused,
		"held-blacklisted": ConsumeRevoked,
	} {
		storeState(t, s, jti, want)
	}
	rt := storeConsume(t, s, "new-outstanding", ConsumeOK)
	storeSameToken(t, "new-outstanding", rt, RefreshToken{JTI: "new-outstanding", Family: "new-outstanding", UserID: "1", ExpiresAt: exp})
	storeConsume(t, s, "new-blacklisted", ConsumeRevoked)

	// Again: nothing new, and new-outstanding, consumed since, stays so.
	added, blacklisted, err = s.ImportRefreshTokens(ctx, tokens)
	if err != nil || added != 0 || blacklisted != 0 {
		t.Errorf("the same import again: %d added, %d blacklisted, %v; want 0, 0", added, blacklisted, err)
	}
	storeState(t, s, "new-outstanding", ConsumeReused)

	// All or none.
	_, _, err = s.ImportRefreshTokens(ctx, []ImportedToken{
		{JTI: "fine", UserID: "1", ExpiresAt: exp, BlacklistedAt: bl},
		{JTI: "bad", UserID: "alice", ExpiresAt: exp},
	})
	if err == nil {
		t.Error("a token with user id alice: no error")
	}
	storeState(t, s, "fine", ConsumeUnknown)

	// FlushExpired drops imported tokens as any other.
	if n, err := s.FlushExpired(ctx, exp.Add(time.Second)); err != nil || n != 5 {
		t.Errorf("FlushExpired after they expired: %d, %v; want the 5 tokens", n, err)
	}
}
