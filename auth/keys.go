package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"unicode/utf8"
)

// Key policy. The HMAC minimums are the hash output sizes (RFC 7518
// §3.2); the RSA minimum is RFC 7518 §3.3's.
const (
	minRSABits  = 2048
	maxKIDBytes = 128 // longest kid looked up; ours are 43
)

// placeholderKeys are secret keys copied from tutorials and test suites,
// refused whatever their length (compared case-insensitively).
var placeholderKeys = []string{
	"secret",
	"changeme",
	"not very secret in tests",
	"your-256-bit-secret",
	"not_secret",
}

// CheckSecretKey is the policy for an HS256, HS384 or HS512 signing key
// (alg "" means HS256): at least as many UTF-8 bytes as the hash output
// (32, 48 or 64), not a known placeholder, not a Django
// "django-insecure-" key, and at least 5 distinct characters. Its error
// says what is wrong, never what the key is. NewTokens applies it; the
// server calls it at start-up too. A good key is 64 random bytes, e.g.
// base64 of `openssl rand 64`.
func CheckSecretKey(alg, key string) error {
	if alg == "" {
		alg = defaultAlgorithm
	}
	var min int
	switch alg {
	case "HS256":
		min = 32
	case "HS384":
		min = 48
	case "HS512":
		min = 64
	default:
		return fmt.Errorf("auth: secret key: algorithm %q is not HS256, HS384 or HS512", alg)
	}
	if key == "" {
		return errors.New("auth: secret key is empty")
	}
	for _, p := range placeholderKeys {
		if strings.EqualFold(key, p) {
			return errors.New("auth: secret key is a well-known placeholder")
		}
	}
	if strings.HasPrefix(key, "django-insecure-") {
		return errors.New(`auth: secret key starts with "django-insecure-" (a development key)`)
	}
	if len(key) < min {
		return fmt.Errorf("auth: %s secret key is %d bytes, want at least %d", alg, len(key), min)
	}
	distinct := make(map[rune]struct{}, 8)
	for _, r := range key {
		distinct[r] = struct{}{}
		if len(distinct) >= 5 {
			break
		}
	}
	if len(distinct) < 5 {
		return fmt.Errorf("auth: secret key has %d distinct characters, want at least 5", len(distinct))
	}
	if !utf8.ValidString(key) {
		return errors.New("auth: secret key is not valid UTF-8")
	}
	return nil
}

// verifyKey is a public key that verifies tokens, known by its kid.
type verifyKey struct {
	kid string
	key crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// loadPrivateKey reads the PEM signing key in file (PKCS#1, PKCS#8 or SEC 1)
// and checks it against the key policy for alg.
func loadPrivateKey(alg, file string) (crypto.Signer, error) {
	der, typ, err := readPEMKey(file)
	if err != nil {
		return nil, err
	}
	var key any
	switch typ {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "PUBLIC KEY", "RSA PUBLIC KEY":
		return nil, fmt.Errorf("auth: private key file %s: holds a public key, want the private key", file)
	default:
		return nil, fmt.Errorf("auth: private key file %s: PEM block %q is not a private key", file, typ)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: private key file %s: %w", file, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("auth: private key file %s: %T keys cannot sign", file, key)
	}
	if err := checkKeyPolicy(alg, signer.Public()); err != nil {
		return nil, fmt.Errorf("auth: private key file %s: %w", file, err)
	}
	return signer, nil
}

// loadPublicKey reads the PEM public key in file (PKIX "PUBLIC KEY" or
// PKCS#1 "RSA PUBLIC KEY") and checks it against the key policy for alg.
func loadPublicKey(alg, file string) (crypto.PublicKey, error) {
	der, typ, err := readPEMKey(file)
	if err != nil {
		return nil, err
	}
	var key any
	switch typ {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(der)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(der)
	case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
		return nil, fmt.Errorf("auth: public key file %s: holds a private key, want only its public key", file)
	default:
		return nil, fmt.Errorf("auth: public key file %s: PEM block %q is not a public key", file, typ)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: public key file %s: %w", file, err)
	}
	if err := checkKeyPolicy(alg, key); err != nil {
		return nil, fmt.Errorf("auth: public key file %s: %w", file, err)
	}
	return key, nil
}

// readPEMKey returns the one key block of a PEM file, skipping an OpenSSL
// "EC PARAMETERS" block. Encrypted keys are refused: the server has no
// passphrase to give (use systemd's LoadCredentialEncrypted= instead).
func readPEMKey(file string) (der []byte, typ string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("auth: read key: %w", err)
	}
	var found *pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "EC PARAMETERS" {
			continue
		}
		if found != nil {
			return nil, "", fmt.Errorf("auth: key file %s: holds more than one PEM block, want one key", file)
		}
		found = b
	}
	switch {
	case found == nil:
		return nil, "", fmt.Errorf("auth: key file %s: no PEM block found", file)
	case found.Type == "ENCRYPTED PRIVATE KEY" || found.Headers["Proc-Type"] != "":
		return nil, "", fmt.Errorf("auth: key file %s: key is encrypted, want an unencrypted PEM key", file)
	}
	return found.Bytes, found.Type, nil
}

// checkKeyPolicy tells whether pub may verify alg: the key type matches
// the algorithm family, RSA moduli have at least 2048 bits, ES256 keys are
// on P-256.
func checkKeyPolicy(alg string, pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg != "RS256" {
			return fmt.Errorf("RSA key given for %s", alg)
		}
		if n := k.N.BitLen(); n < minRSABits {
			return fmt.Errorf("RSA modulus is %d bits, want at least %d", n, minRSABits)
		}
	case *ecdsa.PublicKey:
		if alg != "ES256" {
			return fmt.Errorf("EC key given for %s", alg)
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("EC key is on curve %s, want P-256 for ES256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("Ed25519 key given for %s", alg)
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
	default:
		return fmt.Errorf("%T key given for %s", pub, alg)
	}
	return nil
}

// jwk is a public JSON Web Key (RFC 7517) as the JWKS endpoint serves it.
// Field order is the order on the wire.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// publicJWK returns pub's JWK key members (kty, crv, n, e, x, y), without
// kid, use and alg.
func publicJWK(pub crypto.PublicKey) (jwk, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || X || Y, each padded to the field size
		if err != nil {
			return jwk{}, err
		}
		size := (len(point) - 1) / 2
		return jwk{Kty: "EC", Crv: k.Curve.Params().Name, X: b64(point[1 : 1+size]), Y: b64(point[1+size:])}, nil
	case ed25519.PublicKey:
		return jwk{Kty: "OKP", Crv: "Ed25519", X: b64(k)}, nil
	}
	return jwk{}, fmt.Errorf("auth: no JWK for %T keys", pub)
}

// thumbprint is the RFC 7638 JWK thumbprint of k: base64url SHA-256 of
// the required members in lexicographic order, without white space.
func thumbprint(k jwk) (string, error) {
	var canonical string
	switch k.Kty {
	case "RSA":
		canonical = `{"e":` + jsonString(k.E) + `,"kty":"RSA","n":` + jsonString(k.N) + `}`
	case "EC":
		canonical = `{"crv":` + jsonString(k.Crv) + `,"kty":"EC","x":` + jsonString(k.X) + `,"y":` + jsonString(k.Y) + `}`
	case "OKP":
		canonical = `{"crv":` + jsonString(k.Crv) + `,"kty":"OKP","x":` + jsonString(k.X) + `}`
	default:
		return "", fmt.Errorf("auth: no thumbprint for key type %q", k.Kty)
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// jsonString quotes s for the thumbprint input. The members it receives
// are base64url or curve names, which need no escaping; json.Marshal
// keeps that true of anything else.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// kidOf returns the kid of pub: its RFC 7638 thumbprint.
func kidOf(pub crypto.PublicKey) (string, error) {
	k, err := publicJWK(pub)
	if err != nil {
		return "", err
	}
	return thumbprint(k)
}

// marshalJWKS returns the JSON Web Key Set of keys, each marked for
// signatures with alg.
func marshalJWKS(alg string, keys []verifyKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, vk := range keys {
		k, err := publicJWK(vk.key)
		if err != nil {
			return nil, err
		}
		k.Kid, k.Use, k.Alg = vk.kid, "sig", alg
		set.Keys = append(set.Keys, k)
	}
	return json.Marshal(set)
}
