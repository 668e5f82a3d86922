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
	"log/slog"
	"os"
	"sync"
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

// Config is the listener's TLS configuration; nil: plain text. The
// certificate is served from its files, read again when either changes
// (see keyPair), so a renewed certificate needs no restart; log says when
// it is reloaded, or why not.
func (s Server) Config(now time.Time, log *slog.Logger) (*tls.Config, error) {
	if !s.Enabled() {
		if s.ClientCAFile != "" {
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key: client certificates are asked for only over TLS")
		}
		return nil, nil
	}
	k := &keyPair{certFlag: "--tls-cert", certFile: s.CertFile, keyFlag: "--tls-key", keyFile: s.KeyFile, log: log}
	if err := k.load(now); err != nil {
		return nil, err
	}
	cfg := &tls.Config{GetCertificate: k.get}
	if s.ClientCAFile != "" {
		pool, err := LoadPool("--client-ca", s.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// keyPair serves a certificate from its files. On a handshake at least
// recheckEvery after the last look, it compares both files' size and
// modification time with what it loaded, and loads them again if either
// changed. A pair that does not load (half written, a key for another
// certificate, expired) is not taken: the one in use goes on being served,
// a warning says why, and the files are looked at again later.
type keyPair struct {
	certFlag, certFile, keyFlag, keyFile string
	log                                  *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  string // the files' stamp when cert was loaded
	failed  string // the stamp that last failed to load, warned about once
	checked time.Time
}

// recheckEvery bounds how often a handshake looks at the files.
const recheckEvery = time.Second

// load reads the pair; at startup its error stops the process.
func (k *keyPair) load(now time.Time) error {
	// The stamp first: files replaced between the two are loaded again at
	// the next look rather than missed.
	stamp, serr := stampOf(k.certFile, k.keyFile)
	cert, err := LoadKeyPair(k.certFlag, k.certFile, k.keyFlag, k.keyFile, now)
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("%s %s: %w", k.certFlag, k.certFile, serr)
	}
	k.cert, k.loaded, k.checked = &cert, stamp, now
	return nil
}

// get implements tls.Config.GetCertificate.
func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if now.Sub(k.checked) < recheckEvery {
		return k.cert, nil
	}
	k.checked = now
	stamp, err := stampOf(k.certFile, k.keyFile)
	if err != nil || stamp == k.loaded || stamp == k.failed {
		return k.cert, nil
	}
	if err := k.load(now); err != nil {
		k.failed = stamp
		if k.log != nil {
			k.log.Warn("certificate files changed but do not load; serving the previous certificate", "err", err)
		}
		return k.cert, nil
	}
	if k.log != nil {
		k.log.Info("certificate reloaded", "file", k.certFile, "not_after", k.cert.Leaf.NotAfter)
	}
	return k.cert, nil
}

// stampOf is the size and modification time of each file, to notice a
// change without reading them.
func stampOf(files ...string) (string, error) {
	stamp := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
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
	cert.Leaf = leaf
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
