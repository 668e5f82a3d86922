package runtime

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"storesync/certs"
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
// Every file is read and checked here, at startup (certs.Server.Config).
func (t TLS) serverConfig(now time.Time, log *slog.Logger) (*tls.Config, error) {
	srv := certs.Server{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
	if t.HTTP && !srv.Enabled() {
		return nil, errors.New("--http-tls needs --tls-cert and --tls-key")
	}
	return srv.Config(now, log)
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
		if cfg.RootCAs, err = certs.LoadPool("--upstream-ca", t.UpstreamCAFile); err != nil {
			return nil, err
		}
	}
	if t.UpstreamCertFile != "" || t.UpstreamKeyFile != "" {
		cert, err := certs.LoadKeyPair("--upstream-cert", t.UpstreamCertFile, "--upstream-key", t.UpstreamKeyFile, now)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}
