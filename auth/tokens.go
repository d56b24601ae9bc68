package auth

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// TokenConfig configures signing and verification. Its zero value (but for
// SecretKey, which HS256 needs) is HS256 with simplejwt's default
// lifetimes and no leeway.
type TokenConfig struct {
	// Algorithm is HS256, HS384, HS512, RS256, ES256 or EdDSA. If empty,
	// HS256 is used.
	Algorithm string
	// SecretKey is the HS* signing key; the key is its UTF-8 bytes, as
	// simplejwt's SIGNING_KEY (Django's SECRET_KEY), so tokens
	// interoperate both ways with a simplejwt deployment that uses the same
	// key. It must pass CheckSecretKey. Unused by the other algorithms.
	SecretKey string
	// PrivateKeyFile is the PEM signing key (PKCS#1, PKCS#8 or SEC 1,
	// unencrypted) for RS256 (RSA, at least 2048 bits), ES256 (P-256) and
	// EdDSA (Ed25519). Its public half always verifies. Refused with HS*.
	PrivateKeyFile string
	// PublicKeyFiles are PEM public keys ("PUBLIC KEY" or "RSA PUBLIC
	// KEY", one per file) that verify too: the keys being rotated out.
	// Refused with HS*.
	PublicKeyFiles []string
	// Issuer and Audience, if non-empty, are put in every token (iss, aud)
	// and required of every token parsed. If Audience is empty, tokens
	// carrying an aud claim are refused (as PyJWT does).
	Issuer, Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat, 0 to 60s.
	Leeway time.Duration
	// AccessLifetime is an access token's lifetime, at most one hour. If
	// zero, DefaultAccessLifetime is used.
	AccessLifetime time.Duration
	// RefreshLifetime is a refresh token's lifetime, longer than
	// AccessLifetime. If zero, DefaultRefreshLifetime is used.
	RefreshLifetime time.Duration
}

// Defaults and limits of a TokenConfig. The lifetimes are simplejwt's.
const (
	DefaultAccessLifetime  = 5 * time.Minute
	DefaultRefreshLifetime = 24 * time.Hour
	// MaxTokenBytes is the longest token Parse reads.
	MaxTokenBytes = 8 << 10

	maxLeeway         = 60 * time.Second
	maxAccessLifetime = time.Hour
	defaultAlgorithm  = "HS256"
)

// Claims are the claims Remuda issues and requires. On the wire they are
// token_type, exp, iat, jti, user_id (simplejwt's order), then aud and iss
// when configured; times are integer epoch seconds.
type Claims struct {
	TokenType string    // "access" or "refresh"
	ExpiresAt time.Time // exp
	IssuedAt  time.Time // iat; zero if the token has none (simplejwt < 4.7 sent none)
	JTI       string    // jti: uuid4 as 32 hex digits in the tokens we issue
	UserID    string    // user_id; a JSON integer is read as its decimal string
	Issuer    string    // iss, if any
	Audience  string    // aud: the configured Audience, if any
	// Custom are the token's other claims: those Config.Claims added at
	// login, carried from a refresh token into the tokens a refresh mints,
	// or those a simplejwt deployment's get_token added. Nil if none.
	// Values are as encoding/json decodes them, numbers as json.Number.
	// The map may be shared: do not modify it.
	Custom map[string]any
}

// reservedClaim tells whether name is a claim that Issue writes or Parse
// checks itself (token_type, exp, iat, jti, user_id, and the registered
// iss, aud and nbf, configured or not), so that no custom claim may take
// its place: Config.Claims cannot lengthen a token's life, change its type
// or its user, or set an issuer or audience the verifier would then trust.
func reservedClaim(name string) bool {
	switch name {
	case "token_type", "exp", "iat", "jti", "user_id", "iss", "aud", "nbf":
		return true
	}
	return false
}

// ErrReservedClaim is returned (wrapped, with the claim's name) when custom
// claims would override one of the claims Remuda sets or checks itself:
// token_type, exp, iat, jti, user_id, iss, aud and nbf.
var ErrReservedClaim = errors.New("auth: reserved claim")

// TokenError is why a token was refused. Message is simplejwt's text, fit
// for the API body ({"detail": Message, "code": "token_not_valid"}); the
// reason behind ErrTokenInvalid is not told.
type TokenError struct{ Message string }

func (e *TokenError) Error() string { return "auth: " + e.Message }

// The refusals of Parse (and, for ErrTokenBlacklisted, of the handlers).
// Parse returns these very values, so they compare with == as well as
// errors.Is.
var (
	ErrTokenInvalid   = &TokenError{"Token is invalid"}
	ErrTokenExpired   = &TokenError{"Token is expired"}
	ErrTokenWrongType = &TokenError{"Token has wrong type"}
	// A good signature over claims that lack one of ours; simplejwt's words.
	ErrTokenNoExp       = &TokenError{"Token has no 'exp' claim"}
	ErrTokenNoType      = &TokenError{"Token has no type"}
	ErrTokenNoID        = &TokenError{"Token has no id"}
	ErrTokenBlacklisted = &TokenError{"Token is blacklisted"}
)

// Token types.
const (
	accessType  = "access"
	refreshType = "refresh"
)

// headersRefused are JOSE header parameters that point at keys or demand
// extensions we do not implement (RFC 7515 §4.1.11): a token carrying one
// is refused, never followed.
var headersRefused = []string{"jku", "x5u", "jwk", "x5c", "crit"}

// Tokens signs and verifies tokens. Its keys are loaded once by NewTokens;
// it is safe for concurrent use.
type Tokens struct {
	alg     string
	method  jwt.SigningMethod
	signKey any    // []byte for HS*, else crypto.Signer
	kid     string // of signKey; empty for HS*
	// verify maps kid to public key (asymmetric algorithms only).
	verify    map[string]crypto.PublicKey
	hmacKey   []byte
	issuer    string
	audience  string
	access    time.Duration
	refresh   time.Duration
	parseOpts []jwt.ParserOption // without the clock
	keyfunc   jwt.Keyfunc
	jwks      []byte
}

// NewTokens checks cfg, loads its keys and returns the signer/verifier.
// Its errors name what is wrong and the key file, never key material:
// an unknown algorithm, an HS* key that fails CheckSecretKey, key files
// given with HS* (ambiguous) or missing for RS256/ES256/EdDSA, a key of
// the wrong type, an RSA modulus under 2048 bits, an EC key not on P-256,
// a leeway outside 0..60s, an access lifetime outside (0, 1h], a refresh
// lifetime not longer than the access lifetime.
func NewTokens(cfg TokenConfig) (*Tokens, error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = defaultAlgorithm
	}
	if cfg.AccessLifetime == 0 {
		cfg.AccessLifetime = DefaultAccessLifetime
	}
	if cfg.RefreshLifetime == 0 {
		cfg.RefreshLifetime = DefaultRefreshLifetime
	}
	switch {
	case cfg.Leeway < 0 || cfg.Leeway > maxLeeway:
		return nil, fmt.Errorf("auth: leeway %v is outside 0s..%v", cfg.Leeway, maxLeeway)
	case cfg.AccessLifetime < 0 || cfg.AccessLifetime > maxAccessLifetime:
		return nil, fmt.Errorf("auth: access token lifetime %v is outside (0s, %v]", cfg.AccessLifetime, maxAccessLifetime)
	case cfg.RefreshLifetime <= cfg.AccessLifetime:
		return nil, fmt.Errorf("auth: refresh token lifetime %v is not longer than the access token lifetime %v", cfg.RefreshLifetime, cfg.AccessLifetime)
	}

	t := &Tokens{
		alg:      cfg.Algorithm,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		access:   cfg.AccessLifetime,
		refresh:  cfg.RefreshLifetime,
	}
	var verifyKeys []verifyKey
	switch cfg.Algorithm {
	case "HS256", "HS384", "HS512":
		if cfg.PrivateKeyFile != "" || len(cfg.PublicKeyFiles) > 0 {
			return nil, fmt.Errorf("auth: %s signs with the secret key, but key files are configured too (ambiguous: choose RS256, ES256 or EdDSA, or drop the key files)", cfg.Algorithm)
		}
		if err := CheckSecretKey(cfg.Algorithm, cfg.SecretKey); err != nil {
			return nil, err
		}
		t.hmacKey = []byte(cfg.SecretKey)
		t.signKey = t.hmacKey
	case "RS256", "ES256", "EdDSA":
		if cfg.PrivateKeyFile == "" {
			return nil, fmt.Errorf("auth: %s needs a private key file", cfg.Algorithm)
		}
		signer, err := loadPrivateKey(cfg.Algorithm, cfg.PrivateKeyFile)
		if err != nil {
			return nil, err
		}
		t.signKey = signer
		t.kid, err = kidOf(signer.Public())
		if err != nil {
			return nil, fmt.Errorf("auth: private key file %s: %w", cfg.PrivateKeyFile, err)
		}
		t.verify = map[string]crypto.PublicKey{t.kid: signer.Public()}
		verifyKeys = append(verifyKeys, verifyKey{t.kid, signer.Public()})
		for _, file := range cfg.PublicKeyFiles {
			pub, err := loadPublicKey(cfg.Algorithm, file)
			if err != nil {
				return nil, err
			}
			kid, err := kidOf(pub)
			if err != nil {
				return nil, fmt.Errorf("auth: public key file %s: %w", file, err)
			}
			if _, dup := t.verify[kid]; dup {
				continue // the same key twice verifies once
			}
			t.verify[kid] = pub
			verifyKeys = append(verifyKeys, verifyKey{kid, pub})
		}
	default:
		return nil, fmt.Errorf("auth: algorithm %q is not supported, want HS256, HS384, HS512, RS256, ES256 or EdDSA", cfg.Algorithm)
	}
	t.method = jwt.GetSigningMethod(cfg.Algorithm)

	jwks, err := marshalJWKS(cfg.Algorithm, verifyKeys)
	if err != nil {
		return nil, err
	}
	t.jwks = jwks

	t.parseOpts = []jwt.ParserOption{
		jwt.WithValidMethods([]string{cfg.Algorithm}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithJSONNumber(),     // user_id integers beyond 2^53 stay exact
		jwt.WithStrictDecoding(), // one encoding per token: no malleable trailing bits
	}
	if cfg.Issuer != "" {
		t.parseOpts = append(t.parseOpts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		t.parseOpts = append(t.parseOpts, jwt.WithAudience(cfg.Audience))
	}
	t.keyfunc = t.lookupKey
	return t, nil
}

// JWKS returns the JSON Web Key Set of the public keys that verify tokens
// (the signing key's first), each with kty, kid (its RFC 7638
// thumbprint), use "sig", alg and its key members; {"keys":[]} for HS*.
// The caller may keep and modify the slice.
func (t *Tokens) JWKS() []byte { return bytes.Clone(t.jwks) }

// issuedClaims are the claims of a token we issue, in simplejwt's order:
// its payload, then aud and iss as PyJWT's encode appends them.
type issuedClaims struct {
	TokenType string `json:"token_type"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	JTI       string `json:"jti"`
	UserID    string `json:"user_id"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
}

// withCustom are issuedClaims with custom claims, which go between user_id
// and aud, sorted by name.
type withCustom struct {
	issuedClaims
	custom map[string]any
}

func (c withCustom) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(issuedClaims{TokenType: c.TokenType, ExpiresAt: c.ExpiresAt, IssuedAt: c.IssuedAt, JTI: c.JTI, UserID: c.UserID})
	if err != nil {
		return nil, err
	}
	b := bytes.NewBuffer(head[:len(head)-1]) // without its '}'
	for _, name := range slices.Sorted(maps.Keys(c.custom)) {
		k, _ := json.Marshal(name)
		v, err := json.Marshal(c.custom[name])
		if err != nil {
			return nil, fmt.Errorf("claim %s: %w", k, err)
		}
		b.WriteByte(',')
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	for _, m := range [...]struct{ name, value string }{{"aud", c.Audience}, {"iss", c.Issuer}} {
		if m.value != "" {
			v, _ := json.Marshal(m.value)
			fmt.Fprintf(b, ",%q:%s", m.name, v)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// issuedClaims implements jwt.Claims only to be signed; we never validate
// with it.
func (c issuedClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}
func (c issuedClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}
func (c issuedClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c issuedClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c issuedClaims) GetSubject() (string, error)             { return "", nil }
func (c issuedClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}

// Issue signs a token of type typ ("access" or "refresh") for userID,
// issued at now (truncated to the second, as simplejwt's epochs) and
// expiring one lifetime later. The header is {"alg":…,"typ":"JWT"}, with
// the signing key's kid for RS256, ES256 and EdDSA.
func (t *Tokens) Issue(typ, userID string, now time.Time) (string, Claims, error) {
	return t.issue(typ, userID, nil, now)
}

// issue is Issue with custom claims, written after user_id in the order
// of their names. It refuses a reserved claim name (ErrReservedClaim), a
// value JSON cannot encode, and claims that make the token longer than
// MaxTokenBytes, which Parse would refuse.
func (t *Tokens) issue(typ, userID string, custom map[string]any, now time.Time) (string, Claims, error) {
	var life time.Duration
	switch typ {
	case accessType:
		life = t.access
	case refreshType:
		life = t.refresh
	default:
		return "", Claims{}, fmt.Errorf("auth: issue: token type %q is not access or refresh", typ)
	}
	if userID == "" {
		return "", Claims{}, errors.New("auth: issue: empty user id")
	}
	if err := checkCustom(custom); err != nil {
		return "", Claims{}, err
	}
	if len(custom) == 0 {
		custom = nil
	}
	jti, err := newJTI()
	if err != nil {
		return "", Claims{}, fmt.Errorf("auth: issue: %w", err)
	}
	c := issuedClaims{
		TokenType: typ,
		ExpiresAt: now.Add(life).Unix(),
		IssuedAt:  now.Unix(),
		JTI:       jti,
		UserID:    userID,
		Audience:  t.audience,
		Issuer:    t.issuer,
	}
	var signed jwt.Claims = c
	if custom != nil {
		signed = withCustom{c, custom}
	}
	tok := jwt.NewWithClaims(t.method, signed)
	if t.kid != "" {
		tok.Header["kid"] = t.kid
	}
	raw, err := tok.SignedString(t.signKey)
	if err != nil {
		return "", Claims{}, fmt.Errorf("auth: issue: %w", err)
	}
	if len(raw) > MaxTokenBytes {
		return "", Claims{}, fmt.Errorf("auth: issue: the token is %d bytes, over MaxTokenBytes (%d): its custom claims are too large", len(raw), MaxTokenBytes)
	}
	return raw, Claims{
		TokenType: typ,
		ExpiresAt: time.Unix(c.ExpiresAt, 0).UTC(),
		IssuedAt:  time.Unix(c.IssuedAt, 0).UTC(),
		JTI:       jti,
		UserID:    userID,
		Issuer:    t.issuer,
		Audience:  t.audience,
		Custom:    custom,
	}, nil
}

// checkCustom refuses custom claims that would take a reserved claim's
// place, naming the first such claim in the order of names.
func checkCustom(custom map[string]any) error {
	var bad []string
	for name := range custom {
		if reservedClaim(name) {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%w %q: custom claims cannot set it", ErrReservedClaim, bad[0])
	}
	return nil
}

// newJTI returns a random (version 4) UUID as 32 lowercase hex digits,
// like Python's uuid4().hex.
func newJTI() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return hex.EncodeToString(u[:]), nil
}

// Parse verifies raw at time now and returns its claims. want is the
// token_type required ("access", "refresh"); "" accepts any type (the
// verify endpoint), though the claim must still be there.
//
// A token is accepted only if it is compact JWS of at most MaxTokenBytes
// bytes of base64url and two dots; its alg is the configured one; it
// carries none of the jku, x5u, jwk, x5c or crit headers; with RS256,
// ES256 and EdDSA its kid names one of our keys; the signature verifies;
// exp is there and after now (exp == now is expired, as simplejwt's
// check_exp), nbf and iat are not after now, all give or take the leeway;
// iss and aud match when configured; jti, token_type and user_id are
// there and non-empty; the header and the payload are each one JSON
// object of valid UTF-8 with nothing after it but white space, as PyJWT's
// json.loads requires (golang-jwt alone would take a payload's first
// value and ignore what follows, and read invalid UTF-8 as U+FFFD). The
// claims other than Remuda's are returned in Custom. The error is then
// ErrTokenExpired for a token that is good but for its exp,
// ErrTokenWrongType for a good token of another type, and ErrTokenInvalid
// for anything else.
func (t *Tokens) Parse(raw, want string, now time.Time) (Claims, error) {
	if !wellFormed(raw) || !strictSegments(raw) {
		return Claims{}, ErrTokenInvalid
	}
	opts := append(t.parseOpts[:len(t.parseOpts):len(t.parseOpts)], jwt.WithTimeFunc(func() time.Time { return now }))
	mc := jwt.MapClaims{}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(raw, mc, t.keyfunc)
	if err != nil || tok == nil || !tok.Valid {
		switch {
		case onlyClaim(err, jwt.ErrTokenExpired) && datesInRange(mc):
			return Claims{}, ErrTokenExpired
		case onlyClaim(err, jwt.ErrTokenRequiredClaimMissing) && mc["exp"] == nil:
			return Claims{}, ErrTokenNoExp
		}
		return Claims{}, ErrTokenInvalid
	}
	c, err := t.claimsOf(mc)
	if err != nil {
		return Claims{}, err
	}
	if want != "" && c.TokenType != want {
		return Claims{}, ErrTokenWrongType
	}
	return c, nil
}

// wellFormed tells, in one scan and without allocating, whether raw may be
// a compact JWS: at most MaxTokenBytes bytes, only the base64url alphabet
// and exactly two dots. This keeps JSON serialisations, padding, white
// space and dot floods (CVE-2025-30204) away from the decoder.
func wellFormed(raw string) bool {
	if len(raw) == 0 || len(raw) > MaxTokenBytes {
		return false
	}
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			dots++
			if dots > 2 {
				return false
			}
		default:
			return false
		}
	}
	return dots == 2
}

// strictSegments tells whether the header and payload of a well-formed
// raw each decode to one JSON value of valid UTF-8, with nothing after it
// but JSON white space. It is Python's json.loads, which PyJWT runs, where
// golang-jwt is lenient: with WithJSONNumber it decodes the payload with a
// json.Decoder, which stops after the first value, and encoding/json turns
// invalid UTF-8 into U+FFFD. That the values are objects is golang-jwt's
// check.
func strictSegments(raw string) bool {
	header, rest, _ := strings.Cut(raw, ".")
	payload, _, _ := strings.Cut(rest, ".")
	for _, seg := range [...]string{header, payload} {
		b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
		if err != nil || !utf8.Valid(b) || !json.Valid(b) {
			return false
		}
	}
	return true
}

// lookupKey is the jwt.Keyfunc: it refuses key-bearing headers and any
// alg but ours, and returns a typed key: []byte for HS*, else the public
// key that the kid names.
func (t *Tokens) lookupKey(tok *jwt.Token) (any, error) {
	if tok.Method == nil || tok.Method.Alg() != t.alg {
		return nil, errors.New("unexpected alg")
	}
	for _, h := range headersRefused {
		if _, ok := tok.Header[h]; ok {
			return nil, fmt.Errorf("header %q refused", h)
		}
	}
	if t.hmacKey != nil {
		return t.hmacKey, nil // a kid, if any, plays no part (simplejwt ignores it too)
	}
	kid, ok := tok.Header["kid"].(string)
	if !ok || kid == "" || len(kid) > maxKIDBytes {
		return nil, errors.New("missing or odd kid")
	}
	key, ok := t.verify[kid]
	if !ok {
		return nil, errors.New("unknown kid")
	}
	return key, nil
}

// otherClaimErrors are the golang-jwt claim failures that make a token
// invalid rather than just expired.
var otherClaimErrors = []error{
	jwt.ErrTokenMalformed,
	jwt.ErrTokenUnverifiable,
	jwt.ErrTokenSignatureInvalid,
	jwt.ErrTokenRequiredClaimMissing,
	jwt.ErrInvalidType,
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenInvalidSubject,
	jwt.ErrTokenInvalidId,
}

// onlyClaim tells whether err says the signature verified and want (the
// expired exp, or the missing one) is the only claim error. golang-jwt
// validates claims only after the signature, so either implies a good
// signature.
func onlyClaim(err, want error) bool {
	if !errors.Is(err, want) {
		return false
	}
	for _, e := range append(otherClaimErrors, jwt.ErrTokenExpired, jwt.ErrTokenRequiredClaimMissing) {
		if e != want && errors.Is(err, e) {
			return false
		}
	}
	return true
}

// maxEpoch is 9999-12-31T23:59:59Z, the last second Python's datetime (so
// simplejwt) can represent; a later exp, iat or nbf makes a token invalid.
const maxEpoch = 253402300799

// datesInRange tells whether exp, iat and nbf, where present, are numbers
// between 0 and maxEpoch.
func datesInRange(mc jwt.MapClaims) bool {
	for _, name := range []string{"exp", "iat", "nbf"} {
		v, ok := mc[name]
		if !ok {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		if err != nil || math.IsNaN(f) || f < 0 || f > maxEpoch {
			return false
		}
	}
	return true
}

// claimsOf extracts our claims from a verified token and checks the ones
// golang-jwt does not: token_type, jti and user_id (a missing type or id
// gets simplejwt's message, anything else ErrTokenInvalid), the epoch
// ranges, and no aud unless we expect one.
func (t *Tokens) claimsOf(mc jwt.MapClaims) (Claims, error) {
	if !datesInRange(mc) {
		return Claims{}, ErrTokenInvalid
	}
	var c Claims
	var ok bool
	if c.TokenType, ok = mc["token_type"].(string); !ok || c.TokenType == "" {
		if mc["token_type"] == nil {
			return Claims{}, ErrTokenNoType
		}
		return Claims{}, ErrTokenInvalid
	}
	if c.JTI, ok = mc["jti"].(string); !ok || c.JTI == "" {
		if mc["jti"] == nil {
			return Claims{}, ErrTokenNoID
		}
		return Claims{}, ErrTokenInvalid
	}
	if c.UserID, ok = userIDOf(mc["user_id"]); !ok {
		return Claims{}, ErrTokenInvalid
	}
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil {
		return Claims{}, ErrTokenInvalid
	}
	c.ExpiresAt = exp.UTC()
	if iat, err := mc.GetIssuedAt(); err != nil {
		return Claims{}, ErrTokenInvalid
	} else if iat != nil {
		c.IssuedAt = iat.UTC()
	}
	if c.Issuer, err = mc.GetIssuer(); err != nil {
		return Claims{}, ErrTokenInvalid
	}
	if t.audience == "" && !emptyJSON(mc["aud"]) {
		return Claims{}, ErrTokenInvalid // PyJWT: "Invalid audience" when none is expected
	}
	c.Audience = t.audience
	for name, v := range mc {
		if !reservedClaim(name) {
			if c.Custom == nil {
				c.Custom = make(map[string]any)
			}
			c.Custom[name] = v
		}
	}
	return c, nil
}

// userIDOf reads the user_id claim: a non-empty string, or a JSON integer
// (older simplejwt releases put integer primary keys in as numbers), which
// becomes its decimal string. Fractions and exponents are refused.
func userIDOf(v any) (string, bool) {
	switch id := v.(type) {
	case string:
		return id, id != ""
	case json.Number:
		s := string(id)
		digits := s
		if len(digits) > 0 && digits[0] == '-' {
			digits = digits[1:]
		}
		if digits == "" {
			return "", false
		}
		for i := 0; i < len(digits); i++ {
			if digits[i] < '0' || digits[i] > '9' {
				return "", false
			}
		}
		return s, true
	}
	return "", false
}

// emptyJSON tells whether a decoded claim is absent or empty: null, "",
// [] or {} (what Python's "not payload['aud']" lets through, but for 0
// and false).
func emptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}
