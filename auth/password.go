package auth

import (
	"container/list"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters of new hashes: OWASP's minimum (m = 19 MiB, t = 2,
// p = 1) with a 16-byte salt and a 32-byte key. A stored argon2id hash
// weaker than these on any count is reported for rehashing by
// CheckPassword.
const (
	ArgonMemoryKiB = 19456
	ArgonTime      = 2
	ArgonThreads   = 1
)

// MaxPasswordBytes is the longest password, in bytes, that HashPassword and
// CheckPassword accept. A longer one is refused with ErrPasswordTooLong
// before any hashing, so that a megabyte "password" costs nothing: the
// Argon2 cost is linear in the password's length before the memory-hard
// part, and a login endpoint is open to anyone.
const MaxPasswordBytes = 1024

// ErrPasswordTooLong is returned by HashPassword and CheckPassword for a
// password longer than MaxPasswordBytes.
var ErrPasswordTooLong = fmt.Errorf("auth: password longer than %d bytes", MaxPasswordBytes)

// errEmptyPassword refuses the empty password in both directions: no empty
// password is ever stored, and none is ever checked.
var errEmptyPassword = errors.New("auth: empty password")

const (
	argonSaltBytes = 16
	argonKeyBytes  = 32
)

// Bounds on what a stored hash may ask for. The hash comes from the
// database, which an attacker may have written to: without caps one row
// could make a single login allocate 4 TiB (m is KiB, uint32) or spin for
// hours. The caps are far above anything Remuda or Django writes (Django's
// argon2 defaults to m=102400, t=2, p=8; its pbkdf2_sha256 iteration count
// is in the hundreds of thousands, about a million in recent releases).
const (
	maxArgonMemoryKiB   = 1 << 20 // 1 GiB
	maxArgonTime        = 100
	maxArgonThreads     = 64
	minArgonSaltBytes   = 8 // RFC 9106 §3.1
	maxArgonSaltBytes   = 64
	minArgonKeyBytes    = 16 // argon2-cffi's early default hash length, in older Django hashes
	maxArgonKeyBytes    = 64
	maxPBKDF2Iterations = 10_000_000
	maxPBKDF2SaltBytes  = 256
	pbkdf2KeyBytes      = sha256.Size // Django's pbkdf2_sha256 keeps the digest size
)

// Password hashing is bounded in each process: every argon2id hash with
// the current parameters holds ArgonMemoryKiB (19 MiB) while it runs, for
// about 40 ms of one core, so unbounded concurrent logins would take a
// process's memory with them (24 at once took a worker from 24 MB to
// 473 MB). At most PasswordHashingSlots hashes run at once: one per P
// (GOMAXPROCS: a worker's share of the CPUs, one by default), at most 8.
// A hash runs on one core, so more at once would not finish sooner, only
// hold more memory; 8 caps the memory (152 MiB of hashes running) on a
// machine where one process has many cores. Go's collector lets the heap
// grow to twice what is live before it collects, so a process holds up to
// about three hashes' memory per slot: measured, a worker with one slot
// peaks at 80 MiB RSS (from 18 MiB idle) however many logins it gets at
// once. A stored hash that asks for more memory or
// lanes (Django's argon2 hashes: 100 MiB, 8 lanes) takes the slots its
// memory and lanes need, all of them at most; a pbkdf2_sha256 hash (CPU
// only) takes one. Further hashes wait their turn, first come first
// served: HashPassword and CheckPassword as long as it takes, a login at
// the obtain endpoint at most MaxPasswordWait, after which it is answered
// 503 with "Retry-After: 1" without its password checked. Whether the
// user exists or not, a login waits in the same queue for the same one
// slot, so the wait tells nothing about usernames.
const maxPasswordSlots = 8

// MaxPasswordWait is how long a login at the obtain endpoint waits for a
// free hashing slot (see PasswordHashingSlots) before it is answered 503
// with "Retry-After: 1": a person logging in tolerates a couple of
// seconds, and a queue longer than that, some 50 hashes per slot, means a
// burst the process cannot serve in time, which waiting clients would only
// make longer.
const MaxPasswordWait = 2 * time.Second

// passwordWait is MaxPasswordWait, shorter in tests.
var passwordWait = MaxPasswordWait

// PasswordHashingSlots is how many password hashes of the current
// parameters may run at once in this process: GOMAXPROCS, at most 8.
func PasswordHashingSlots() int { return int(hashing().size / ArgonMemoryKiB) }

// hashing is the process's bound on password hashing, in KiB of argon2
// memory: PasswordHashingSlots × ArgonMemoryKiB.
var hashing = sync.OnceValue(func() *hashGate {
	return &hashGate{size: int64(min(max(runtime.GOMAXPROCS(0), 1), maxPasswordSlots)) * ArgonMemoryKiB}
})

// errHashingBusy is a login's error when no hashing slot came free within
// MaxPasswordWait.
var errHashingBusy = errors.New("auth: every password hashing slot stayed busy")

// hashGate is a weighted semaphore with a FIFO queue (as
// golang.org/x/sync/semaphore's): a hash takes its weight, in KiB, and
// waits while the weights taken would pass size, or while others wait
// before it.
type hashGate struct {
	size int64

	mu      sync.Mutex
	used    int64
	waiters list.List // of *hashWaiter, first come first
}

type hashWaiter struct {
	n     int64
	ready chan struct{} // closed when the weight is taken for it
}

// acquire takes n (at most size) once it is free, or returns
// errHashingBusy when ctx is done first.
func (g *hashGate) acquire(ctx context.Context, n int64) error {
	n = min(n, g.size)
	g.mu.Lock()
	if g.waiters.Len() == 0 && g.used+n <= g.size {
		g.used += n
		g.mu.Unlock()
		return nil
	}
	w := &hashWaiter{n: n, ready: make(chan struct{})}
	e := g.waiters.PushBack(w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.ready: // taken for it meanwhile: use it
		return nil
	default:
	}
	front := g.waiters.Front() == e
	g.waiters.Remove(e)
	if front {
		g.grant() // those behind it may fit
	}
	return errHashingBusy
}

// release gives back n (as given to acquire).
func (g *hashGate) release(n int64) {
	n = min(n, g.size)
	g.mu.Lock()
	g.used -= n
	g.grant()
	g.mu.Unlock()
}

// grant takes the weights of the waiters at the front of the queue for
// as long as they fit. g.mu is held.
func (g *hashGate) grant() {
	for e := g.waiters.Front(); e != nil; e = g.waiters.Front() {
		w := e.Value.(*hashWaiter)
		if g.used+w.n > g.size {
			return
		}
		g.used += w.n
		g.waiters.Remove(e)
		close(w.ready)
	}
}

// weight is what hashing with h's parameters takes of the hashing bound:
// its argon2 memory, or one slot per lane if that is more, at least one
// slot (pbkdf2_sha256 uses no memory but a core).
func (h passwordHash) weight() int64 {
	if h.kind != hashArgon2id {
		return ArgonMemoryKiB
	}
	return max(int64(h.memory), int64(h.threads)*ArgonMemoryKiB)
}

// deriveWithin hashes password with h's parameters into keyLen bytes within the
// hashing bound, waiting for its turn until ctx is done (errHashingBusy).
func (h passwordHash) deriveWithin(ctx context.Context, password string, keyLen int) ([]byte, error) {
	g, n := hashing(), h.weight()
	if err := g.acquire(ctx, n); err != nil {
		return nil, err
	}
	defer g.release(n)
	return h.derive(password, keyLen)
}

// HashPassword returns the PHC string of an argon2id hash of password with
// a fresh random salt and the Argon* parameters:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// where salt (16 bytes) and key (32 bytes) are unpadded standard base64.
// The password is hashed as given, byte for byte: never trimmed, never
// Unicode-normalised. The empty password is refused, and so is one longer
// than MaxPasswordBytes (ErrPasswordTooLong). It waits for a free hashing
// slot as long as it takes (see PasswordHashingSlots).
func HashPassword(password string) (string, error) {
	return hashPassword(context.Background(), password)
}

// hashPassword is HashPassword, waiting for a hashing slot until ctx is
// done (errHashingBusy).
func hashPassword(ctx context.Context, password string) (string, error) {
	if err := checkPasswordLength(password); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltBytes)
	rand.Read(salt) // never returns an error (Go 1.24+): it crashes the program instead
	h := passwordHash{
		kind:    hashArgon2id,
		memory:  ArgonMemoryKiB,
		time:    ArgonTime,
		threads: ArgonThreads,
		salt:    salt,
	}
	key, err := h.deriveWithin(ctx, password, argonKeyBytes)
	if err != nil {
		return "", err
	}
	h.key = key
	return h.phc(), nil
}

// CheckPassword reports whether password matches the stored hash encoded,
// and, if it does, whether encoded should be replaced by
// HashPassword(password): rehash is true for Django hashes and for argon2id
// hashes weaker than the Argon* constants (less memory, fewer passes, a
// shorter salt or key). rehash is false whenever ok is false. The
// digests are compared in constant time. It waits for free hashing slots
// as long as it takes (see PasswordHashingSlots).
//
// Accepted formats:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>   (HashPassword's)
//	argon2$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>   (Django's Argon2PasswordHasher)
//	pbkdf2_sha256$<iterations>$<salt>$<key>   (Django's default hasher)
//
// with salt and key in unpadded standard base64 for argon2id, and for
// pbkdf2_sha256 the salt as text and the 32-byte key in padded standard
// base64. Parameters beyond sane bounds (over 1 GiB of memory, 100 passes,
// 64 lanes or 10,000,000 iterations, salts and keys of odd sizes) are
// refused before any hashing, so a tampered row cannot exhaust the
// server. Anything else — the empty string, Django's "!" unusable
// passwords, argon2i/argon2d, other Django hashers, non-canonical base64 —
// is an error that names the problem but never quotes the hash.
//
// A password longer than MaxPasswordBytes yields (false, false,
// ErrPasswordTooLong) and the empty password an error, both without
// hashing.
func CheckPassword(password, encoded string) (ok, rehash bool, err error) {
	return checkPassword(context.Background(), password, encoded, false)
}

// checkPassword is CheckPassword, waiting for hashing slots until ctx is
// done (errHashingBusy). With spend, a stored hash that cannot be used
// costs the time of one check against dummyHash before its error comes
// back, as a wrong password would: a login for a user with an unusable
// password (Django's "!") is not told apart by its time either.
func checkPassword(ctx context.Context, password, encoded string, spend bool) (ok, rehash bool, err error) {
	if err := checkPasswordLength(password); err != nil {
		return false, false, err
	}
	h, err := parsePasswordHash(encoded)
	if err != nil {
		if spend {
			if _, _, busy := checkPassword(ctx, password, dummyHash(), false); errors.Is(busy, errHashingBusy) {
				return false, false, busy
			}
		}
		return false, false, err
	}
	got, err := h.deriveWithin(ctx, password, len(h.key))
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(got, h.key) != 1 {
		return false, false, nil
	}
	return true, h.outdated(), nil
}

// dummyHash is an argon2id hash with the current parameters that no
// password matches (its key is random bytes, not the output of a hash):
// checking against it costs exactly one CheckPassword, and building it
// costs no hashing, so even the first dummyCheck is not slower than the
// others.
var dummyHash = sync.OnceValue(func() string {
	h := passwordHash{
		kind:    hashArgon2id,
		memory:  ArgonMemoryKiB,
		time:    ArgonTime,
		threads: ArgonThreads,
		salt:    make([]byte, argonSaltBytes),
		key:     make([]byte, argonKeyBytes),
	}
	rand.Read(h.salt)
	rand.Read(h.key)
	return h.phc()
})

// dummyCheck spends the time of one CheckPassword of password against a
// well-formed argon2id hash with the current parameters, so that a login
// for an unknown user costs what a wrong password costs (Django
// ModelBackend's trick, ticket #20760). It refuses what CheckPassword
// refuses (too long, empty) just as quickly, so those cost the same too,
// and it waits for a hashing slot as a CheckPassword does.
func dummyCheck(password string) {
	_, _, _ = CheckPassword(password, dummyHash())
}

// dummyCheckWithin is dummyCheck waiting for a hashing slot until ctx is
// done: it returns errHashingBusy if it was, nil otherwise.
func dummyCheckWithin(ctx context.Context, password string) error {
	_, _, err := checkPassword(ctx, password, dummyHash(), false)
	if errors.Is(err, errHashingBusy) {
		return err
	}
	return nil
}

func checkPasswordLength(password string) error {
	switch {
	case len(password) > MaxPasswordBytes:
		return ErrPasswordTooLong
	case password == "":
		return errEmptyPassword
	}
	return nil
}

type hashKind int

const (
	hashArgon2id hashKind = iota + 1
	hashPBKDF2SHA256
)

// passwordHash is a stored hash taken apart by parsePasswordHash, its
// parameters within the caps above.
type passwordHash struct {
	kind   hashKind
	django bool // a Django hash: always rehashed

	memory  uint32 // argon2id, KiB
	time    uint32 // argon2id passes
	threads uint8  // argon2id lanes

	iterations int // pbkdf2_sha256

	salt, key []byte
}

// derive hashes password with h's parameters into keyLen bytes. Only
// crypto/pbkdf2 can fail, and only in FIPS 140-only mode (a salt under 16
// bytes, as in Django hashes before 3.2).
func (h passwordHash) derive(password string, keyLen int) ([]byte, error) {
	switch h.kind {
	case hashArgon2id:
		return argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(keyLen)), nil
	case hashPBKDF2SHA256:
		key, err := pbkdf2.Key(sha256.New, password, h.salt, h.iterations, keyLen)
		if err != nil {
			return nil, fmt.Errorf("auth: Django pbkdf2_sha256 hash: %w", err)
		}
		return key, nil
	}
	panic("auth: unknown password hash kind")
}

// outdated reports whether a hash that matched should be replaced.
func (h passwordHash) outdated() bool {
	return h.django || h.kind != hashArgon2id ||
		h.memory < ArgonMemoryKiB || h.time < ArgonTime || h.threads < ArgonThreads ||
		len(h.salt) < argonSaltBytes || len(h.key) < argonKeyBytes
}

// phc formats an argon2id hash as a PHC string.
func (h passwordHash) phc() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, h.memory, h.time, h.threads, b64.EncodeToString(h.salt), b64.EncodeToString(h.key))
}

// hashError describes what is wrong with a stored hash of the given
// format; it never quotes the hash.
func hashError(format, problem string) error {
	return fmt.Errorf("auth: %s hash: %s", format, problem)
}

// parsePasswordHash takes a stored hash apart and checks its parameters
// against the caps. It does no hashing.
func parsePasswordHash(encoded string) (passwordHash, error) {
	switch {
	case encoded == "":
		return passwordHash{}, errors.New("auth: empty password hash")
	case strings.HasPrefix(encoded, "!"):
		return passwordHash{}, errors.New(`auth: unusable password (Django "!" hash)`)
	case strings.HasPrefix(encoded, "$argon2id$"):
		return parseArgon2id(encoded, "argon2id")
	case strings.HasPrefix(encoded, "argon2$"):
		rest := encoded[len("argon2"):]
		if !strings.HasPrefix(rest, "$argon2id$") {
			return passwordHash{}, hashError("Django argon2", "variant other than argon2id")
		}
		h, err := parseArgon2id(rest, "Django argon2")
		h.django = true
		return h, err
	case strings.HasPrefix(encoded, "pbkdf2_sha256$"):
		return parseDjangoPBKDF2(encoded)
	case strings.HasPrefix(encoded, "$argon2"):
		return passwordHash{}, errors.New("auth: unsupported argon2 variant (only argon2id)")
	}
	return passwordHash{}, errors.New("auth: unknown password hash format")
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$salt$key", fields in
// that order, salt and key in canonical unpadded standard base64.
func parseArgon2id(s, format string) (passwordHash, error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return passwordHash{}, hashError(format, "want 5 fields: $argon2id$v=19$m=,t=,p=$salt$key")
	}
	if f[2] != "v=19" {
		return passwordHash{}, hashError(format, "version other than v=19")
	}
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return passwordHash{}, hashError(format, "parameters are not m=,t=,p=")
	}
	var n [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return passwordHash{}, hashError(format, "parameters are not m=,t=,p=")
		}
		var err error
		if n[i], err = strconv.ParseUint(v, 10, 32); err != nil {
			return passwordHash{}, hashError(format, "parameter "+name+" is not a number below 2^32")
		}
	}
	m, t, p := n[0], n[1], n[2]
	switch {
	case p < 1 || p > maxArgonThreads:
		return passwordHash{}, hashError(format, fmt.Sprintf("lanes p out of range [1, %d]", maxArgonThreads))
	case m < 8*p || m > maxArgonMemoryKiB:
		return passwordHash{}, hashError(format, fmt.Sprintf("memory m out of range [8p, %d] KiB", maxArgonMemoryKiB))
	case t < 1 || t > maxArgonTime:
		return passwordHash{}, hashError(format, fmt.Sprintf("passes t out of range [1, %d]", maxArgonTime))
	}
	salt, ok := decodeCanonical(base64.RawStdEncoding, f[4], maxArgonSaltBytes)
	if !ok || len(salt) < minArgonSaltBytes {
		return passwordHash{}, hashError(format, fmt.Sprintf("salt is not %d to %d bytes of unpadded base64", minArgonSaltBytes, maxArgonSaltBytes))
	}
	key, ok := decodeCanonical(base64.RawStdEncoding, f[5], maxArgonKeyBytes)
	if !ok || len(key) < minArgonKeyBytes {
		return passwordHash{}, hashError(format, fmt.Sprintf("key is not %d to %d bytes of unpadded base64", minArgonKeyBytes, maxArgonKeyBytes))
	}
	return passwordHash{
		kind:    hashArgon2id,
		memory:  uint32(m),
		time:    uint32(t),
		threads: uint8(p),
		salt:    salt,
		key:     key,
	}, nil
}

// parseDjangoPBKDF2 parses "pbkdf2_sha256$<iterations>$<salt>$<key>" as
// Django's PBKDF2PasswordHasher writes it: the salt is used as its UTF-8
// bytes, the key is padded standard base64 of 32 bytes.
func parseDjangoPBKDF2(s string) (passwordHash, error) {
	const format = "Django pbkdf2_sha256"
	f := strings.Split(s, "$")
	if len(f) != 4 {
		return passwordHash{}, hashError(format, "want 4 fields: pbkdf2_sha256$iterations$salt$key")
	}
	iter, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
		return passwordHash{}, hashError(format, fmt.Sprintf("iterations not a number in [1, %d]", maxPBKDF2Iterations))
	}
	if len(f[2]) < 1 || len(f[2]) > maxPBKDF2SaltBytes {
		return passwordHash{}, hashError(format, fmt.Sprintf("salt is not 1 to %d bytes", maxPBKDF2SaltBytes))
	}
	key, ok := decodeCanonical(base64.StdEncoding, f[3], pbkdf2KeyBytes)
	if !ok || len(key) != pbkdf2KeyBytes {
		return passwordHash{}, hashError(format, fmt.Sprintf("key is not %d bytes of padded base64", pbkdf2KeyBytes))
	}
	return passwordHash{
		kind:       hashPBKDF2SHA256,
		django:     true,
		iterations: int(iter),
		salt:       []byte(f[2]),
		key:        key,
	}, nil
}

// decodeCanonical decodes s if it is the one encoding of at most maxBytes bytes
// (encoding/base64 alone would skip newlines and, unless Strict, accept
// stray trailing bits).
func decodeCanonical(enc *base64.Encoding, s string, maxBytes int) ([]byte, bool) {
	if len(s) > enc.EncodedLen(maxBytes) {
		return nil, false
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil || enc.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}
