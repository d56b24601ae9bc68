// Command baseline is what the harness in bench/ compares Remuda with: a
// plain net/http server in one process, answering the demo app's routes
// with the same responses, header for header — no master, no workers, no
// middleware, no hardening.
//
//	go run ./bench/baseline -addr 127.0.0.1:8001
//	GET /healthz   200 "ok"
//	GET /hello/    {"message":"Hello, World!"}, unauthenticated
//
// "The same response" includes the headers Remuda's prod adds to every
// response: X-Content-Type-Options, X-Frame-Options, Referrer-Policy, and
// an X-Request-ID of 16 random hex digits. With them the client (wrk, on
// the same machine) reads the same bytes from both servers, so the ratio
// measures the servers, not the length of their answers; without them
// the baseline's answers are half as long and wrk, competing for the same
// two cores, spends less on each. /hello/ has no JWT check here: what the
// check costs is measured on Remuda itself, /hello/ against /healthz on
// the same server.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"log"
	"math/rand/v2"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "address to listen on (host:port)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /hello/", hello)
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// headers sets the headers Remuda's prod sets on every response.
func headers(h http.Header) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	h["X-Request-Id"] = []string{hex.EncodeToString(b[:])}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["X-Frame-Options"] = []string{"DENY"}
	h["Referrer-Policy"] = []string{"same-origin"}
}

// healthz is cmd/server's healthz, byte for byte.
func healthz(w http.ResponseWriter, _ *http.Request) {
	headers(w.Header())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

var helloBody = []byte(`{"message":"Hello, World!"}` + "\n")

// hello is cmd/server's hello without its Required.
func hello(w http.ResponseWriter, _ *http.Request) {
	headers(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Write(helloBody)
}
