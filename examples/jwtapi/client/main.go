// Command client walks the token flow against a running jwtapi:
// obtain a pair, call /hello/, refresh, call /hello/ again.
//
//	echo "$PASSWORD" | go run ./examples/jwtapi/client -username alice
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8000", "the server")
	username := flag.String("username", "", "who logs in (the password is read from stdin)")
	flag.Parse()
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	password := strings.TrimRight(line, "\r\n")

	var pair struct{ Access, Refresh string }
	post(*base+"/api/token/", map[string]string{"username": *username, "password": password}, &pair)
	fmt.Println("obtained a token pair")
	fmt.Println("GET /hello/ ->", hello(*base, pair.Access))

	var refreshed struct{ Access, Refresh string }
	post(*base+"/api/token/refresh/", map[string]string{"refresh": pair.Refresh}, &refreshed)
	fmt.Println("refreshed: new access token, and a new refresh token (rotation)")
	fmt.Println("GET /hello/ ->", hello(*base, refreshed.Access))
}

// post sends body as JSON and decodes a 200 answer into out.
func post(url string, body any, out any) {
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("POST %s: %s %s", url, resp.Status, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		log.Fatal(err)
	}
}

// hello calls the protected route with an access token.
func hello(base, access string) string {
	req, _ := http.NewRequest("GET", base+"/hello/", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%s %s", resp.Status, bytes.TrimSpace(data))
}
