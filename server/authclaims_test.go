package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/remuda/remuda/auth"
)

// TestModuleClaims checks that auth.Module's Claims, booted by the server
// (bootModules), reach the tokens its endpoints issue.
func TestModuleClaims(t *testing.T) {
	db := filepath.Join(t.TempDir(), "server.db")
	cfg, err := loadConfig([]string{"--database", "sqlite:" + db}, env(map[string]string{"SERVER_SECRET_KEY": "remuda-test-secret-key-0123456789-abcdefghij"}))
	if err != nil {
		t.Fatal(err)
	}
	users := &auth.Module{Claims: func(_ context.Context, u auth.User) (map[string]any, error) {
		return map[string]any{"username": u.Username, "roles": []string{"editor"}}, nil
	}}
	app := NewApp()
	app.Register(users)
	users.Mount(app, "/api/token")
	closeModules, err := bootModules(app, cfg, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeModules()
	store, err := auth.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := auth.CreateUser(context.Background(), store, "alice", "alice-password-1"); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/api/token/", strings.NewReader(`{"username":"alice","password":"alice-password-1"}`))
	r.Header.Set("Content-Type", "application/json")
	app.Handler().ServeHTTP(w, r)
	var pair struct{ Access string }
	if err := json.Unmarshal(w.Body.Bytes(), &pair); w.Code != http.StatusOK || err != nil {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	parts := strings.Split(pair.Access, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	if claims["username"] != "alice" || claims["roles"] == nil {
		t.Errorf("access token claims %v, want the hook's username and roles", claims)
	}
}
