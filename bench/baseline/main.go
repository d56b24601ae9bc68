// Command baseline is what the harness in bench/ compares Remuda with: a
// plain net/http server in one process, answering the demo app's routes
// with the same bodies and Content-Types, and nothing else — no master,
// no workers, no hardening, no request ids, no security headers.
//
//	go run ./bench/baseline -addr 127.0.0.1:8001
//	GET /healthz   200 "ok"
//	GET /hello/    {"message": "Hello, World!"}, unauthenticated
//
// /hello/ has no JWT check here: what the check costs is measured on
// Remuda itself, /hello/ against /healthz on the same server.
package main

import (
	"encoding/json"
	"flag"
	"log"
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

// healthz is cmd/server's healthz, byte for byte.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

// hello is cmd/server's hello without auth.Required.
func hello(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"message": "Hello, World!"})
}
