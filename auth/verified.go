package auth

import (
	"sync"
	"time"
)

// verifiedMax bounds the entries of a verifiedCache; past it, expired
// entries go, then an arbitrary eighth of the rest.
const verifiedMax = 10_000

// verifiedCache remembers, per process, the access tokens Required has
// verified, keyed by their whole text, signature included. A client sends
// the same access token with every request of its 5 minutes; parsing it
// again (base64, JSON, the signature) is most of what Required costs
// (BenchmarkRequired). A hit is used only while the token has not expired
// (exp plus the leeway, as jwt verifies it): every other check Parse makes
// (signature, algorithm, type, iss, aud, iat not in the future) gives the
// same answer later as it did at the first request, so a hit answers as a
// fresh Parse would. Only tokens that verified are kept: a client cannot
// fill the cache with tokens of its own making. The user behind a token is
// still looked up on every request (protectedUser), so deactivation and
// password changes are not delayed by this cache.
type verifiedCache struct {
	leeway time.Duration
	mu     sync.RWMutex
	m      map[string]Claims
}

func newVerifiedCache(leeway time.Duration) *verifiedCache {
	return &verifiedCache{leeway: leeway, m: make(map[string]Claims)}
}

// get returns the claims of raw if it verified before and is not expired
// at now.
func (c *verifiedCache) get(raw string, now time.Time) (Claims, bool) {
	c.mu.RLock()
	claims, ok := c.m[raw]
	c.mu.RUnlock()
	return claims, ok && c.live(claims, now)
}

func (c *verifiedCache) live(claims Claims, now time.Time) bool {
	return now.Before(claims.ExpiresAt.Add(c.leeway))
}

func (c *verifiedCache) put(raw string, claims Claims, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= verifiedMax {
		for k, v := range c.m {
			if !c.live(v, now) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < verifiedMax*7/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[raw] = claims
}
