package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/livesplice/livesplice/sign/signtest"
)

// TestSignVerify signs a file with `livesplice sign` and checks that
// verify accepts it and refuses, each with its exit code, an unsigned
// file, a signer outside the trusted set and a byte changed after
// signing.
func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	k := signtest.NewKey(t, "distro", 1)
	other := signtest.NewKey(t, "stranger", 2)
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("signing_key.pem", append(
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})...))
	trusted := filepath.Dir(write("trusted/distro.crt", k.Cert.Raw))
	strangers := filepath.Dir(write("strangers/stranger.crt", other.Cert.Raw))
	unsigned := write("unsigned.tar.xz", []byte("\xfd7zXZ\x00 the bytes of a pack"))
	signed := filepath.Join(dir, "signed.tar.xz")

	cmd := signCmd()
	cmd.SetArgs([]string{"--key", key, "-o", signed, unsigned})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	b[4] ^= 1
	tampered := write("tampered.tar.xz", b)

	tests := []struct {
		pack, trust string
		want        int
	}{
		{signed, trusted, 0},
		{unsigned, trusted, exitUnsigned},
		{signed, strangers, exitUntrust},
		{tampered, trusted, exitTampered},
		{signed, filepath.Join(dir, "missing"), exitError},
	}
	for _, tt := range tests {
		_, err := verifyPack(tt.pack, tt.trust)
		got := 0
		if err != nil {
			got = exitCode(err)
		}
		if got != tt.want {
			t.Errorf("verify %s against %s: exit %d (%v), want %d", filepath.Base(tt.pack), filepath.Base(tt.trust), got, err, tt.want)
		}
	}
	// Signing a signed pack again is refused, and leaves it as it was.
	cmd = signCmd()
	cmd.SetArgs([]string{"--key", key, signed})
	if err := cmd.Execute(); err == nil {
		t.Error("sign of a signed pack succeeded")
	}
	if _, err := verifyPack(signed, trusted); err != nil {
		t.Errorf("after the refused second sign: %v", err)
	}
}
