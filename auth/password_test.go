package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// Published vectors.
const (
	// phc-winner-argon2 (the reference implementation), src/test.c: "password",
	// salt "somesalt", argon2id v=19, t=2, p=1, 32-byte tag, at m=256 and m=65536.
	refArgon2idM256   = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	refArgon2idM65536 = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	// Django's tests/auth_tests/test_hashers.py (test_pbkdf2, Django 1.5–1.6,
	// when the default was 10000 iterations): make_password("lètmein", "seasalt", "pbkdf2_sha256").
	refDjangoPBKDF2 = "pbkdf2_sha256$10000$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY="
)

// pwPBKDF2 is PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) written out without
// crypto/pbkdf2, to build expected Django hashes independently of the code
// under test.
func pwPBKDF2(password, salt []byte, iterations, keyLen int) []byte {
	prf := hmac.New(sha256.New, password)
	var dk []byte
	for block := uint32(1); len(dk) < keyLen; block++ {
		prf.Reset()
		prf.Write(salt)
		prf.Write(binary.BigEndian.AppendUint32(nil, block))
		u := prf.Sum(nil)
		t := slices.Clone(u)
		for range iterations - 1 {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for i := range t {
				t[i] ^= u[i]
			}
		}
		dk = append(dk, t...)
	}
	return dk[:keyLen]
}

// pwDjangoPBKDF2 formats a hash as Django's PBKDF2PasswordHasher.encode does.
func pwDjangoPBKDF2(password, salt string, iterations int) string {
	key := pwPBKDF2([]byte(password), []byte(salt), iterations, 32)
	return fmt.Sprintf("pbkdf2_sha256$%d$%s$%s", iterations, salt, base64.StdEncoding.EncodeToString(key))
}

// pwArgon2id formats an argon2id PHC string with its own Sprintf, not the
// code under test's.
func pwArgon2id(password string, salt []byte, m, t uint32, p uint8, keyLen uint32) string {
	key := argon2.IDKey([]byte(password), salt, t, m, p, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func TestPasswordPBKDF2HelperRFC7914(t *testing.T) {
	// RFC 7914 §11, the PBKDF2-HMAC-SHA256 test vectors.
	tests := []struct {
		name, password, salt string
		iterations, keyLen   int
		want                 string
	}{
		{"c=1", "passwd", "salt", 1, 64,
			"55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"},
		{"c=80000", "Password", "NaCl", 80000, 64,
			"4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hex.EncodeToString(pwPBKDF2([]byte(tt.password), []byte(tt.salt), tt.iterations, tt.keyLen))
			if got != tt.want {
				t.Errorf("pwPBKDF2(%q, %q, %d, %d) = %s, want %s", tt.password, tt.salt, tt.iterations, tt.keyLen, got, tt.want)
			}
		})
	}
}

var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashPasswordRoundTrip(t *testing.T) {
	tests := []struct{ name, password string }{
		{"ascii", "correct horse battery staple"},
		{"one byte", "x"},
		{"spaces", "  two leading, two trailing  "},
		{"unicode", "pässwörd 密码 🐎"},
		{"nul byte", "pass\x00word"},
		{"invalid utf-8", "\xff\xfe\xfd"},
		{"exactly MaxPasswordBytes", strings.Repeat("a", MaxPasswordBytes)},
		{"MaxPasswordBytes of multi-byte runes", strings.Repeat("é", MaxPasswordBytes/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encoded, err := HashPassword(tt.password)
			if err != nil {
				t.Fatalf("HashPassword(%.20q): got error %v, want nil", tt.password, err)
			}
			if !phcPattern.MatchString(encoded) {
				t.Errorf("HashPassword(%.20q) = %q, want a match for %s", tt.password, encoded, phcPattern)
			}
			ok, rehash, err := CheckPassword(tt.password, encoded)
			if !ok || rehash || err != nil {
				t.Errorf("CheckPassword(right password) = %v, %v, %v; want true, false, nil", ok, rehash, err)
			}
			wrong := []byte(tt.password)
			wrong[len(wrong)-1] ^= 1
			ok, rehash, err = CheckPassword(string(wrong), encoded)
			if ok || rehash || err != nil {
				t.Errorf("CheckPassword(wrong password) = %v, %v, %v; want false, false, nil", ok, rehash, err)
			}
		})
	}
}

func TestHashPasswordSaltDiffers(t *testing.T) {
	const password = "same password"
	a, errA := HashPassword(password)
	b, errB := HashPassword(password)
	if errA != nil || errB != nil {
		t.Fatalf("HashPassword: got errors %v, %v; want nil", errA, errB)
	}
	saltOf := func(s string) string { return strings.Split(s, "$")[4] }
	if saltOf(a) == saltOf(b) {
		t.Errorf("two hashes of %q: got the same salt %s, want different salts", password, saltOf(a))
	}
	if a == b {
		t.Errorf("two hashes of %q: got %q twice, want different hashes", password, a)
	}
}

func TestPasswordNotTrimmedOrNormalised(t *testing.T) {
	tests := []struct{ name, stored, tried string }{
		{"leading space", "pw", " pw"},
		{"trailing space", "pw", "pw "},
		{"stored with spaces", " pw ", "pw"},
		{"trailing newline", "pw", "pw\n"},
		{"trailing NUL", "pw", "pw\x00"},
		{"case", "pw", "PW"},
		{"NFC stored, NFD tried", "caf\u00e9", "cafe\u0301"},
		{"NFD stored, NFC tried", "cafe\u0301", "caf\u00e9"},
		{"fullwidth vs NFKC", "\uff21\uff22", "AB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encoded, err := HashPassword(tt.stored)
			if err != nil {
				t.Fatalf("HashPassword(%q): got error %v, want nil", tt.stored, err)
			}
			if ok, _, err := CheckPassword(tt.stored, encoded); !ok || err != nil {
				t.Errorf("CheckPassword(%q) against its own hash = %v, %v; want true, nil", tt.stored, ok, err)
			}
			if ok, _, err := CheckPassword(tt.tried, encoded); ok || err != nil {
				t.Errorf("CheckPassword(%q) against a hash of %q = %v, %v; want false, nil", tt.tried, tt.stored, ok, err)
			}
		})
	}
}

func TestEmptyPasswordRefused(t *testing.T) {
	if got, err := HashPassword(""); err == nil {
		t.Errorf("HashPassword(\"\") = %q, nil; want an error", got)
	}
	ok, rehash, err := CheckPassword("", refArgon2idM256)
	if ok || rehash || err == nil {
		t.Errorf("CheckPassword(\"\", valid hash) = %v, %v, %v; want false, false, an error", ok, rehash, err)
	}
}

func TestCheckPasswordDjangoPBKDF2(t *testing.T) {
	if got := pwDjangoPBKDF2("lètmein", "seasalt", 10000); got != refDjangoPBKDF2 {
		t.Fatalf("pwDjangoPBKDF2(lètmein, seasalt, 10000) = %s, want Django's %s", got, refDjangoPBKDF2)
	}
	tests := []struct{ name, password, wrong, encoded string }{
		{"Django test suite vector", "lètmein", "lètmeinz", refDjangoPBKDF2},
		{"Django 3.2 iterations", "lètmein", "letmein", pwDjangoPBKDF2("lètmein", "seasalt", 260000)},
		{"22-character salt, spaces kept", " pass word ", "pass word", pwDjangoPBKDF2(" pass word ", "Kt9cHq2LmR4xVb7nWz1sJe", 1000)},
		{"one iteration", "pw", "pW", pwDjangoPBKDF2("pw", "s", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := CheckPassword(tt.password, tt.encoded)
			if !ok || !rehash || err != nil {
				t.Errorf("CheckPassword(%q, %s) = %v, %v, %v; want true, true, nil", tt.password, tt.encoded, ok, rehash, err)
			}
			ok, rehash, err = CheckPassword(tt.wrong, tt.encoded)
			if ok || rehash || err != nil {
				t.Errorf("CheckPassword(%q, %s) = %v, %v, %v; want false, false, nil", tt.wrong, tt.encoded, ok, rehash, err)
			}
		})
	}
}

func TestCheckPasswordArgon2id(t *testing.T) {
	salt16 := []byte("0123456789abcdef")
	current, err := HashPassword("password")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, encoded string
		wantRehash    bool
	}{
		{"current parameters", current, false},
		{"current parameters, independently formatted", pwArgon2id("password", salt16, ArgonMemoryKiB, ArgonTime, ArgonThreads, 32), false},
		{"stronger m, t, p", pwArgon2id("password", salt16, 32768, 3, 2, 32), false},
		{"longer salt and key", pwArgon2id("password", []byte("0123456789abcdef0123456789abcdef"), ArgonMemoryKiB, ArgonTime, ArgonThreads, 64), false},
		{"weaker m=4096,t=1,p=1", pwArgon2id("password", salt16, 4096, 1, 1, 32), true},
		{"weaker t only", pwArgon2id("password", salt16, ArgonMemoryKiB, 1, ArgonThreads, 32), true},
		{"weaker m only, more lanes", pwArgon2id("password", salt16, 16384, 2, 4, 32), true},
		{"16-byte key", pwArgon2id("password", salt16, ArgonMemoryKiB, ArgonTime, ArgonThreads, 16), true},
		{"8-byte salt", pwArgon2id("password", []byte("somesalt"), ArgonMemoryKiB, ArgonTime, ArgonThreads, 32), true},
		{"reference vector m=256", refArgon2idM256, true},
		{"reference vector m=65536", refArgon2idM65536, true}, // 8-byte salt
		{"Django argon2 format", "argon2" + refArgon2idM256, true},
		{"Django argon2 format, current parameters", "argon2" + current, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := CheckPassword("password", tt.encoded)
			if !ok || rehash != tt.wantRehash || err != nil {
				t.Errorf("CheckPassword(password, %s) = %v, %v, %v; want true, %v, nil", tt.encoded, ok, rehash, err, tt.wantRehash)
			}
			ok, rehash, err = CheckPassword("passworD", tt.encoded)
			if ok || rehash || err != nil {
				t.Errorf("CheckPassword(passworD, %s) = %v, %v, %v; want false, false, nil", tt.encoded, ok, rehash, err)
			}
		})
	}
}

// pwHashFields returns the parts of encoded an error message must not
// quote: every $-field of six characters or more but the format names.
func pwHashFields(encoded string) []string {
	var fields []string
	for f := range strings.SplitSeq(encoded, "$") {
		switch f {
		case "argon2", "argon2id", "argon2i", "argon2d", "pbkdf2_sha256", "pbkdf2_sha1", "bcrypt_sha256":
			continue
		}
		if len(f) >= 6 {
			fields = append(fields, f)
		}
	}
	return fields
}

func TestCheckPasswordMalformed(t *testing.T) {
	const (
		salt   = "c29tZXNhbHQ"                                 // "somesalt"
		key    = "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4" // refArgon2idM256's
		params = "m=256,t=2,p=1"
		djKey  = "CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY="
	)
	argon := func(version, params, salt, key string) string {
		return "$argon2id$" + version + "$" + params + "$" + salt + "$" + key
	}
	tests := []struct{ name, encoded string }{
		{"empty", ""},
		{"Django unusable password", "!Xq3wZ9pL2mN8vB4cT6yR1sD5fG7hJ0kA2eU9iO3p"},
		{"bare !", "!"},
		{"plaintext", "hunter2hunter2"},
		{"uppercase algorithm", "$ARGON2ID$v=19$" + params + "$" + salt + "$" + key},
		{"bcrypt", "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},

		{"truncated: algorithm only", "$argon2id"},
		{"truncated: algorithm$", "$argon2id$"},
		{"truncated: version", "$argon2id$v=19"},
		{"truncated: in params", "$argon2id$v=19$m=256,t=2"},
		{"truncated: no salt", "$argon2id$v=19$" + params},
		{"truncated: no key", "$argon2id$v=19$" + params + "$" + salt},
		{"truncated: empty key", argon("v=19", params, salt, "")},
		{"truncated: key under 16 bytes", argon("v=19", params, salt, key[:20])},
		{"extra field", argon("v=19", params, salt, key) + "$x"},
		{"leading space", " " + argon("v=19", params, salt, key)},

		{"bad base64 salt", argon("v=19", params, "c29t*XNhbHQ", key)},
		{"bad base64 key", argon("v=19", params, salt, "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/!")},
		{"padded salt", argon("v=19", params, salt+"=", key)},
		{"url-safe key", argon("v=19", params, salt, strings.ReplaceAll(key, "/", "_"))},
		{"newline in key", argon("v=19", params, salt, key[:20]+"\n"+key[20:])},
		{"non-canonical trailing bits in salt", argon("v=19", params, "c29tZXNhbHR", key)},
		{"salt under 8 bytes", argon("v=19", params, "c29tZQ", key)},
		{"salt over 64 bytes", argon("v=19", params, strings.Repeat("A", 88), key)},
		{"key over 64 bytes", argon("v=19", params, salt, strings.Repeat("A", 88))},

		{"m=4000000000", argon("v=19", "m=4000000000,t=2,p=1", salt, key)},
		{"m=2^32", argon("v=19", "m=4294967296,t=2,p=1", salt, key)},
		{"m just over 1 GiB", argon("v=19", "m=1048577,t=2,p=1", salt, key)},
		{"m=99999999999999999999", argon("v=19", "m=99999999999999999999,t=2,p=1", salt, key)},
		{"m under 8p", argon("v=19", "m=31,t=2,p=4", salt, key)},
		{"m=0", argon("v=19", "m=0,t=2,p=1", salt, key)},
		{"m=-1", argon("v=19", "m=-1,t=2,p=1", salt, key)},
		{"m=+256", argon("v=19", "m=+256,t=2,p=1", salt, key)},
		{"m=0x100", argon("v=19", "m=0x100,t=2,p=1", salt, key)},
		{"m empty", argon("v=19", "m=,t=2,p=1", salt, key)},
		{"t=0", argon("v=19", "m=256,t=0,p=1", salt, key)},
		{"t=101", argon("v=19", "m=256,t=101,p=1", salt, key)},
		{"p=0", argon("v=19", "m=256,t=2,p=0", salt, key)},
		{"p=65", argon("v=19", "m=1024,t=2,p=65", salt, key)},
		{"p=256 (uint8 wrap)", argon("v=19", "m=2048,t=2,p=256", salt, key)},
		{"params reordered", argon("v=19", "t=2,m=256,p=1", salt, key)},
		{"params with spaces", argon("v=19", "m=256, t=2, p=1", salt, key)},
		{"params missing p", argon("v=19", "m=256,t=2", salt, key)},
		{"params with keyid", argon("v=19", "m=256,t=2,p=1,keyid=x", salt, key)},
		{"version 16", argon("v=16", params, salt, key)},
		{"no version", "$argon2id$" + params + "$" + salt + "$" + key},
		{"argon2i", "$argon2i$v=19$" + params + "$" + salt + "$" + key},
		{"argon2d", "$argon2d$v=19$" + params + "$" + salt + "$" + key},
		{"Django argon2i", "argon2$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8"},
		{"Django argon2 m=4000000000", "argon2" + argon("v=19", "m=4000000000,t=2,p=1", salt, key)},
		{"Django argon2 without separator", "argon2" + argon("v=19", params, salt, key)[1:]},

		{"pbkdf2 non-numeric iterations", "pbkdf2_sha256$abc$seasalt$" + djKey},
		{"pbkdf2 iterations 0", "pbkdf2_sha256$0$seasalt$" + djKey},
		{"pbkdf2 iterations -1", "pbkdf2_sha256$-1$seasalt$" + djKey},
		{"pbkdf2 iterations over cap", "pbkdf2_sha256$10000001$seasalt$" + djKey},
		{"pbkdf2 iterations 2^64", "pbkdf2_sha256$18446744073709551616$seasalt$" + djKey},
		{"pbkdf2 iterations with space", "pbkdf2_sha256$ 260000$seasalt$" + djKey},
		{"pbkdf2 empty salt", "pbkdf2_sha256$10000$$" + djKey},
		{"pbkdf2 salt over 256 bytes", "pbkdf2_sha256$10000$" + strings.Repeat("s", 257) + "$" + djKey},
		{"pbkdf2 missing key", "pbkdf2_sha256$10000$seasalt"},
		{"pbkdf2 empty key", "pbkdf2_sha256$10000$seasalt$"},
		{"pbkdf2 unpadded key", "pbkdf2_sha256$10000$seasalt$" + strings.TrimSuffix(djKey, "=")},
		{"pbkdf2 16-byte key", "pbkdf2_sha256$10000$seasalt$CWWFdHOWwPnki7HvkcqN9g=="},
		{"pbkdf2 bad base64 key", "pbkdf2_sha256$10000$seasalt$CWWF*HOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY="},
		{"pbkdf2 extra field", refDjangoPBKDF2 + "$x"},
		{"pbkdf2 only algorithm", "pbkdf2_sha256$"},
		{"pbkdf2_sha1", "pbkdf2_sha1$10000$seasalt$ZmFrZWZha2VmYWtlZmFrZWZha2U="},
		{"Django bcrypt_sha256", "bcrypt_sha256$$2b$12$LZSJchsWG/DrBy1erNs4eeYo6tZNlLFQmONdxN9HPesa1EyXVcTXK"},
		{"Django md5", "md5$seasalt$f5531bef9f3687d0ccf0f617f0e25573"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := CheckPassword("password", tt.encoded)
			if ok || rehash || err == nil {
				t.Fatalf("CheckPassword(password, %q) = %v, %v, %v; want false, false, an error", tt.encoded, ok, rehash, err)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("CheckPassword(password, %q): got error %q, want the \"auth: \" prefix", tt.encoded, err)
			}
			for _, f := range pwHashFields(tt.encoded) {
				if strings.Contains(err.Error(), f) {
					t.Errorf("CheckPassword(password, %q): got error %q quoting %q, want no part of the hash", tt.encoded, err, f)
				}
			}
		})
	}
}

func TestPasswordTooLongRefusedQuickly(t *testing.T) {
	current, err := HashPassword("password")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 50 * time.Millisecond // a bound on correctness, not a benchmark
	for _, size := range []int{MaxPasswordBytes + 1, 4096, 1 << 20} {
		password := strings.Repeat("p", size)
		tests := []struct {
			name string
			call func() error
		}{
			{"HashPassword", func() error {
				_, err := HashPassword(password)
				return err
			}},
			{"CheckPassword argon2id", func() error {
				ok, rehash, err := CheckPassword(password, current)
				if ok || rehash {
					return fmt.Errorf("got ok %v, rehash %v, error %v", ok, rehash, err)
				}
				return err
			}},
			{"CheckPassword pbkdf2_sha256", func() error {
				ok, rehash, err := CheckPassword(password, refDjangoPBKDF2)
				if ok || rehash {
					return fmt.Errorf("got ok %v, rehash %v, error %v", ok, rehash, err)
				}
				return err
			}},
			{"CheckPassword malformed hash", func() error {
				_, _, err := CheckPassword(password, "!unusable")
				return err
			}},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s, %d bytes", tt.name, size), func(t *testing.T) {
				start := time.Now()
				err := tt.call()
				elapsed := time.Since(start)
				if !errors.Is(err, ErrPasswordTooLong) {
					t.Errorf("%s(%d-byte password): got error %v, want ErrPasswordTooLong", tt.name, size, err)
				}
				if elapsed > limit {
					t.Errorf("%s(%d-byte password): took %v, want under %v (no hashing)", tt.name, size, elapsed, limit)
				}
			})
		}
		t.Run(fmt.Sprintf("dummyCheck, %d bytes", size), func(t *testing.T) {
			start := time.Now()
			dummyCheck(password)
			if elapsed := time.Since(start); elapsed > limit {
				t.Errorf("dummyCheck(%d-byte password): took %v, want under %v, as CheckPassword", size, elapsed, limit)
			}
		})
	}
}

func TestPasswordDummyHash(t *testing.T) {
	a, b := dummyHash(), dummyHash()
	if a != b {
		t.Errorf("dummyHash(): got %q then %q, want one value", a, b)
	}
	if !phcPattern.MatchString(a) {
		t.Errorf("dummyHash() = %q, want a match for %s", a, phcPattern)
	}
	h, err := parsePasswordHash(a)
	if err != nil {
		t.Fatalf("parsePasswordHash(dummyHash()): got error %v, want nil", err)
	}
	if h.outdated() {
		t.Errorf("dummyHash() = %q: got outdated, want the current parameters", a)
	}
}

func pwMedian(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

func TestDummyCheckCostsAWrongPassword(t *testing.T) {
	stored, err := HashPassword("the real password")
	if err != nil {
		t.Fatal(err)
	}
	dummyCheck("warm-up") // builds dummyHash
	const runs = 5
	var dummy, wrong []time.Duration
	for range runs { // interleaved, so that drift in machine load hits both alike
		start := time.Now()
		dummyCheck("a wrong password")
		dummy = append(dummy, time.Since(start))

		start = time.Now()
		ok, _, err := CheckPassword("a wrong password", stored)
		wrong = append(wrong, time.Since(start))
		if ok || err != nil {
			t.Fatalf("CheckPassword(wrong password) = %v, %v; want false, nil", ok, err)
		}
	}
	md, mw := pwMedian(dummy), pwMedian(wrong)
	t.Logf("median of %d: dummyCheck %v, CheckPassword with a wrong password %v", runs, md, mw)
	// A loose bound on correctness: the same work, not the same nanoseconds.
	if ratio := float64(md) / float64(mw); ratio < 0.5 || ratio > 2 {
		t.Errorf("dummyCheck / CheckPassword(wrong password): got median ratio %.2f (%v / %v), want within [0.5, 2]", ratio, md, mw)
	}
}

// Fuzzing runs argon2 only for cheap parameters; the caps themselves are
// checked on every input that parses.
const (
	fuzzMaxArgonMemoryKiB  = 65536
	fuzzMaxArgonTime       = 4
	fuzzMaxPBKDF2Iteration = 20000
)

func FuzzCheckPassword(f *testing.F) {
	f.Add("password", refArgon2idM256)
	f.Add("password", "argon2"+refArgon2idM256)
	f.Add("lètmein", refDjangoPBKDF2)
	f.Add("password", "$argon2id$v=19$m=4000000000,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("password", "pbkdf2_sha256$abc$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY=")
	f.Add("", "!")
	f.Fuzz(func(t *testing.T, password, encoded string) {
		h, perr := parsePasswordHash(encoded)
		if perr == nil {
			switch h.kind {
			case hashArgon2id:
				if h.memory < 8*uint32(h.threads) || h.memory > maxArgonMemoryKiB ||
					h.time < 1 || h.time > maxArgonTime ||
					h.threads < 1 || h.threads > maxArgonThreads ||
					len(h.salt) < minArgonSaltBytes || len(h.salt) > maxArgonSaltBytes ||
					len(h.key) < minArgonKeyBytes || len(h.key) > maxArgonKeyBytes {
					t.Fatalf("parsePasswordHash(%q) accepted m=%d t=%d p=%d salt %d bytes key %d bytes, beyond the caps",
						encoded, h.memory, h.time, h.threads, len(h.salt), len(h.key))
				}
				if h.memory > fuzzMaxArgonMemoryKiB || h.time > fuzzMaxArgonTime {
					t.Skip("argon2id parameters too costly for fuzzing")
				}
			case hashPBKDF2SHA256:
				if h.iterations < 1 || h.iterations > maxPBKDF2Iterations ||
					len(h.salt) < 1 || len(h.salt) > maxPBKDF2SaltBytes || len(h.key) != pbkdf2KeyBytes {
					t.Fatalf("parsePasswordHash(%q) accepted %d iterations, salt %d bytes, key %d bytes, beyond the caps",
						encoded, h.iterations, len(h.salt), len(h.key))
				}
				if h.iterations > fuzzMaxPBKDF2Iteration {
					t.Skip("pbkdf2 iterations too costly for fuzzing")
				}
			default:
				t.Fatalf("parsePasswordHash(%q) accepted hash kind %d", encoded, h.kind)
			}
		}

		ok, rehash, err := CheckPassword(password, encoded)
		switch {
		case err != nil && (ok || rehash):
			t.Fatalf("CheckPassword(%q, %q) = %v, %v, %v; want false, false with an error", password, encoded, ok, rehash, err)
		case !ok && rehash:
			t.Fatalf("CheckPassword(%q, %q) = false, true, %v; want rehash only on a match", password, encoded, err)
		case len(password) > MaxPasswordBytes && !errors.Is(err, ErrPasswordTooLong):
			t.Fatalf("CheckPassword(%d-byte password, %q): got error %v, want ErrPasswordTooLong", len(password), encoded, err)
		case perr != nil && err == nil:
			t.Fatalf("CheckPassword(%q, %q): got no error, want parsePasswordHash's %v", password, encoded, perr)
		case ok && perr == nil && rehash != h.outdated():
			t.Fatalf("CheckPassword(%q, %q): got rehash %v, want %v", password, encoded, rehash, h.outdated())
		}
	})
}

func BenchmarkHashPassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPassword(b *testing.B) {
	encoded, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := CheckPassword("correct horse battery staple", encoded); !ok || err != nil {
			b.Fatalf("CheckPassword = %v, %v; want true, nil", ok, err)
		}
	}
}

// TestHashGate checks the hashing bound's semaphore: weights, first come
// first served, and a waiter that gives up.
func TestHashGate(t *testing.T) {
	const slot = ArgonMemoryKiB
	g := &hashGate{size: 2 * slot}
	ctx := t.Context()
	if err := g.acquire(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if err := g.acquire(ctx, slot/2); err != nil { // a weak hash takes what it says, here
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.acquire(short, slot); !errors.Is(err, errHashingBusy) {
		t.Fatalf("acquire with the gate full: got %v, want errHashingBusy once ctx is done", err)
	}

	// A big hash (capped at the whole gate) waits first in line; a small
	// one behind it waits too, though it would fit.
	order := make(chan string, 2)
	go func() { g.acquire(ctx, 100*slot); order <- "big" }()
	time.Sleep(20 * time.Millisecond)
	go func() { g.acquire(ctx, slot/2); order <- "small" }()
	time.Sleep(20 * time.Millisecond)
	select {
	case who := <-order:
		t.Fatalf("%s got in with the gate full", who)
	default:
	}
	g.release(slot / 2)
	select {
	case who := <-order:
		t.Fatalf("%s got in before the big one, first in line, could", who)
	case <-time.After(20 * time.Millisecond):
	}
	g.release(slot)
	if who := <-order; who != "big" {
		t.Fatalf("%s got in first, want big", who)
	}
	g.release(100 * slot)
	if who := <-order; who != "small" {
		t.Fatalf("got %s, want small", who)
	}
	g.release(slot / 2)
	if g.used != 0 || g.waiters.Len() != 0 {
		t.Errorf("gate after all releases: used %d, %d waiting; want 0, 0", g.used, g.waiters.Len())
	}
}

// TestPasswordHashingBounded runs 4 × PasswordHashingSlots checks at once
// and counts how many hash at the same moment: never more than the slots.
func TestPasswordHashingBounded(t *testing.T) {
	stored, err := HashPassword("the real password")
	if err != nil {
		t.Fatal(err)
	}
	slots := PasswordHashingSlots()
	g := hashing()
	var mu sync.Mutex
	most := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // samples the gate while the checks run
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			g.mu.Lock()
			mu.Lock()
			most = max(most, int(g.used/ArgonMemoryKiB))
			mu.Unlock()
			g.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for range 4 * slots {
		wg.Go(func() { CheckPassword("a wrong password", stored) })
	}
	wg.Wait()
	close(stop)
	<-done
	t.Logf("%d checks at once with %d slots: at most %d hashing together", 4*slots, slots, most)
	if most > slots || most == 0 {
		t.Errorf("at most %d hashing together, want 1 to %d", most, slots)
	}
}
