package runtime

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/certs"
	"storesync/internal/testnet"
	"storesync/primary"
)

// pki is a test's certificates, as PEM files in one directory: a CA, a
// server certificate for 127.0.0.1, a client certificate, and a second CA
// that signed none of them.
type pki struct {
	dir                     string
	ca, otherCA             string
	serverCert, serverKey   string
	clientCert, clientKey   string
	expiredCert, expiredKey string
	caPool                  *x509.CertPool
	clientPair              tls.Certificate
	caKey                   *ecdsa.PrivateKey
	caTmpl                  *x509.Certificate
	serial                  int64
	keyPEMs                 [][]byte // every private key written, to look for leaks
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var caDER []byte
	p.caKey, p.caTmpl, caDER = p.selfSigned(t, "storesync test CA")
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	_, _, otherDER := p.selfSigned(t, "some other CA")
	p.otherCA = p.write(t, "other-ca.pem", "CERTIFICATE", otherDER)
	now := time.Now()
	p.serverCert, p.serverKey = p.leaf(t, "server", now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.leaf(t, "client", now.Add(-time.Hour), now.Add(time.Hour), x509.ExtKeyUsageClientAuth)
	p.expiredCert, p.expiredKey = p.leaf(t, "expired", now.Add(-2*time.Hour), now.Add(-time.Hour), x509.ExtKeyUsageServerAuth)
	p.caPool = x509.NewCertPool()
	p.caPool.AppendCertsFromPEM(must(os.ReadFile(p.ca)))
	var err error
	if p.clientPair, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey); err != nil {
		t.Fatal(err)
	}
	return p
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func (p *pki) selfSigned(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	key, der := p.sign(t, tmpl, nil, nil)
	return key, tmpl, der
}

// sign makes a key and a certificate of it from tmpl (its serial number set
// here), signed by parentKey; a nil parent makes it self-signed.
func (p *pki) sign(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// leaf writes a certificate for 127.0.0.1 signed by the CA, and its key.
func (p *pki) leaf(t *testing.T, name string, from, to time.Time, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	key, der := p.sign(t, tmpl, p.caTmpl, p.caKey)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", kder)
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if kind == "PRIVATE KEY" {
		p.keyPEMs = append(p.keyPEMs, data)
	}
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serverTLS is a follower's listener side: its certificate, and client
// certificates required.
func (p *pki) serverTLS() TLS {
	return TLS{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca, HTTP: true}
}

// upstreamTLS is a follower's side towards a TLS upstream.
func (p *pki) upstreamTLS() TLS {
	return TLS{UpstreamCAFile: p.ca, UpstreamCertFile: p.clientCert, UpstreamKeyFile: p.clientKey}
}

// clientTLS is a client's configuration: trusting roots, showing certs.
func clientTLS(roots *x509.CertPool, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: roots, Certificates: certs}
}

// newFollowerCfg makes (but does not start) a follower of upstreams with
// the test engine settings of newFollower, and change applied to its
// configuration.
func newFollowerCfg(t *testing.T, genesisPath string, log *slog.Logger, change func(*Config), upstreams ...string) *Follower {
	t.Helper()
	cfg := Config{
		DataDir: t.TempDir(), Genesis: genesisPath, Upstreams: upstreams, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ShutdownGrace: time.Second, HealthEvery: 100 * time.Millisecond,
		Engine: actors.Config{FetchWindow: 16, PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond,
			RetryMax: 200 * time.Millisecond, FetchTimeout: 2 * time.Second,
			Restart: actors.RestartPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Limit: 50, Window: time.Minute}},
		Log: log,
	}
	if change != nil {
		change(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// newLogBuffer is a logger whose text a test can search, shown if it fails.
func newLogBuffer(t *testing.T, name string) (*testnet.Buffer, *slog.Logger) {
	b := &testnet.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, b.String())
		}
	})
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// callStatus makes one Status call to addr over a new connection.
func callStatus(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = storev1.NewStoreClient(conn).Status(ctx, &storev1.StatusRequest{})
	return err
}

// httpGet fetches a path of a follower's HTTP listener over TLS.
func httpGet(addr, path string, cfg *tls.Config) (int, string, error) {
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestTLSChainedFollowers: primary -> follower A (plain upstream, TLS
// listeners requiring client certificates) -> follower B (TLS upstream with a
// client certificate). B syncs the chain and turns ready (its health poller
// reaches A over TLS too) and counts in A's table of reports by its client
// certificate alone; A's listeners refuse a client that does not
// trust A's CA, a plain-text client, and a client without a certificate.
func TestTLSChainedFollowers(t *testing.T) {
	pk := newPKI(t)
	p := startPrimary(t, 20*time.Millisecond)
	a := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower A"), func(c *Config) { c.TLS = pk.serverTLS() }, p.PublicAddr())
	startFollower(t, a)
	b := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower B"), func(c *Config) { c.TLS = pk.upstreamTLS() }, a.Addr())
	startFollower(t, b)

	waitFor(t, 30*time.Second, "the primary to prove 30 blocks", func() bool { _, pr := p.Store().Tips(); return pr >= 30 })
	target, proven := p.Store().Tips()
	start := time.Now()
	waitFor(t, 60*time.Second, "B to catch up over TLS", func() bool {
		c, pr := b.Store().Tips()
		return c >= target && pr >= proven
	})
	t.Logf("B reached block %d over TLS %s after the primary", target, time.Since(start).Round(time.Millisecond))
	sameChain(t, p.Store(), b.Store())
	waitFor(t, 30*time.Second, "B to turn ready (its poller reads A over TLS)", func() bool { return b.Health().Ready })
	// A lists no followers: B counts because its client certificate,
	// verified by A's CA, vouches for it.
	waitFor(t, 10*time.Second, "A's table to count B by its certificate", func() bool {
		r, ok := rowOf(a.Replicas().Status(), b.Replicas().ID())
		return ok && r.Verified && strings.HasPrefix(r.Subject, "cert ") && strings.Contains(r.Subject, "CN=")
	})

	good := credentials.NewTLS(clientTLS(pk.caPool, pk.clientPair))
	if err := callStatus(a.Addr(), good); err != nil {
		t.Fatalf("a client with the CA and a client certificate: %v", err)
	}
	refused := []struct {
		name  string
		creds credentials.TransportCredentials
		want  string // in the error
	}{
		{"without the CA", credentials.NewTLS(clientTLS(x509.NewCertPool(), pk.clientPair)), "certificate signed by unknown authority"},
		{"in plain text", insecure.NewCredentials(), ""},
		{"without a client certificate", credentials.NewTLS(clientTLS(pk.caPool)), ""},
	}
	for _, r := range refused {
		err := callStatus(a.Addr(), r.creds)
		if err == nil {
			t.Fatalf("a client %s was served", r.name)
		}
		if !strings.Contains(err.Error(), r.want) {
			t.Fatalf("a client %s: error %q does not say %q", r.name, err, r.want)
		}
		t.Logf("a client %s: %v", r.name, err)
	}

	// The HTTP listener: same certificate, same client rule.
	code, body, err := httpGet(a.HTTPAddr(), "/status", clientTLS(pk.caPool, pk.clientPair))
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"role": "follower"`) {
		t.Fatalf("/status over TLS with a client certificate: %d %q %v", code, body, err)
	}
	if _, _, err := httpGet(a.HTTPAddr(), "/status", clientTLS(pk.caPool)); err == nil {
		t.Fatal("/status over TLS without a client certificate was served")
	}
	if _, _, err := httpGet(a.HTTPAddr(), "/status", clientTLS(x509.NewCertPool(), pk.clientPair)); err == nil {
		t.Fatal("/status to a client without the CA was served")
	}
}

// TestTLSPrimary: the primary's read API over TLS, requiring client
// certificates. A follower with the CA and a client certificate syncs the
// chain, proofs included; a plain-text client, one without a certificate and
// one without the CA are refused. A certificate that does not match its key
// stops the primary at startup, naming the file.
func TestTLSPrimary(t *testing.T) {
	pk := newPKI(t)
	srv := certs.Server{CertFile: pk.serverCert, KeyFile: pk.serverKey, ClientCAFile: pk.ca}
	p := testnet.StartPrimary(t, 20*time.Millisecond, func(c *primary.Config) { c.TLS = srv })
	f := newFollowerCfg(t, testnet.GenesisOf(p.Node), testnet.LogOnFailure(t, "follower of the TLS primary"),
		func(c *Config) { c.TLS = pk.upstreamTLS() }, p.PublicAddr())
	startFollower(t, f)
	waitFor(t, 30*time.Second, "the primary to prove 20 blocks", func() bool { _, pr := p.Store().Tips(); return pr >= 20 })
	target, proven := p.Store().Tips()
	waitFor(t, 60*time.Second, "the follower to catch up over TLS", func() bool {
		c, pr := f.Store().Tips()
		return c >= target && pr >= proven
	})
	sameChain(t, p.Store(), f.Store())

	if err := callStatus(p.PublicAddr(), credentials.NewTLS(clientTLS(pk.caPool, pk.clientPair))); err != nil {
		t.Fatalf("a client with the CA and a client certificate: %v", err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"in plain text":                insecure.NewCredentials(),
		"without a client certificate": credentials.NewTLS(clientTLS(pk.caPool)),
		"without the CA":               credentials.NewTLS(clientTLS(x509.NewCertPool(), pk.clientPair)),
	} {
		if err := callStatus(p.PublicAddr(), creds); err == nil {
			t.Fatalf("a client %s was served by the primary", name)
		}
	}

	mismatched := srv
	mismatched.KeyFile = pk.clientKey
	_, err := primary.New(primary.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0",
		Profile: "small", TLS: mismatched, Log: testnet.Quiet()})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert "+pk.serverCert) || !strings.Contains(err.Error(), pk.clientKey) {
		t.Fatalf("a certificate with another's key: %v, want an error naming both files", err)
	}
}

// TestTLSCertificateRotation: a renewed certificate is served without a
// restart. Files that do not load (a half-written certificate) are not
// taken: the previous certificate goes on being served and the log says
// why; once both files hold the new pair, new connections get it, on the
// gRPC and the HTTP listener, and the upstream connections of a follower
// of this one keep working.
func TestTLSCertificateRotation(t *testing.T) {
	pk := newPKI(t)
	p := startPrimary(t, 20*time.Millisecond)
	logs, log := newLogBuffer(t, "follower A")
	a := newFollowerCfg(t, genesisOf(p), log, func(c *Config) { c.TLS = pk.serverTLS() }, p.PublicAddr())
	startFollower(t, a)
	b := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower B"), func(c *Config) { c.TLS = pk.upstreamTLS() }, a.Addr())
	startFollower(t, b)
	waitFor(t, 30*time.Second, "B to sync 10 blocks through A", func() bool { c, _ := b.Store().Tips(); return c >= 10 })

	first := presentedSerial(t, pk, a.Addr())
	newCert, newKey := pk.leaf(t, "server-renewed", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), x509.ExtKeyUsageServerAuth)
	renewed := certSerial(t, newCert)

	// Half written: the certificate file cut short.
	replaceFile(t, pk.serverCert, must(os.ReadFile(newCert))[:100])
	waitFor(t, 30*time.Second, "a warning that the changed files do not load", func() bool {
		presentedSerial(t, pk, a.Addr()) // a handshake is when the files are looked at
		return strings.Contains(logs.String(), "certificate files changed but do not load")
	})
	if got := presentedSerial(t, pk, a.Addr()); got.Cmp(first) != 0 {
		t.Fatalf("serving certificate %v while the new files do not load, want the previous %v", got, first)
	}

	replaceFile(t, pk.serverKey, must(os.ReadFile(newKey)))
	replaceFile(t, pk.serverCert, must(os.ReadFile(newCert)))
	waitFor(t, 30*time.Second, "the renewed certificate to be served", func() bool {
		return presentedSerial(t, pk, a.Addr()).Cmp(renewed) == 0
	})
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Fatal("no log line says the certificate was reloaded")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(pk.caPool, pk.clientPair)}}).Get("https://" + a.HTTPAddr() + "/livez")
	if err != nil {
		t.Fatalf("/livez over TLS after the renewal: %v", err)
	}
	defer resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(renewed) != 0 {
		t.Fatalf("the HTTP listener serves certificate %v, want the renewed %v", got, renewed)
	}
	next, _ := p.Store().Tips()
	waitFor(t, 30*time.Second, "B to go on syncing through A", func() bool { c, _ := b.Store().Tips(); return c > next })
}

// presentedSerial is the serial number of the certificate the listener at
// addr presents to a new connection.
func presentedSerial(t *testing.T, pk *pki, addr string) *big.Int {
	t.Helper()
	cfg := clientTLS(pk.caPool, pk.clientPair)
	cfg.NextProtos = []string{"h2"} // gRPC servers refuse a handshake without ALPN
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func certSerial(t *testing.T, file string) *big.Int {
	t.Helper()
	block, _ := pem.Decode(must(os.ReadFile(file)))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// replaceFile swaps in new contents by rename, as certificate tooling does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTLSWrongCA: a follower verifying its upstream with a CA that did not
// sign the upstream's certificate syncs nothing, says why in its log, and is
// not ready, its /status saying so.
func TestTLSWrongCA(t *testing.T) {
	pk := newPKI(t)
	p := startPrimary(t, 20*time.Millisecond)
	a := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower A"), func(c *Config) { c.TLS = pk.serverTLS() }, p.PublicAddr())
	startFollower(t, a)
	waitFor(t, 30*time.Second, "A to sync 10 blocks", func() bool { c, _ := a.Store().Tips(); return c >= 10 })

	logs, log := newLogBuffer(t, "follower with the wrong CA")
	wrong := pk.upstreamTLS()
	wrong.UpstreamCAFile = pk.otherCA
	b := newFollowerCfg(t, genesisOf(p), log, func(c *Config) { c.TLS = wrong }, a.Addr())
	startFollower(t, b)
	const why = "certificate signed by unknown authority"
	waitFor(t, 30*time.Second, "the log to name the certificate problem", func() bool {
		s := logs.String()
		return strings.Contains(s, "upstream problem") && strings.Contains(s, why) && strings.Contains(s, "health source problem")
	})
	// Long enough for B to have synced blocks had it trusted A: A has
	// synced 20 more meanwhile.
	aTip, _ := a.Store().Tips()
	waitFor(t, 30*time.Second, "A to sync 20 more blocks", func() bool { c, _ := a.Store().Tips(); return c >= aTip+20 })
	if c, _ := b.Store().Tips(); c != 0 {
		t.Fatalf("synced to %d through an upstream it cannot verify", c)
	}
	st := b.Status()
	if st.Ready || st.LagKnown {
		t.Fatalf("status with no verified upstream: ready %v, lag known %v (%s)", st.Ready, st.LagKnown, st.Reason)
	}
	if p := st.Problems[a.Addr()]; !strings.Contains(p, why) {
		t.Fatalf("status names no certificate problem of upstream %s: %q", a.Addr(), st.Problems)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, why) {
			t.Logf("log: %s", line)
			break
		}
	}
	t.Logf("status: ready %v, %s; %s: %s", st.Ready, st.Reason, a.Addr(), st.Problems[a.Addr()])
}

// TestTLSStartupErrors: each bad certificate setting stops New with an
// error naming the flag and the file, before the store is opened.
func TestTLSStartupErrors(t *testing.T) {
	pk := newPKI(t)
	gdir := t.TempDir()
	if _, err := primary.Init(gdir, "test", 9); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(pk.dir, "not-pem.txt")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(pk.dir, "missing.pem")
	cases := []struct {
		name string
		tls  TLS
		want []string
	}{
		{"missing cert", TLS{CertFile: missing, KeyFile: pk.serverKey}, []string{"--tls-cert", missing, "no such file"}},
		{"missing key", TLS{CertFile: pk.serverCert, KeyFile: missing}, []string{"--tls-key", missing}},
		{"cert is a directory", TLS{CertFile: pk.dir, KeyFile: pk.serverKey}, []string{"--tls-cert", pk.dir}},
		{"key of another cert", TLS{CertFile: pk.serverCert, KeyFile: pk.clientKey}, []string{pk.serverCert, pk.clientKey, "does not match"}},
		{"cert not PEM", TLS{CertFile: notPEM, KeyFile: pk.serverKey}, []string{"--tls-cert", notPEM}},
		{"cert without key", TLS{CertFile: pk.serverCert}, []string{"--tls-cert", pk.serverCert, "without --tls-key"}},
		{"expired cert", TLS{CertFile: pk.expiredCert, KeyFile: pk.expiredKey}, []string{"--tls-cert", pk.expiredCert, "not now"}},
		{"client CA without TLS", TLS{ClientCAFile: pk.ca}, []string{"--client-ca needs --tls-cert"}},
		{"client CA not PEM", TLS{CertFile: pk.serverCert, KeyFile: pk.serverKey, ClientCAFile: notPEM}, []string{"--client-ca", notPEM, "no PEM certificate"}},
		{"upstream CA missing", TLS{UpstreamCAFile: missing}, []string{"--upstream-ca", missing}},
		{"upstream key mismatched", TLS{UpstreamCAFile: pk.ca, UpstreamCertFile: pk.clientCert, UpstreamKeyFile: pk.serverKey}, []string{"--upstream-cert", pk.clientCert, pk.serverKey}},
		{"upstream key without cert", TLS{UpstreamKeyFile: pk.clientKey}, []string{"--upstream-key", pk.clientKey, "without --upstream-cert"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := New(Config{DataDir: dir, Genesis: filepath.Join(gdir, primary.GenesisFile), Upstreams: []string{"127.0.0.1:1"},
				Listen: "127.0.0.1:0", TLS: c.tls, Log: quiet()})
			if err == nil {
				t.Fatal("New accepted it")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			for _, k := range pk.keyPEMs {
				if strings.Contains(err.Error(), string(k[40:80])) {
					t.Fatalf("error %q quotes a private key", err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
				t.Fatalf("the store was opened before the certificates were checked: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestSecretsNotServed: /metrics, /status, /readyz and /livez of a follower
// serving TLS reveal no private key: not the TLS keys' PEM text, not the
// genesis producer's or prover's key files, not the word PRIVATE.
func TestSecretsNotServed(t *testing.T) {
	pk := newPKI(t)
	p := startPrimary(t, 20*time.Millisecond)
	change := func(c *Config) {
		c.TLS = pk.serverTLS()
		c.TLS.UpstreamCertFile, c.TLS.UpstreamKeyFile = pk.clientCert, pk.clientKey
		c.TLS.UpstreamCAFile = pk.ca
	}
	a := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower A"), func(c *Config) { c.TLS = pk.serverTLS() }, p.PublicAddr())
	startFollower(t, a)
	b := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower B"), change, a.Addr())
	startFollower(t, b)
	waitFor(t, 30*time.Second, "B to sync 10 blocks", func() bool { c, _ := b.Store().Tips(); return c >= 10 })

	var secrets []string
	for _, k := range pk.keyPEMs {
		for _, line := range strings.Split(string(k), "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
	}
	pdir := filepath.Dir(genesisOf(p))
	for _, name := range []string{primary.ProducerFile, primary.ProverFile} {
		key, err := os.ReadFile(filepath.Join(pdir, name))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(key)))
	}
	secrets = append(secrets, "PRIVATE", "private_key", pk.serverKey, pk.clientKey)
	for _, path := range []string{"/metrics", "/status", "/readyz", "/livez"} {
		code, body, err := httpGet(b.HTTPAddr(), path, clientTLS(pk.caPool, pk.clientPair))
		if err != nil || (code != http.StatusOK && code != http.StatusServiceUnavailable) || body == "" {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(body), strings.ToLower(s)) {
				t.Fatalf("GET %s reveals %q", path, s)
			}
		}
		t.Logf("GET %s: %d bytes, none of %d secrets", path, len(body), len(secrets))
	}
}
