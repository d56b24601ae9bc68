package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
	"github.com/remuda/remuda/internal/proctest"
)

// The test binary runs this package's main when envMain is set: the tests
// drive the real default binary, master and workers.
const envMain = "REMUDA_TEST_MAIN"

// secret is the key the test servers sign with.
const secret = "remuda-test-secret-key-0123456789-abcdefghij"

func TestMain(m *testing.M) {
	if os.Getenv(envMain) != "" {
		main()
		return
	}
	if os.Getenv(envHandoverApp) != "" {
		handoverApp()
		return
	}
	if os.Getenv(envHooksApp) != "" {
		hooksApp()
		return
	}
	os.Exit(proctest.Run(m))
}

// site is the default binary serving in prod, with its database.
type site struct {
	p   *proctest.Proc
	url string
	db  string // path of the SQLite file
}

// startSite starts the binary in prod with 4 workers on the database in
// dir, which the master creates if it does not exist.
func startSite(t *testing.T, dir string, flags ...string) *site {
	t.Helper()
	addr := proctest.FreeAddr(t)
	db := filepath.Join(dir, "server.db")
	args := append([]string{"run", "--prod", "--workers", "4", "--bind", addr, "--database", "sqlite:" + db, "--access-log", "-"}, flags...)
	p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY=" + secret}, args...)
	p.WaitReady(t, 1)
	return &site{p: p, url: "http://" + addr, db: db}
}

// store opens the site's database as the test's own client of it.
func (s *site) store(t *testing.T) auth.Store {
	t.Helper()
	st, err := auth.OpenSQLite(s.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func addUser(t *testing.T, st auth.Store, name, password string, active bool) auth.User {
	t.Helper()
	u, err := auth.CreateUser(context.Background(), st, name, password)
	if err != nil {
		t.Fatal(err)
	}
	if !active {
		if err := st.SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   string
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends one request on a fresh connection, so that requests spread
// over the workers.
func do(t *testing.T, method, url, ctype, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func postJSON(t *testing.T, url, body string) reply {
	t.Helper()
	return do(t, "POST", url, "application/json", body)
}

func jsonBody(kv ...string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// login obtains a pair.
func login(t *testing.T, s *site, user, password string) (access, refresh string) {
	t.Helper()
	r := postJSON(t, s.url+"/api/token/", jsonBody("username", user, "password", password))
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	m := r.json(t)
	return m["access"].(string), m["refresh"].(string)
}

// eventually repeats a request until it is answered status, for at most
// the user cache's lifetime and a second: a worker that served the user
// may believe its cached record that long (auth.DefaultUserCacheTTL). It
// returns the last reply.
func eventually(t *testing.T, request func() reply, status int) reply {
	t.Helper()
	deadline := time.Now().Add(auth.DefaultUserCacheTTL + time.Second)
	for {
		r := request()
		if r.status == status || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// want checks status and exact JSON body, and the Bearer challenge on 401s.
func want(t *testing.T, what string, r reply, status int, body string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (body %s)", what, r.status, status, r.body)
	}
	if mustCompact(r.body) != mustCompact(body) {
		t.Errorf("%s: body %s, want %s", what, r.body, body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	if status == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="api"` {
		t.Errorf("%s: WWW-Authenticate %q, want Bearer realm=\"api\"", what, r.header.Get("WWW-Authenticate"))
	}
}

// mustCompact re-encodes a JSON text with sorted keys, for comparison.
func mustCompact(s string) string {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// forge signs claims with HMAC-SHA256 under key: an implementation of its
// own, independent of golang-jwt.
func forge(key string, header, claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// claims are well-formed access-token claims for userID, expiring in ttl.
func claims(typ, userID string, ttl time.Duration) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"token_type": typ, "exp": now + int64(ttl/time.Second), "iat": now, "jti": fmt.Sprintf("%032x", time.Now().UnixNano()), "user_id": userID}
}

var hs256 = map[string]any{"alg": "HS256", "typ": "JWT"}

const (
	noCredentials = `{"detail":"Authentication credentials were not provided."}`
	badHeader     = `{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}`
	badLogin      = `{"detail":"No active account found with the given credentials"}`
)

func notValid(msg string) string {
	return `{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"` + msg + `"}]}`
}

func tokenNotValid(msg string) string {
	return `{"detail":"` + msg + `","code":"token_not_valid"}`
}

func TestAuthContract(t *testing.T) {
	s := startSite(t, t.TempDir())
	st := s.store(t)
	alice := addUser(t, st, "alice", "correct horse", true)
	addUser(t, st, "carol", "correct horse", false)
	access, refresh := login(t, s, "alice", "correct horse")

	t.Run("obtain", func(t *testing.T) {
		r := postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
		if r.status != 200 || !strings.HasPrefix(r.body, `{"refresh":"`) || !strings.Contains(r.body, `","access":"`) {
			t.Errorf("obtain: %d %s, want 200 {\"refresh\",\"access\"} in that order", r.status, r.body)
		}
		if len(r.json(t)) != 2 {
			t.Errorf("obtain body has members %v, want refresh and access only", r.json(t))
		}
	})
	t.Run("obtain without trailing slash", func(t *testing.T) {
		if r := postJSON(t, s.url+"/api/token", jsonBody("username", "alice", "password", "correct horse")); r.status != 200 {
			t.Errorf("POST /api/token: %d %s", r.status, r.body)
		}
	})
	t.Run("obtain form and multipart", func(t *testing.T) {
		form := url.Values{"username": {"alice"}, "password": {"correct horse"}}.Encode()
		if r := do(t, "POST", s.url+"/api/token/", "application/x-www-form-urlencoded", form); r.status != 200 {
			t.Errorf("form body: %d %s", r.status, r.body)
		}
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		mw.WriteField("username", "alice")
		mw.WriteField("password", "correct horse")
		mw.Close()
		if r := do(t, "POST", s.url+"/api/token/", mw.FormDataContentType(), b.String()); r.status != 200 {
			t.Errorf("multipart body: %d %s", r.status, r.body)
		}
	})
	t.Run("bad credentials look the same", func(t *testing.T) {
		for _, c := range []struct{ what, user, pw string }{
			{"wrong password", "alice", "wrong horse"},
			{"unknown user", "nobody", "correct horse"},
			{"inactive user", "carol", "correct horse"},
		} {
			want(t, c.what, postJSON(t, s.url+"/api/token/", jsonBody("username", c.user, "password", c.pw)), 401, badLogin)
		}
	})
	t.Run("field errors", func(t *testing.T) {
		for _, c := range []struct{ what, body, want string }{
			{"empty object", `{}`, `{"username":["This field is required."],"password":["This field is required."]}`},
			{"only username", `{"username":"alice"}`, `{"password":["This field is required."]}`},
			{"only password", `{"password":"x"}`, `{"username":["This field is required."]}`},
			{"blank", `{"username":"","password":"x"}`, `{"username":["This field may not be blank."]}`},
			{"null", `{"username":null,"password":"x"}`, `{"username":["This field may not be null."]}`},
			{"a list", `[1,2]`, `{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}`},
		} {
			want(t, c.what, postJSON(t, s.url+"/api/token/", c.body), 400, c.want)
		}
		r := postJSON(t, s.url+"/api/token/", `{"username": "alice",`)
		if r.status != 400 || !strings.Contains(r.json(t)["detail"].(string), "JSON parse error") {
			t.Errorf("malformed JSON: %d %s, want 400 JSON parse error", r.status, r.body)
		}
		for _, path := range []string{"refresh/", "verify/", "blacklist/"} {
			field := map[string]string{"refresh/": "refresh", "verify/": "token", "blacklist/": "refresh"}[path]
			want(t, "empty "+path, postJSON(t, s.url+"/api/token/"+path, `{}`), 400, `{"`+field+`":["This field is required."]}`)
		}
	})
	t.Run("methods and media types", func(t *testing.T) {
		want(t, "GET /api/token/", do(t, "GET", s.url+"/api/token/", "", ""), 405, `{"detail":"Method \"GET\" not allowed."}`)
		if r := do(t, "POST", s.url+"/api/token/", "text/plain", "username=alice"); r.status != 415 {
			t.Errorf("text/plain body: %d %s, want 415", r.status, r.body)
		}
	})
	t.Run("5 MiB body is refused unread", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /api/token/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"username\":\"", 5<<20)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("5 MiB announced, 16 bytes sent: %v, want a 413 at once", err)
		}
		if resp.StatusCode != 413 {
			t.Errorf("5 MiB body: %d, want 413", resp.StatusCode)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		_, r1 := login(t, s, "alice", "correct horse")
		r := postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1))
		if r.status != 200 || !strings.HasPrefix(r.body, `{"access":"`) || len(r.json(t)) != 2 {
			t.Errorf("refresh: %d %s, want 200 {\"access\",\"refresh\"}", r.status, r.body)
		}
		want(t, "refresh with garbage", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", "not.a.token")), 401, tokenNotValid("Token is invalid"))
		want(t, "refresh with an access token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", access)), 401, tokenNotValid("Token has wrong type"))
		expired := forge(secret, hs256, claims("refresh", alice.ID, -time.Minute))
		want(t, "refresh with an expired token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", expired)), 401, tokenNotValid("Token is expired"))
		want(t, "refresh with a spent token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1)), 401, tokenNotValid("Token is blacklisted"))
		ghost := forge(secret, hs256, claims("refresh", "999999", time.Hour))
		want(t, "refresh for no user", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", ghost)), 401, `{"detail":"No active account found for the given token."}`)
	})
	t.Run("verify", func(t *testing.T) {
		want(t, "verify access", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", access)), 200, `{}`)
		want(t, "verify refresh", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", refresh)), 200, `{}`)
		want(t, "verify garbage", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", "x.y.z")), 401, tokenNotValid("Token is invalid"))
	})
	t.Run("blacklist", func(t *testing.T) {
		_, r1 := login(t, s, "alice", "correct horse")
		want(t, "blacklist", postJSON(t, s.url+"/api/token/blacklist/", jsonBody("refresh", r1)), 200, `{}`)
		want(t, "blacklist again", postJSON(t, s.url+"/api/token/blacklist/", jsonBody("refresh", r1)), 401, tokenNotValid("Token is blacklisted"))
		want(t, "verify a blacklisted token", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", r1)), 401, tokenNotValid("Token is blacklisted"))
		want(t, "refresh a blacklisted token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1)), 401, tokenNotValid("Token is blacklisted"))
		want(t, "blacklist an access token", postJSON(t, s.url+"/api/token/blacklist/", jsonBody("refresh", access)), 401, tokenNotValid("Token has wrong type"))
	})
	t.Run("protected route", func(t *testing.T) {
		hello := s.url + "/hello/"
		want(t, "with a token", do(t, "GET", hello, "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
		want(t, "no header", do(t, "GET", hello, "", ""), 401, noCredentials)
		want(t, "another scheme", do(t, "GET", hello, "", "", "Authorization", "Wrong "+access), 401, noCredentials)
		want(t, "Bearer alone", do(t, "GET", hello, "", "", "Authorization", "Bearer"), 401, badHeader)
		want(t, "three parts", do(t, "GET", hello, "", "", "Authorization", "Bearer a b"), 401, badHeader)
		expired := forge(secret, hs256, claims("access", alice.ID, -time.Minute))
		want(t, "expired", do(t, "GET", hello, "", "", bearer(expired)...), 401, notValid("Token is expired"))
		want(t, "a refresh token", do(t, "GET", hello, "", "", bearer(refresh)...), 401, notValid("Token has wrong type"))
		ghost := forge(secret, hs256, claims("access", "999999", time.Hour))
		want(t, "no such user", do(t, "GET", hello, "", "", bearer(ghost)...), 401, `{"detail":"User not found","code":"user_not_found"}`)
		carol, _ := st.UserByUsername(context.Background(), "carol")
		inactive := forge(secret, hs256, claims("access", carol.ID, time.Hour))
		want(t, "inactive user", do(t, "GET", hello, "", "", bearer(inactive)...), 401, `{"detail":"User is inactive","code":"user_inactive"}`)
	})
	t.Run("refused tokens", func(t *testing.T) {
		valid := claims("access", alice.ID, time.Hour)
		parts := strings.Split(forge(secret, hs256, valid), ".")
		noExp := claims("access", alice.ID, time.Hour)
		delete(noExp, "exp")
		tampered := claims("access", "1", time.Hour)
		tamperedPayload := strings.Split(forge(secret, hs256, tampered), ".")[1]
		for _, c := range []struct{ what, token string }{
			{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."},
			{"alg None", strings.Join([]string{b64(`{"alg":"None","typ":"JWT"}`), parts[1], ""}, ".")},
			{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2]},
			{"wrong key", forge("another-secret-key-of-enough-length-123456", hs256, valid)},

			{"HS512", forgeHS512(secret, valid)},
			{"not.a.token", "not.a.token"},
			// Within the 8190-byte field line of --limit-request-field-size:
			// a longer Authorization gets 431 before the app.
			{"7 kB token", parts[0] + "." + strings.Repeat("A", 7<<10) + "." + parts[2]},
		} {
			want(t, c.what, do(t, "GET", s.url+"/hello/", "", "", bearer(c.token)...), 401, notValid("Token is invalid"))
		}
		want(t, "no exp", do(t, "GET", s.url+"/hello/", "", "", bearer(forge(secret, hs256, noExp))...), 401, notValid("Token has no 'exp' claim"))
		dots := strings.Repeat(".", 1<<20)
		want(t, "1 MiB of dots", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", dots)), 401, tokenNotValid("Token is invalid"))
	})
	t.Run("interop with an independent HS256", func(t *testing.T) {
		theirs := forge(secret, hs256, claims("access", alice.ID, time.Hour))
		want(t, "their token at /hello/", do(t, "GET", s.url+"/hello/", "", "", bearer(theirs)...), 200, `{"message":"Hello, World!"}`)
		p := strings.Split(access, ".")
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(p[0] + "." + p[1]))
		if got := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); got != p[2] {
			t.Errorf("our access token's signature %s, their HMAC-SHA256 %s", p[2], got)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(p[1])
		if !strings.HasPrefix(string(payload), `{"token_type":"access","exp":`) {
			t.Errorf("payload %s, want simplejwt's claim order", payload)
		}
	})
	t.Run("lifetimes and claims", func(t *testing.T) {
		for _, c := range []struct {
			token, typ string
			life       int64
		}{{access, "access", 300}, {refresh, "refresh", 86400}} {
			var cl struct {
				TokenType string `json:"token_type"`
				Exp, Iat  int64
				JTI       string `json:"jti"`
				UserID    string `json:"user_id"`
			}
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(c.token, ".")[1])
			if err := json.Unmarshal(payload, &cl); err != nil {
				t.Fatal(err)
			}
			if cl.TokenType != c.typ || cl.Exp-cl.Iat != c.life || len(cl.JTI) != 32 || cl.UserID != alice.ID {
				t.Errorf("%s token claims %s: want token_type %s, exp = iat + %d, a 32-hex jti, user_id %q", c.typ, payload, c.typ, c.life, alice.ID)
			}
		}
		u, _ := st.UserByID(context.Background(), alice.ID)
		if u.LastLogin.IsZero() || time.Since(u.LastLogin) > time.Minute {
			t.Errorf("last_login %v after a login, want about now", u.LastLogin)
		}
	})
	t.Run("end to end", func(t *testing.T) {
		_, r1 := login(t, s, "alice", "correct horse")
		fresh := postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1)).json(t)["access"].(string)
		want(t, "refreshed access at /hello/", do(t, "GET", s.url+"/hello/", "", "", bearer(fresh)...), 200, `{"message":"Hello, World!"}`)
		other := claims("sliding", alice.ID, time.Hour)
		want(t, "verify a token of another type", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", forge(secret, hs256, other))), 200, `{}`)
	})
	t.Run("jwks", func(t *testing.T) {
		r := do(t, "GET", s.url+"/.well-known/jwks.json", "", "")
		if r.status != 200 || mustCompact(r.body) != `{"keys":[]}` {
			t.Errorf("JWKS with HS256: %d %s, want {\"keys\":[]}", r.status, r.body)
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func forgeHS512(key string, c map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "HS512", "typ": "JWT"})
	p, _ := json.Marshal(c)
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	mac := hmac.New(sha512.New, []byte(key))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestRotationIsAtomicAndReuseRevokesFamily(t *testing.T) {
	s := startSite(t, t.TempDir())
	addUser(t, s.store(t), "alice", "correct horse", true)
	_, refresh := login(t, s, "alice", "correct horse")

	const n = 8
	var wg sync.WaitGroup
	replies := make([]reply, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh))
		})
	}
	close(start)
	wg.Wait()
	var winners []reply
	for _, r := range replies {
		switch r.status {
		case 200:
			winners = append(winners, r)
		case 401:
		default:
			t.Errorf("concurrent refresh: %d %s", r.status, r.body)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d concurrent refreshes of one token: %d answered 200, want exactly 1", n, len(winners))
	}
	newest := winners[0].json(t)["refresh"].(string)
	// The losers were replays: the family is revoked, the winner's token too.
	want(t, "the spent token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401, tokenNotValid("Token is blacklisted"))
	want(t, "the newest token of the family", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", newest)), 401, tokenNotValid("Token is blacklisted"))
	s.p.WaitFor(t, 2*time.Second, 1, "reuse warning", proctest.Msg("refresh token reused: family revoked"))
}

func TestRotationReplayRevokesFamily(t *testing.T) {
	s := startSite(t, t.TempDir())
	addUser(t, s.store(t), "alice", "correct horse", true)
	_, r1 := login(t, s, "alice", "correct horse")
	r := postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1))
	r2 := r.json(t)["refresh"].(string)
	r = postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r2))
	r3 := r.json(t)["refresh"].(string)
	// A thief replays r1: refused, and the whole family with it.
	want(t, "replayed r1", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r1)), 401, tokenNotValid("Token is blacklisted"))
	want(t, "r3 after the replay", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r3)), 401, tokenNotValid("Token is blacklisted"))
	want(t, "verify r3", postJSON(t, s.url+"/api/token/verify/", jsonBody("token", r3)), 401, tokenNotValid("Token is blacklisted"))
}

func TestBlacklistHoldsAcrossWorkersAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := startSite(t, dir)
	addUser(t, s.store(t), "alice", "correct horse", true)
	_, refresh := login(t, s, "alice", "correct horse")
	want(t, "blacklist", postJSON(t, s.url+"/api/token/blacklist/", jsonBody("refresh", refresh)), 200, `{}`)
	pids := map[int]bool{}
	for i := range 12 {
		want(t, fmt.Sprintf("refresh on connection %d", i+1), postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401, tokenNotValid("Token is blacklisted"))
	}
	for _, l := range s.p.Find(func(l proctest.Line) bool { return l.Msg() == "request" && l.Fields["path"] == "/api/token/refresh/" }) {
		pids[l.Int("pid")] = true
	}
	if len(pids) < 2 {
		t.Errorf("12 refreshes were served by %d workers, want several", len(pids))
	}
	t.Logf("12 refreshes of a blacklisted token, all 401, served by %d workers", len(pids))

	s.p.Signal(t, syscall.SIGTERM)
	s.p.Wait(t, 10*time.Second)
	s = startSite(t, dir)
	want(t, "after a restart", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401, tokenNotValid("Token is blacklisted"))
}

func TestDeactivatedUserIsLockedOut(t *testing.T) {
	s := startSite(t, t.TempDir())
	st := s.store(t)
	u := addUser(t, st, "alice", "correct horse", true)
	access, refresh := login(t, s, "alice", "correct horse")
	want(t, "before", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	if err := st.SetActive(context.Background(), u.ID, false); err != nil {
		t.Fatal(err)
	}
	want(t, "protected route", eventually(t, func() reply { return do(t, "GET", s.url+"/hello/", "", "", bearer(access)...) }, 401),
		401, `{"detail":"User is inactive","code":"user_inactive"}`)
	want(t, "refresh", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401, `{"detail":"No active account found for the given token."}`)
}

func TestLoginThrottleAcrossWorkers(t *testing.T) {
	s := startSite(t, t.TempDir())
	addUser(t, s.store(t), "alice", "correct horse", true)
	for i := range 5 {
		want(t, fmt.Sprintf("failure %d", i+1), postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "nope")), 401, badLogin)
	}
	pids := map[int]bool{}
	for _, l := range s.p.Find(func(l proctest.Line) bool { return l.Msg() == "request" && l.Fields["path"] == "/api/token/" }) {
		pids[l.Int("pid")] = true
	}
	t.Logf("5 failed logins served by %d workers", len(pids))
	if len(pids) < 2 {
		t.Errorf("5 failed logins served by %d workers, want several: the count must be shared", len(pids))
	}
	r := postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse"))
	if r.status != 429 {
		t.Fatalf("6th login: %d %s, want 429", r.status, r.body)
	}
	after := r.header.Get("Retry-After")
	var secs int
	fmt.Sscan(after, &secs)
	if secs < 890 || secs > 901 {
		t.Errorf("Retry-After %q, want about 900 seconds", after)
	}
	want(t, "throttled body", r, 429, fmt.Sprintf(`{"detail":"Request was throttled. Expected available in %d seconds."}`, secs))
	// Another username from the same address is not throttled.
	want(t, "another user", postJSON(t, s.url+"/api/token/", jsonBody("username", "bob", "password", "x")), 401, badLogin)
}

// TestLoginTimingDoesNotTellUsersApart checks that a wrong password, an
// unknown user and an inactive user cost the same to refuse, so that timing
// does not tell which usernames exist. Each login is measured twice: the
// server's own time (the access log's duration, found by request id) and
// the CPU time its worker spent meanwhile (/proc's schedstat), which a
// busy machine does not stretch. The three kinds are sent back to back,
// each taking each place in the triple as often, and compared within each
// triple: load from other processes then slows a whole triple, not one
// kind.
func TestLoginTimingDoesNotTellUsersApart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	// One worker: every login meets the same heap and runtime, and its
	// CPU time is the worker's.
	s := startSite(t, t.TempDir(), "--workers", "1")
	worker := s.p.Find(proctest.Msg("worker started"))[0].Int("worker_pid")
	st := s.store(t)
	const users, tries = 8, 4 // 4 tries per user stay under the throttle; 32 triples, so that a busy machine moves the medians little
	for i := range users {
		addUser(t, st, fmt.Sprintf("active%d", i), "correct horse", true)
		addUser(t, st, fmt.Sprintf("inactive%d", i), "correct horse", false)
	}
	kinds := []string{"wrong password", "unknown user", "inactive user"}
	var served, cpu [][]time.Duration // per triple, per kind
	for try := range tries {
		for i := range users {
			logins := []struct{ user, pw string }{
				{fmt.Sprintf("active%d", i), "wrong horse"},
				{fmt.Sprintf("ghost%d-%d", i, try), "correct horse"},
				{fmt.Sprintf("inactive%d", i), "correct horse"},
			}
			// What a place costs (the first after a pause, say) is not
			// blamed on a kind.
			tServed, tCPU := make([]time.Duration, len(logins)), make([]time.Duration, len(logins))
			for n := range logins {
				k := (n + try + i) % len(logins)
				c := logins[k]
				before := cpuTime(t, worker)
				r := postJSON(t, s.url+"/api/token/", jsonBody("username", c.user, "password", c.pw))
				want(t, c.user, r, 401, badLogin)
				tServed[k] = s.served(t, r)
				tCPU[k] = cpuTime(t, worker) - before
			}
			served, cpu = append(served, tServed), append(cpu, tCPU)
		}
	}
	// The work: what would tell kinds apart on a quiet machine, whatever
	// the load on this one.
	report, spread, cpuMedian := compareKinds(kinds, cpu)
	t.Logf("worker CPU time over %d triples: %v", len(cpu), report)
	if spread > 1.1 {
		t.Errorf("login CPU time differs by more than 10%% between kinds: %v", report)
	}
	// The time a client sees also holds waits (the store, a lock) that
	// CPU time misses; it is compared unless the machine ran the worker
	// less than a third of the time, when the run queue drowns any
	// difference.
	report, spread, servedMedian := compareKinds(kinds, served)
	t.Logf("server time over %d triples: %v", len(served), report)
	switch {
	case servedMedian > 3*cpuMedian:
		t.Logf("server time not compared: its median %v is over 3× the CPU time's %v: the worker waited for a CPU most of the time", servedMedian, cpuMedian)
	case spread > 1.2:
		t.Errorf("login server time differs by more than 20%% between kinds: %v", report)
	}
}

// compareKinds gives each kind's median ratio to its triple's mean, the
// highest of those medians over the lowest, and the median of all times.
func compareKinds(kinds []string, triples [][]time.Duration) (report map[string]string, spread float64, all time.Duration) {
	report = map[string]string{}
	lo, hi := math.Inf(1), 0.0
	var every []time.Duration
	for k, kind := range kinds {
		var ratios []float64
		var times []time.Duration
		for _, tr := range triples {
			var sum time.Duration
			for _, d := range tr {
				sum += d
			}
			ratios = append(ratios, float64(tr[k])*float64(len(tr))/float64(sum))
			times = append(times, tr[k])
		}
		m := medianOf(ratios)
		lo, hi = min(lo, m), max(hi, m)
		report[kind] = fmt.Sprintf("%.2f of its triple (median %v)", m, median(times))
		every = append(every, times...)
	}
	return report, hi / lo, median(every)
}

// cpuTime is the CPU time the threads of process pid have spent so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(stats) == 0 {
		t.Fatalf("schedstat of %d: %v", pid, err)
	}
	var total time.Duration
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just exited
		}
		var ns int64
		fmt.Sscan(string(b), &ns)
		total += time.Duration(ns)
	}
	return total
}

// served is how long the server took to answer r, from its access-log
// line.
func (s *site) served(t *testing.T, r reply) time.Duration {
	t.Helper()
	id := r.header.Get("X-Request-ID")
	line := s.p.WaitFor(t, 5*time.Second, 1, "the access-log line of request "+id, func(l proctest.Line) bool {
		return l.Msg() == "request" && l.Fields["request_id"] == id
	})[0]
	secs, _ := line.Fields["duration"].(float64)
	return time.Duration(secs * float64(time.Second))
}

func medianOf(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func TestSecretsStayOut(t *testing.T) {
	s := startSite(t, t.TempDir(), "--log-level", "debug")
	const password = "zebra-quartz-password-7"
	addUser(t, s.store(t), "alice", password, true)
	var tokens []string
	for range 3 {
		a, r := login(t, s, "alice", password)
		tokens = append(tokens, a, r)
		rr := postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", r))
		tokens = append(tokens, rr.json(t)["refresh"].(string))
	}
	postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", password+"x"))
	s.p.Signal(t, syscall.SIGTERM)
	s.p.Wait(t, 10*time.Second)

	for _, l := range s.p.Lines() {
		if strings.Contains(l.Raw, "zebra-quartz") {
			t.Errorf("a log line holds the password: %s", l.Raw)
		}
		for _, tok := range tokens {
			if strings.Contains(l.Raw, tok) || strings.Contains(l.Raw, strings.Split(tok, ".")[2]) {
				t.Errorf("a log line holds a token: %s", l.Raw)
			}
		}
	}
	files, _ := filepath.Glob(s.db + "*")
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("zebra-quartz")) {
			t.Errorf("%s holds the clear password", f)
		}
		for _, tok := range tokens {
			if bytes.Contains(b, []byte(strings.Split(tok, ".")[2])) || bytes.Contains(b, []byte(tok)) {
				t.Errorf("%s holds a raw token", f)
			}
		}
	}
}

func TestProdNeedsASecretKey(t *testing.T) {
	for _, c := range []struct{ what, key, want string }{
		{"none", "", "SERVER_SECRET_KEY"},
		{"short", "0123456789abcdef", "32"},
		{"placeholder", "django-insecure-0123456789abcdefghijklmnopqrstuvwxyz", "django-insecure"},
	} {
		t.Run(c.what, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "run", "--prod", "--bind", proctest.FreeAddr(t), "--database", "sqlite:"+filepath.Join(t.TempDir(), "db"))
			cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1", "SERVER_SECRET_KEY="+c.key)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("prod with secret key %q: %v, want exit 2\n%s", c.what, err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("error does not mention %q: %s", c.want, out)
			}
			if c.key != "" && strings.Contains(string(out), c.key) {
				t.Errorf("error echoes the key: %s", out)
			}
		})
	}
}

func TestDevMakesASecretKey(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "server.db")
	st, err := auth.OpenSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	addUser(t, st, "alice", "correct horse", true)
	st.Close()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, os.Args[0], []string{envMain + "=1", "SERVER_SECRET_KEY="}, "run", "--bind", addr, "--database", "sqlite:"+db)
	p.WaitFor(t, 10*time.Second, 1, "dev listening", func(l proctest.Line) bool { return strings.Contains(l.Raw, "listening") })
	if got := p.Find(func(l proctest.Line) bool { return strings.Contains(l.Raw, "every token dies with this process") }); len(got) != 1 {
		t.Errorf("no warning about the throwaway key")
	}
	s := &site{p: p, url: "http://" + addr, db: db}
	access, _ := login(t, s, "alice", "correct horse")
	want(t, "dev /hello/", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
}

func TestCreateUserCommand(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "server.db")
	run := func(stdin string, args ...string) (int, string) {
		cmd := exec.Command(os.Args[0], append([]string{"createuser"}, args...)...)
		cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
		cmd.Stdin = strings.NewReader(stdin)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := run("s3cret pass\n", "--username", "bob", "--password-stdin", "--database", db); code != 0 || !strings.Contains(out, `created user "bob"`) {
		t.Fatalf("createuser: exit %d: %s", code, out)
	}
	if code, out := run("s3cret pass\n", "--username", "bob", "--password-stdin", "--database", db); code == 0 || !strings.Contains(out, "exists") {
		t.Errorf("createuser twice: exit %d: %s, want an error saying the user exists", code, out)
	}
	if code, out := run("", "--username", "eve", "--database", db); code != 2 || !strings.Contains(out, "--password-stdin") {
		t.Errorf("createuser without a terminal: exit %d: %s, want 2 and a hint at --password-stdin", code, out)
	}
	st, err := auth.OpenSQLite(strings.TrimPrefix(db, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.UserByUsername(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := auth.CheckPassword("s3cret pass", u.PasswordHash); !ok || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Errorf("bob's hash %q does not verify the password read from stdin", u.PasswordHash)
	}
}

func TestFlushExpiredTokensCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	st, err := auth.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, exp := range []time.Duration{-time.Hour, -time.Minute, time.Hour} {
		st.AddRefresh(ctx, auth.RefreshToken{JTI: fmt.Sprint("jti", i), Family: "f", UserID: "1", ExpiresAt: time.Now().Add(exp)})
	}
	st.Close()
	cmd := exec.Command(os.Args[0], "flushexpiredtokens", "--database", "sqlite:"+path)
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "flushed 2 expired tokens") {
		t.Errorf("flushexpiredtokens: %v %s, want 2 flushed", err, out)
	}
}

func TestRS256(t *testing.T) {
	keys, _ := filepath.Abs("../../auth/testdata/keys")
	s := startSite(t, t.TempDir(), "--jwt-algorithm", "RS256", "--jwt-private-key", filepath.Join(keys, "rsa2048.pem"),
		"--jwt-public-keys", filepath.Join(keys, "rsa2048-old.pub.pem"))
	addUser(t, s.store(t), "alice", "correct horse", true)
	access, _ := login(t, s, "alice", "correct horse")
	want(t, "RS256 access at /hello/", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)

	var jwks struct {
		Keys []struct{ Kty, Kid, Alg, Use, N, E string }
	}
	json.Unmarshal([]byte(do(t, "GET", s.url+"/.well-known/jwks.json", "", "").body), &jwks)
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[0])
	var h struct{ Alg, Kid string }
	json.Unmarshal(header, &h)
	if len(jwks.Keys) != 2 || h.Alg != "RS256" || h.Kid == "" {
		t.Fatalf("JWKS %+v and header %s: want 2 RSA keys and a kid in the header", jwks, header)
	}
	found := false
	for _, k := range jwks.Keys {
		found = found || k.Kid == h.Kid && k.Kty == "RSA" && k.Alg == "RS256" && k.Use == "sig"
	}
	if !found {
		t.Errorf("the token's kid %s is not in the JWKS %+v", h.Kid, jwks)
	}

	// Key confusion: an HS256 token MAC'd with the server's public key.
	pub := publicPEM(t, filepath.Join(keys, "rsa2048.pem"))
	u, _ := s.store(t).UserByUsername(context.Background(), "alice")
	confused := forge(string(pub), map[string]any{"alg": "HS256", "typ": "JWT", "kid": h.Kid}, claims("access", u.ID, time.Hour))
	want(t, "HS256 MAC'd with the RSA public key", do(t, "GET", s.url+"/hello/", "", "", bearer(confused)...), 401, notValid("Token is invalid"))
	noKid := strings.Join([]string{b64(`{"alg":"RS256","typ":"JWT"}`), strings.Split(access, ".")[1], strings.Split(access, ".")[2]}, ".")
	want(t, "RS256 without kid", do(t, "GET", s.url+"/hello/", "", "", bearer(noKid)...), 401, notValid("Token is invalid"))
}

// publicPEM is the PKIX PEM of the public half of the private key in file:
// the bytes a key-confusion attacker would MAC with.
func publicPEM(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.(*rsa.PrivateKey).Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestCreateUserPromptsWithoutEcho types the password at the prompt on a
// real terminal: script(1) runs the command on a pseudo-terminal.
func TestCreateUserPromptsWithoutEcho(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script (Debian package bsdutils): %v", err)
	}
	path := filepath.Join(t.TempDir(), "server.db")
	const password = "typed-at-the-prompt-42"
	cmd := exec.Command(script, "-qec", os.Args[0]+" createuser --username tty --database sqlite:"+path, "/dev/null")
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
	stdin, _ := cmd.StdinPipe()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		time.Sleep(300 * time.Millisecond) // let the prompt turn echo off
		io.WriteString(stdin, password+"\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("createuser at a prompt: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Password (again):") || !strings.Contains(out.String(), `created user "tty"`) {
		t.Errorf("terminal shows %q, want both prompts and the new user", out.String())
	}
	if strings.Contains(out.String(), password) {
		t.Errorf("the password was echoed: %q", out.String())
	}
	st, err := auth.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.UserByUsername(context.Background(), "tty")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := auth.CheckPassword(password, u.PasswordHash); !ok {
		t.Error("the stored hash does not verify the typed password")
	}
}

func TestPasswordChangeRevokesTokens(t *testing.T) {
	dir := t.TempDir()
	s := startSite(t, dir)
	addUser(t, s.store(t), "alice", "correct horse", true)
	access, refresh := login(t, s, "alice", "correct horse")
	want(t, "before", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	time.Sleep(1100 * time.Millisecond) // times are kept to the second

	cmd := exec.Command(os.Args[0], "changepassword", "--username", "alice", "--password-stdin", "--database", "sqlite:"+s.db)
	cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
	cmd.Stdin = strings.NewReader("battery staple\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("changepassword: %v\n%s", err, out)
	}
	want(t, "old access token", eventually(t, func() reply { return do(t, "GET", s.url+"/hello/", "", "", bearer(access)...) }, 401), 401,
		`{"detail":"The user's password has been changed.","code":"password_changed"}`)
	want(t, "old refresh token", postJSON(t, s.url+"/api/token/refresh/", jsonBody("refresh", refresh)), 401,
		`{"detail":"The user's password has been changed."}`)
	want(t, "old password", postJSON(t, s.url+"/api/token/", jsonBody("username", "alice", "password", "correct horse")), 401, badLogin)
	fresh, _ := login(t, s, "alice", "battery staple")
	want(t, "a token after the change", do(t, "GET", s.url+"/hello/", "", "", bearer(fresh)...), 200, `{"message":"Hello, World!"}`)
}

// djangoDump is manage.py dumpdata auth.user for 3 users; alice's hash is
// Django's own test vector for "lètmein" (pbkdf2_sha256, 10000 rounds).
const djangoDump = `[
{"model": "auth.user", "pk": 3, "fields": {"password": "pbkdf2_sha256$10000$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY=", "last_login": null, "is_superuser": false, "username": "alice", "first_name": "", "last_name": "", "email": "", "is_staff": false, "is_active": true, "date_joined": "2025-01-02T03:04:05Z", "groups": [], "user_permissions": []}},
{"model": "auth.user", "pk": 8, "fields": {"password": "pbkdf2_sha256$10000$seasalt$CWWFdHOWwPnki7HvkcqN9iA2T3KLW1cf2uZ5kvArtVY=", "last_login": "2026-11-01T10:00:00Z", "username": "carol", "is_active": false, "date_joined": "2025-01-02T03:04:05Z"}},
{"model": "auth.user", "pk": 9, "fields": {"password": "!unusable", "last_login": null, "username": "dave", "is_active": true, "date_joined": "2025-01-02T03:04:05Z"}}
]`

func TestImportUsersFromDjango(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "server.db")
	dump := filepath.Join(dir, "users.json")
	os.WriteFile(dump, []byte(djangoDump), 0o600)
	importRun := func(file string) (int, string) {
		cmd := exec.Command(os.Args[0], "importusers", "--from-django", file, "--database", "sqlite:"+db)
		cmd.Env = append(append(os.Environ(), proctest.Env()...), envMain+"=1")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := importRun(dump); code != 0 || !strings.Contains(out, "3 created, 0 updated") {
		t.Fatalf("importusers: exit %d: %s", code, out)
	}
	if code, out := importRun(dump); code != 0 || !strings.Contains(out, "0 created, 3 updated") {
		t.Errorf("importusers again: exit %d: %s, want 3 updated", code, out)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(strings.Replace(djangoDump, `"username": "dave"`, `"username": ""`, 1)), 0o600)
	if code, out := importRun(bad); code == 0 || !strings.Contains(out, "record 3 (pk 9)") {
		t.Errorf("importusers of a malformed file: exit %d: %s, want non-zero naming record 3", code, out)
	}

	s := startSite(t, dir)
	st := s.store(t)
	if u, err := st.UserByUsername(context.Background(), "alice"); err != nil || u.ID != "3" {
		t.Fatalf("alice after the import: %+v %v, want id 3", u, err)
	}
	access, _ := login(t, s, "alice", "lètmein")
	want(t, "alice's Django password", do(t, "GET", s.url+"/hello/", "", "", bearer(access)...), 200, `{"message":"Hello, World!"}`)
	if u, _ := st.UserByUsername(context.Background(), "alice"); !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Errorf("alice's hash after a login: %q, want it rehashed to argon2id", u.PasswordHash)
	}
	want(t, "inactive carol", postJSON(t, s.url+"/api/token/", jsonBody("username", "carol", "password", "lètmein")), 401, badLogin)
	// A simplejwt token for Django's user 3 is alice's here too.
	theirs := forge(secret, hs256, claims("access", "3", time.Hour))
	want(t, "a token for Django's user id", do(t, "GET", s.url+"/hello/", "", "", bearer(theirs)...), 200, `{"message":"Hello, World!"}`)
}
