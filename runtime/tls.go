package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLS holds the certificate files of a follower, by role. Every field is a
// path to a PEM file; empty fields leave that side in plain text.
type TLS struct {
	// CertFile and KeyFile serve the read API (and the HTTP listener when
	// HTTP is set) over TLS.
	CertFile, KeyFile string
	// ClientCAFile makes the listeners require a client certificate signed
	// by one of its certificates.
	ClientCAFile string
	// HTTP serves the HTTP listener with the same certificate (and client
	// rule) as the read API.
	HTTP bool
	// UpstreamCAFile verifies upstreams and peers; setting it (or
	// UpstreamCertFile) dials them over TLS. Without it the system's roots
	// verify them.
	UpstreamCAFile string
	// UpstreamCertFile and UpstreamKeyFile are the client certificate shown
	// to upstreams and peers that ask for one.
	UpstreamCertFile, UpstreamKeyFile string
}

// serverConfig is the TLS configuration of the listeners; nil: plain text.
// Every file is read and checked here, at startup, so a wrong path or a
// certificate that does not match its key stops the follower with the name
// of the file instead of failing each handshake later.
func (t TLS) serverConfig(now time.Time) (*tls.Config, error) {
	if t.CertFile == "" && t.KeyFile == "" {
		if t.ClientCAFile != "" {
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key: client certificates are asked for only over TLS")
		}
		if t.HTTP {
			return nil, errors.New("--http-tls needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	cert, err := loadKeyPair("--tls-cert", t.CertFile, "--tls-key", t.KeyFile, now)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile != "" {
		if cfg.ClientCAs, err = loadPool("--client-ca", t.ClientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// upstreamCredentials are the transport credentials of the connections to
// upstreams and peers (the sync engine's and the health poller's alike).
func (t TLS) upstreamCredentials(now time.Time) (credentials.TransportCredentials, error) {
	if t.UpstreamCAFile == "" && t.UpstreamCertFile == "" && t.UpstreamKeyFile == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{}
	var err error
	if t.UpstreamCAFile != "" {
		if cfg.RootCAs, err = loadPool("--upstream-ca", t.UpstreamCAFile); err != nil {
			return nil, err
		}
	}
	if t.UpstreamCertFile != "" || t.UpstreamKeyFile != "" {
		cert, err := loadKeyPair("--upstream-cert", t.UpstreamCertFile, "--upstream-key", t.UpstreamKeyFile, now)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// loadKeyPair reads a certificate and its key, naming the flag and the file
// in every error: which of the two is missing, unreadable, not PEM, or not
// the other's match, and a certificate outside its validity period (every
// handshake would fail on it).
func loadKeyPair(certFlag, certFile, keyFlag, keyFile string, now time.Time) (tls.Certificate, error) {
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
		// The error never quotes the files' contents, only what is wrong.
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

// loadPool reads a bundle of CA certificates.
func loadPool(flag, file string) (*x509.CertPool, error) {
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
