package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestReadFieldsJSON checks the JSON bodies DRF's JSONParser refuses,
// answered with DRF's own words: each want is what the simplejwt
// tutorial (Debian 12: DRF 3.14, Python 3.11) answered to the body under
// gunicorn.
func TestReadFieldsJSON(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // "" for accepted
	}{
		{"object", `{"username":"alice","password":"x"}`, ""},
		{"trailing white space", "{\"username\":\"alice\"} \t\r\n", ""},
		{"empty", ``, ""},
		{"trailing brace", `{"username":"alice","password":"x"}}`, `{"detail":"JSON parse error - Extra data: line 1 column 36 (char 35)"}`},
		{"trailing bracket", `{"username":"alice","password":"x"}]`, `{"detail":"JSON parse error - Extra data: line 1 column 36 (char 35)"}`},
		{"trailing word", `{"username":"alice","password":"x"} x`, `{"detail":"JSON parse error - Extra data: line 1 column 37 (char 36)"}`},
		{"trailing brace on line 3", "{\"username\":\"alice\",\n\"password\":\"x\"}\n}", `{"detail":"JSON parse error - Extra data: line 3 column 1 (char 37)"}`},
		{"trailing brace, newlines and spaces", "{\"username\":\"alice\",\"password\":\"x\"}\n\n  }", `{"detail":"JSON parse error - Extra data: line 3 column 3 (char 39)"}`},
		{"characters, not bytes", `{"username":"ålice","password":"x"}}`, `{"detail":"JSON parse error - Extra data: line 1 column 36 (char 35)"}`},
		{"two objects", `{"username":"alice"}{"password":"x"}`, `{"detail":"JSON parse error - Extra data: line 1 column 21 (char 20)"}`},
		{"a number, then more", `123abc`, `{"detail":"JSON parse error - Extra data: line 1 column 4 (char 3)"}`},
		{"white space only", " ", `{"detail":"JSON parse error - Expecting value: line 1 column 2 (char 1)"}`},
		{"white space on two lines", "  \n  ", `{"detail":"JSON parse error - Expecting value: line 2 column 3 (char 5)"}`},
		{"byte order mark", "\ufeff{\"username\":\"alice\",\"password\":\"x\"}", `{"detail":"JSON parse error - Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"}`},
		{"byte order mark alone", "\ufeff", `{"detail":"JSON parse error - Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"}`},
		{"half a byte order mark", "\xef\xbb", `{"detail":"JSON parse error - Expecting value: line 1 column 1 (char 0)"}`},
		{"invalid start byte", "{\"username\":\"al\xffice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xff in position 15: invalid start byte"}`},
		{"invalid start byte after the object", "{\"username\":\"alice\",\"password\":\"x\"}\xff", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xff in position 35: invalid start byte"}`},
		{"overlong", "{\"username\":\"al\xc0\x80ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xc0 in position 15: invalid start byte"}`},
		{"over U+10FFFF", "{\"username\":\"al\xf5ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xf5 in position 15: invalid start byte"}`},
		{"surrogate", "{\"username\":\"al\xed\xa0\x80ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xed in position 15: invalid continuation byte"}`},
		{"overlong three bytes", "{\"username\":\"al\xe0\x80ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xe0 in position 15: invalid continuation byte"}`},
		{"over U+10FFFF, four bytes", "{\"username\":\"al\xf4\x90ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode byte 0xf4 in position 15: invalid continuation byte"}`},
		{"three of four bytes", "{\"username\":\"al\xf0\x9f\x98ice\",\"password\":\"x\"}", `{"detail":"JSON parse error - 'utf-8' codec can't decode bytes in position 15-17: invalid continuation byte"}`},
		{"two of three bytes", "{\"username\":\"al\xe2\x82\"", `{"detail":"JSON parse error - 'utf-8' codec can't decode bytes in position 15-16: invalid continuation byte"}`},
		// Python's stream reader keeps an incomplete sequence at the end
		// for more input, then drops it: DRF parses what comes before.
		{"incomplete sequence at the end", "{\"username\":\"alice\",\"password\":\"x\"}\xe2\x82", ""},
		{"a list", `[1,2]`, `{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}`},
		{"a string", `"x"`, `{"non_field_errors":["Invalid data. Expected a dictionary, but got str."]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/token/", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			_, status, body := readFields(w, r)
			if tt.want == "" {
				if status != 0 {
					t.Fatalf("body %q: got %d %v, want it parsed", tt.body, status, body)
				}
				return
			}
			got, _ := json.Marshal(body)
			if status != http.StatusBadRequest || string(got) != tt.want {
				t.Errorf("body %q: got %d %s, want 400 %s", tt.body, status, got, tt.want)
			}
		})
	}
}

// nilStore is a Store that panics at any call: what a handler must not
// reach.
type nilStore struct{ Store }

// TestObtainLimits checks that an over-long username or password, or one
// with a null character, is answered 400 with DRF's field errors before
// any store call, password hash or OnLogin.
func TestObtainLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name, username, password string
		want                     string
	}{
		{"username over 150 characters", long(151), "x", `{"username":["Ensure this field has no more than 150 characters."]}`},
		{"username of 1 MiB", long(1 << 20), "x", `{"username":["Ensure this field has no more than 150 characters."]}`},
		{"username of 151 characters in 302 bytes", strings.Repeat("é", 151), "x", `{"username":["Ensure this field has no more than 150 characters."]}`},
		{"password over 1024 bytes", "alice", long(1025), `{"password":["Ensure this field has no more than 1024 bytes."]}`},
		{"password of 1024 bytes, over in characters", "alice", strings.Repeat("é", 513), `{"password":["Ensure this field has no more than 1024 bytes."]}`},
		{"both", long(151), long(1025), `{"username":["Ensure this field has no more than 150 characters."],"password":["Ensure this field has no more than 1024 bytes."]}`},
		{"username missing, password too long", "", long(1025), `{"username":["This field may not be blank."],"password":["Ensure this field has no more than 1024 bytes."]}`},
		{"null character in the username", "al\x00ice", "x", `{"username":["Null characters are not allowed."]}`},
		{"null character in the password", "alice", "x\x00", `{"password":["Null characters are not allowed."]}`},
		{"too long and a null character", long(151) + "\x00", "x", `{"username":["Ensure this field has no more than 150 characters.","Null characters are not allowed."]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logins := 0
			a, err := New(Config{
				Tokens:  TokenConfig{SecretKey: "handlers-test-key-0123456789-abcdefghij"},
				OnLogin: func(*http.Request, string, LoginOutcome) { logins++ },
			}, nilStore{})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			a.Mount(mux, "/api/token")
			body, _ := json.Marshal(map[string]string{"username": tt.username, "password": tt.password})
			r := httptest.NewRequest("POST", "/api/token/", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if got := strings.TrimSpace(w.Body.String()); w.Code != http.StatusBadRequest || got != tt.want {
				t.Errorf("got %d %s, want 400 %s", w.Code, got, tt.want)
			}
			if logins != 0 {
				t.Errorf("OnLogin called %d times for a refused request, want 0", logins)
			}
		})
	}
}

// TestObtainLimitsBoundary checks that a username of exactly 150
// characters and a password of exactly 1024 bytes are logins like any
// other (401 for no such user), not refused for their length.
func TestObtainLimitsBoundary(t *testing.T) {
	_, mux := mountTest(t, Config{})
	body, _ := json.Marshal(map[string]string{"username": strings.Repeat("é", MaxUsernameLength), "password": strings.Repeat("p", MaxPasswordBytes)})
	w := post(mux, "/api/token/", string(body))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("150 characters and 1024 bytes: got %d %s, want 401", w.Code, w.Body)
	}
}

// TestCreateUserUsernameLimit checks that no user is created whom the
// obtain endpoint could not log in.
func TestCreateUserUsernameLimit(t *testing.T) {
	if _, err := CreateUser(context.Background(), nilStore{}, strings.Repeat("a", MaxUsernameLength+1), "x"); err == nil {
		t.Error("CreateUser with a 151-character username: nil error, want one")
	}
}

// mountTest mounts an Auth with cfg (its Tokens filled in) on a fresh
// SQLite store and returns it with the mux.
func mountTest(t testing.TB, cfg Config) (*Auth, *http.ServeMux) {
	t.Helper()
	store, err := OpenSQLite(filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if cfg.Tokens.SecretKey == "" {
		cfg.Tokens.SecretKey = "handlers-test-key-0123456789-abcdefghij"
	}
	a, err := New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux, "/api/token")
	mux.Handle("GET /hello/", a.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		writeJSON(w, http.StatusOK, map[string]any{"user_id": u.ID, "claims": CustomClaims(r.Context())})
	})))
	return a, mux
}

// post sends a JSON body.
func post(h http.Handler, path, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// hello requests the protected route with the given Authorization
// headers.
func hello(h http.Handler, authorization ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/hello/", nil)
	if len(authorization) > 0 {
		r.Header["Authorization"] = authorization
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// FuzzReadFields checks the JSON body parser against encoding/json's
// strict Unmarshal: it accepts a body only if that body (but for an
// incomplete UTF-8 sequence at its end, which DRF drops) is valid UTF-8
// and one JSON object with nothing after it; it accepts every such body
// without a byte order mark; and it never panics.
func FuzzReadFields(f *testing.F) {
	for _, seed := range []string{`{"username":"alice","password":"x"}`, `{"username":"alice","password":"x"}}`, `{"username":"alice"}]`,
		"{\"username\":\"al\xffice\"}", "{\"a\":\"b\"}\xe2\x82", " ", "\ufeff{}", `{"a":1}{"b":2}`, "[1]"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/api/token/", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		fields, status, _ := readFields(httptest.NewRecorder(), r)
		trimmed := body
		for i := 1; i <= 3 && i <= len(body); i++ {
			if utf8.RuneStart(body[len(body)-i]) {
				if !utf8.FullRune(body[len(body)-i:]) {
					trimmed = body[:len(body)-i]
				}
				break
			}
		}
		var obj map[string]any
		strict := len(body) > 0 && utf8.Valid(trimmed) && json.Unmarshal(trimmed, &obj) == nil && obj != nil
		switch {
		case status == 0 && len(body) > 0 && !strict:
			t.Fatalf("body %q accepted (%v), which json.Unmarshal refuses", body, fields)
		case status != 0 && strict && !bytes.HasPrefix(trimmed, []byte("\ufeff")):
			t.Fatalf("body %q refused (%d), which json.Unmarshal takes", body, status)
		}
	})
}

// TestReadFieldsBodyTooLarge keeps the 413 for a body over MaxBodyBytes.
func TestReadFieldsBodyTooLarge(t *testing.T) {
	r := httptest.NewRequest("POST", "/api/token/", io.LimitReader(zeros{}, MaxBodyBytes+1))
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = -1
	_, status, _ := readFields(httptest.NewRecorder(), r)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body of MaxBodyBytes+1: got %d, want 413", status)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestTokenFieldNullCharacter checks DRF's CharField validator on the
// token fields: a null character is a 400 field error (simplejwt's
// answer under DRF 3.14), before any parsing.
func TestTokenFieldNullCharacter(t *testing.T) {
	_, mux := mountTest(t, Config{})
	for path, field := range map[string]string{"/api/token/refresh/": "refresh", "/api/token/verify/": "token", "/api/token/blacklist/": "refresh"} {
		w := post(mux, path, `{"`+field+`":"a.b\u0000c"}`)
		want := `{"` + field + `":["Null characters are not allowed."]}`
		if got := strings.TrimSpace(w.Body.String()); w.Code != http.StatusBadRequest || got != want {
			t.Errorf("%s: got %d %s, want 400 %s", path, w.Code, got, want)
		}
	}
}

// TestOptions checks each token endpoint's OPTIONS answer: 200, Allow,
// and the body simplejwt sends (captured from the simplejwt tutorial of
// examples/drf under gunicorn: Debian 12's DRF 3.14, simplejwt 5.2.2),
// whatever credentials and body the request carries.
func TestOptions(t *testing.T) {
	_, mux := mountTest(t, Config{})
	const parses = `"renders":["application/json"],"parses":["application/json","application/x-www-form-urlencoded","multipart/form-data"]`
	want := map[string]string{
		"/api/token/": `{"name":"Token Obtain Pair","description":"Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.",` + parses +
			`,"actions":{"POST":{"username":{"type":"string","required":true,"read_only":false,"label":"Username"},"password":{"type":"string","required":true,"read_only":false,"label":"Password"}}}}`,
		"/api/token/refresh/": `{"name":"Token Refresh","description":"Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",` + parses +
			`,"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"},"access":{"type":"string","required":false,"read_only":true,"label":"Access"}}}}`,
		"/api/token/verify/": `{"name":"Token Verify","description":"Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.",` + parses +
			`,"actions":{"POST":{"token":{"type":"string","required":true,"read_only":false,"label":"Token"}}}}`,
		"/api/token/blacklist/": `{"name":"Token Blacklist","description":"Takes a token and blacklists it. Must be used with the\n` + "`rest_framework_simplejwt.token_blacklist`" + ` app installed.",` + parses +
			`,"actions":{"POST":{"refresh":{"type":"string","required":true,"read_only":false,"label":"Refresh"}}}}`,
	}
	for path, body := range want {
		for _, path := range []string{path, strings.TrimSuffix(path, "/")} {
			for name, header := range map[string]string{"no credentials": "", "garbage bearer": "Bearer x.y.z", "bearer alone": "Bearer"} {
				t.Run(path+" "+name, func(t *testing.T) {
					r := httptest.NewRequest("OPTIONS", path, strings.NewReader(`{"username":"alice","password":"x"}`))
					r.Header.Set("Content-Type", "application/json")
					if header != "" {
						r.Header.Set("Authorization", header)
					}
					w := httptest.NewRecorder()
					mux.ServeHTTP(w, r)
					if w.Code != 200 || w.Body.String() != body {
						t.Errorf("OPTIONS %s: got %d %s, want 200 %s", path, w.Code, w.Body, body)
					}
					for k, v := range map[string]string{"Allow": "POST, OPTIONS", "Content-Type": "application/json", "Content-Length": strconv.Itoa(len(body))} {
						if got := w.Header().Get(k); got != v {
							t.Errorf("OPTIONS %s: %s %q, want %q", path, k, got, v)
						}
					}
				})
			}
		}
	}
}
