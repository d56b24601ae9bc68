package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remuda/remuda/auth"
)

// TestDifferentialDRFStrict sends simplejwt (the tutorial under gunicorn)
// and Remuda the inputs where simplejwt and DRF are strict, and wants the
// same answers: request bodies with data after the JSON value, invalid
// UTF-8 or null characters; tokens whose JSON has data after it or
// invalid UTF-8; Authorization headers that are repeated or whose scheme
// is followed by a non-ASCII space.
func TestDifferentialDRFStrict(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds; go test without -short runs it")
	}
	if why := drfMissing(); why != "" {
		t.Skipf("%s; install with: %s", why, aptDRF)
	}
	drfURL, _ := startDRF(t, t.TempDir())
	s := startSite(t, t.TempDir())
	if _, err := auth.CreateUser(t.Context(), s.store(t), "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	d := &differ{t: t, drf: &peer{name: "simplejwt", url: drfURL, saved: map[string]string{}}, rem: &peer{name: "Remuda", url: s.url, saved: map[string]string{}}}
	raw := func(body string) func(*peer) reply {
		return func(p *peer) reply { return postJSON(t, p.url+"/api/token/", body) }
	}

	// Bodies.
	d.same("obtain, a brace after the object", exact, raw(`{"username":"alice","password":"x"}}`))
	d.same("obtain, a bracket after the object", exact, raw(`{"username":"alice","password":"x"}]`))
	d.same("obtain, a word after the object", exact, raw(`{"username":"alice","password":"x"} x`))
	d.same("obtain, a brace on line 3", exact, raw("{\"username\":\"alice\",\n\"password\":\"x\"}\n}"))
	d.same("obtain, a brace after non-ASCII text", exact, raw(`{"username":"ålice","password":"x"}}`))
	d.same("obtain, two objects", exact, raw(`{"username":"alice"}{"password":"x"}`))
	d.same("obtain, white space only", exact, raw("  \n  "))
	d.same("obtain, a byte order mark", exact, raw("\ufeff{\"username\":\"alice\",\"password\":\"x\"}"))
	d.same("obtain, an invalid start byte", exact, raw("{\"username\":\"al\xffice\",\"password\":\"x\"}"))
	d.same("obtain, a surrogate in UTF-8", exact, raw("{\"username\":\"al\xed\xa0\x80ice\",\"password\":\"x\"}"))
	d.same("obtain, three bytes of four", exact, raw("{\"username\":\"al\xf0\x9f\x98ice\",\"password\":\"x\"}"))
	d.same("obtain, an incomplete sequence at the end", exact, raw("{\"username\":\"alice\",\"password\":\"x\"}\xe2\x82"))
	d.same("obtain, a null character in the username", exact, raw(`{"username":"al\u0000ice","password":"x"}`))
	d.same("obtain, a null character in the password", exact, raw(`{"username":"alice","password":"x\u0000"}`))
	d.same("refresh, a null character", exact, d.post("/api/token/refresh/", `{"refresh":"a.b\u0000c"}`))
	d.same("verify, a null character", exact, d.post("/api/token/verify/", `{"token":"a.b\u0000c"}`))
	d.same("blacklist, a null character", exact, d.post("/api/token/blacklist/", `{"refresh":"a.b\u0000c"}`))
	// simplejwt's username field has no max_length: a longer name is
	// looked up, and not found (401). Remuda refuses it before any work
	// (Django's User.username max_length), and a password over 1024 bytes.
	d.deviates("obtain, a username of 151 characters", "the username is capped before any work",
		raw(jsonBody("username", strings.Repeat("a", 151), "password", "x")),
		`401 {"detail":"No active account found with the given credentials"} WWW-Authenticate=Bearer realm="api"`,
		`400 {"username":["Ensure this field has no more than 150 characters."]}`)
	d.deviates("obtain, a password of 1025 bytes", "the password is capped before any hashing",
		raw(jsonBody("username", "alice", "password", strings.Repeat("p", 1025))),
		`401 {"detail":"No active account found with the given credentials"} WWW-Authenticate=Bearer realm="api"`,
		`400 {"password":["Ensure this field has no more than 1024 bytes."]}`)

	// Tokens whose JSON PyJWT's json.loads refuses.
	now := time.Now().Unix()
	payload := fmt.Sprintf(`{"token_type":"access","exp":%d,"iat":%d,"jti":"0f8fad5bd9cb469fa16570867728950e","user_id":"1"}`, now+300, now)
	header := `{"alg":"HS256","typ":"JWT"}`
	d.same("/hello/ with a token that is good", exact, d.hello(bearer(signRaw(header, payload))...))
	for name, tok := range map[string]string{
		"a brace after the payload":    signRaw(header, payload+"}"),
		"an object after the payload":  signRaw(header, payload+`{"user_id":"2"}`),
		"invalid UTF-8 in the payload": signRaw(header, strings.TrimSuffix(payload, "}")+",\"name\":\"\xff\"}"),
		"a brace after the header":     signRaw(header+"}", payload),
		"invalid UTF-8 in the header":  signRaw("{\"alg\":\"HS256\",\"typ\":\"JW\xffT\"}", payload),
	} {
		d.same("/hello/ with a token with "+name, invalid, d.hello(bearer(tok)...))
		d.same("verify a token with "+name, invalid, d.post("/api/token/verify/", jsonBody("token", tok)))
	}

	// Authorization headers.
	d.login("alice", "correct horse")
	headers := func(values ...string) func(*peer) reply {
		return func(p *peer) reply {
			vs := make([]string, len(values))
			for i, v := range values {
				vs[i] = strings.ReplaceAll(v, "<access>", p.access)
			}
			return getWith(t, p.url+"/hello/", vs)
		}
	}
	d.same("/hello/ with two headers of the token", exact, headers("Bearer <access>", "Bearer <access>"))
	d.same("/hello/ with the token, then another scheme", exact, headers("Bearer <access>", "Basic x"))
	// gunicorn joins the two into "Basic x,Bearer <token>": a scheme
	// simplejwt ignores. Remuda refuses any second header alike.
	d.deviates("/hello/ with another scheme, then the token", "two headers are refused whatever their order",
		headers("Basic x", "Bearer <access>"),
		`401 {"detail":"Authentication credentials were not provided."} WWW-Authenticate=Bearer realm="api"`,
		`401 {"code":"bad_authorization_header","detail":"Authorization header must contain two space-delimited values"} WWW-Authenticate=Bearer realm="api"`)
	for _, space := range []string{"\u00a0", "\u2003", "\u3000", "\u2028"} {
		d.same(fmt.Sprintf("/hello/ with Bearer%+q<token>", space), exact, headers("Bearer"+space+"<access>"))
	}
	d.same("/hello/ with Bearer, a space and U+00A0 before the token", invalid, headers("Bearer \u00a0<access>"))
	d.same("/hello/ with a tab", exact, headers("Bearer\t<access>"))

	t.Logf("%d steps: %d answered alike, %d alike but for simplejwt 5.2.2's \"Token is invalid or expired\", %d intended deviations, %d mismatches",
		d.steps, d.exact, d.worded, d.intended, d.steps-d.exact-d.worded-d.intended)
}

// signRaw signs a header and a payload, as given, with HMAC-SHA256 under
// the test servers' key.
func signRaw(header, payload string) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// getWith requests url with one Authorization header per value.
func getWith(t *testing.T, url string, authorization []string) reply {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range authorization {
		req.Header.Add("Authorization", v)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}
