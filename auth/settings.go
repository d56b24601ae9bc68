package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/remuda/remuda/module"
)

// Defaults and limits of the module's settings (see Module.Settings).
const (
	// DefaultDatabase is the SQLite file shared by the workers of one
	// host, relative to the working directory.
	DefaultDatabase = "sqlite:server.db"
	// MaxRefreshTokenLifetime caps the refresh_token_lifetime setting.
	MaxRefreshTokenLifetime = 90 * 24 * time.Hour
)

// algorithms are the values of the jwt_algorithm setting (TokenConfig's
// Algorithm).
var algorithms = []string{"HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"}

// Settings declares the module's settings (module.Configurable), which
// the server reads with its own: flags, SERVER_* variables, the TOML file.
// Their values reach the module in module.Env.Settings (see settings).
// The token settings are simplejwt's, with its defaults, except that
// rotation and blacklisting are on by default and the access lifetime is
// capped at 1h (maxAccessLifetime): a protected request checks the access
// token's signature and its user's row, never a list of revoked tokens,
// so a logout (/blacklist/) or a refresh token's detected reuse revokes
// refresh tokens only, and an access token already out works until it
// expires. The cap bounds that window; a password change or a
// deactivated user stops them at once (the user's row).
func (m *Module) Settings() []module.Setting {
	return []module.Setting{
		{Name: "database", Default: DefaultDatabase, Arg: "URL",
			Help:        "users and tokens: sqlite:PATH, or postgres://… for several hosts",
			Want:        "sqlite:PATH or postgres://…",
			Credentials: true, Check: checkDatabase},
		{Name: "secret_key", Default: "", Arg: "KEY",
			Help:   "HMAC signing key; prefer SERVER_SECRET_KEY (a flag shows in ps)",
			Want:   "a key of at least 32 bytes",
			Secret: true},
		{Name: "access_token_lifetime", Default: DefaultAccessLifetime, Arg: "DUR",
			Help:        "lifetime of access tokens, at most 1h: one cannot be revoked before it expires",
			Want:        "a duration above 0 and at most 1h (an access token cannot be revoked before it expires: a logout revokes only its refresh token)",
			MaxDuration: maxAccessLifetime},
		{Name: "refresh_token_lifetime", Default: DefaultRefreshLifetime, Arg: "DUR",
			Help:        "lifetime of refresh tokens",
			Want:        "a duration above 0 and at most 90 days (2160h)",
			MaxDuration: MaxRefreshTokenLifetime},
		{Name: "rotate_refresh_tokens", Default: true,
			Help: "refresh answers a new refresh token too",
			Want: "true or false"},
		{Name: "blacklist_after_rotation", Default: true,
			Help: "a rotated-out refresh token is revoked; replaying it revokes its family",
			Want: "true or false"},
		{Name: "jwt_algorithm", Default: defaultAlgorithm, Arg: "ALG",
			Help: "token signature: " + strings.Join(algorithms, ", "),
			Want: "one of " + strings.Join(algorithms, ", "),
			Enum: algorithms},
		{Name: "jwt_private_key", Default: "", Arg: "PATH",
			Help: "PEM signing key for RS256, ES256, EdDSA",
			Want: "a file path"},
		{Name: "jwt_public_keys", Default: "", Arg: "PATHS",
			Help: "comma-separated PEM public keys that still verify (rotation)",
			Want: "file paths, comma-separated"},
		{Name: "jwt_issuer", Default: "", Arg: "ISS",
			Help: "iss claim to set and require",
			Want: "a string"},
		{Name: "jwt_audience", Default: "", Arg: "AUD",
			Help: "aud claim to set and require",
			Want: "a string"},
		{Name: "jwt_leeway", Default: time.Duration(0), Arg: "DUR",
			Help: "clock skew allowed on exp",
			Want: "a duration from 0 to 60s", ZeroOK: true, MaxDuration: maxLeeway},
	}
}

// checkDatabase refuses a database setting that names no store: an empty
// SQLite path, or neither sqlite: nor a PostgreSQL URL (whose parts the
// driver checks when it connects).
func checkDatabase(v any) error {
	url := v.(string)
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if path == "" {
			return errors.New("the SQLite path is empty")
		}
		return nil
	}
	if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
		return errors.New("not an SQLite path or a PostgreSQL URL")
	}
	return nil
}

// settings are the values of the settings the module reads, decoded from
// module.Env.Settings by name: its own (Settings) and the server's
// workers, with which Check sizes PostgreSQL's connection budget.
type settings struct {
	Workers                int           `json:"workers"`
	Database               string        `json:"database"`
	SecretKey              string        `json:"secret_key"`
	AccessTokenLifetime    time.Duration `json:"access_token_lifetime"`
	RefreshTokenLifetime   time.Duration `json:"refresh_token_lifetime"`
	RotateRefreshTokens    bool          `json:"rotate_refresh_tokens"`
	BlacklistAfterRotation bool          `json:"blacklist_after_rotation"`
	JWTAlgorithm           string        `json:"jwt_algorithm"`
	JWTPrivateKey          string        `json:"jwt_private_key"`
	JWTPublicKeys          string        `json:"jwt_public_keys"`
	JWTIssuer              string        `json:"jwt_issuer"`
	JWTAudience            string        `json:"jwt_audience"`
	JWTLeeway              time.Duration `json:"jwt_leeway"`
}

func settingsOf(env module.Env) (settings, error) {
	var s settings
	if err := json.Unmarshal(env.Settings, &s); err != nil {
		return settings{}, fmt.Errorf("auth: settings: %w", err)
	}
	return s, nil
}
