// Package certs loads the TLS certificates of the stores' listeners and
// connections from PEM files, checking everything at startup: a wrong path,
// a certificate that does not match its key or one outside its validity
// period stops the process with the flag and the file named, instead of
// failing every handshake later. No error quotes a file's contents.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// Server names the files of a TLS listener: its certificate and key, and
// the CA bundle that client certificates must chain to (empty: none asked).
// A zero Server is plain text.
type Server struct {
	CertFile, KeyFile, ClientCAFile string
}

// Enabled reports whether the listener serves TLS.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// Config is the listener's TLS configuration; nil: plain text.
func (s Server) Config(now time.Time) (*tls.Config, error) {
	if !s.Enabled() {
		if s.ClientCAFile != "" {
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key: client certificates are asked for only over TLS")
		}
		return nil, nil
	}
	cert, err := LoadKeyPair("--tls-cert", s.CertFile, "--tls-key", s.KeyFile, now)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		if cfg.ClientCAs, err = LoadPool("--client-ca", s.ClientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadKeyPair reads a certificate and its key, naming the flag and the file
// in every error: which of the two is missing, unreadable, not PEM, or not
// the other's match, and a certificate outside its validity period (every
// handshake would fail on it).
func LoadKeyPair(certFlag, certFile, keyFlag, keyFile string, now time.Time) (tls.Certificate, error) {
	switch {
	case certFile == "":
		return tls.Certificate{}, fmt.Errorf("%s %s is given without %s", keyFlag, keyFile, certFlag)
	case keyFile == "":
		return tls.Certificate{}, fmt.Errorf("%s %s is given without %s", certFlag, certFile, keyFlag)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", certFlag, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", keyFlag, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s %s with %s %s: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("parse %s %s: %w", certFlag, certFile, err)
		}
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%s %s is valid from %s to %s, not now (%s)", certFlag, certFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// LoadPool reads a bundle of CA certificates.
func LoadPool(flag, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, file)
	}
	return pool, nil
}
