package server

import (
	"crypto/tls"
	"fmt"
)

// tlsConfig loads --certfile and --keyfile: TLS 1.2 and up with Go's
// default cipher suites (secure, with forward secrecy), HTTP/2 offered.
// nil without them.
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certfile %s, keyfile %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}
