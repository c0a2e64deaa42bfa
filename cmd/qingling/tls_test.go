package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qingling/events"
	"qingling/handlers/identity"
)

// selfSigned writes a certificate for 127.0.0.1 and returns its paths and pool.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qingling-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// TestTLSAndRateLimit: HTTPS and NATS over TLS with --tls-cert/--tls-key; 429 past the limit.
func TestTLSAndRateLimit(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	cat, _ := events.LoadCatalog()
	users := filepath.Join(dir, "users.json")
	st, _ := identity.Open(users, cat)
	c, err := st.Add(events.User{ID: "desk", Role: events.RoleDesk, Sectors: []string{"all"}, Jurisdiction: "530000"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(context.Background(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", Users: users, NoSync: true,
		TLSCert: cert, TLSKey: key, RateLimit: 1, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := http.Get(m.URL() + "/healthz"); err == nil {
		t.Fatal("an untrusting client connected")
	}
	codes := map[int]int{}
	for i := 0; i < 12; i++ {
		req, _ := http.NewRequest("GET", m.URL()+"/v1/hazards", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("https: %v", err)
		}
		res.Body.Close()
		codes[res.StatusCode]++
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if codes[200] == 0 || codes[429] == 0 {
		t.Fatalf("rate limit 1/s (burst 5): %v", codes)
	}
	// NATS clients must use TLS too
	kp := nkeyPair(t, c.Seed)
	nc, err := nats.Connect(m.NATS.ClientURL(), nats.Nkey(c.NKey, kp.Sign), nats.Secure(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatalf("nats over tls: %v", err)
	}
	nc.Close()
}
