package sign_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/livesplice/livesplice/sign"
	"github.com/livesplice/livesplice/sign/signtest"
)

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestVerify(t *testing.T) {
	k := signtest.NewKey(t, "signer", 1)
	other := signtest.NewKey(t, "other", 2)
	data := []byte("a pack's bytes\x00\xfd7zXZ")
	signed, err := sign.Append(data, k)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(signed)
		b[i] ^= 1
		return b
	}
	byOther, err := sign.Append(data, other)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    []byte
		trusted *sign.Trusted
		want    error
	}{
		{"good", signed, sign.NewTrusted(other.Cert, k.Cert), nil},
		{"payload byte changed", flip(3), sign.NewTrusted(k.Cert), sign.ErrMismatch},
		{"signature byte changed", flip(len(data) + 300), sign.NewTrusted(k.Cert), sign.ErrMismatch},
		{"unsigned", data, sign.NewTrusted(k.Cert), sign.ErrUnsigned},
		{"signed by another key", byOther, sign.NewTrusted(k.Cert), sign.ErrUntrusted},
		{"empty trusted set", signed, sign.NewTrusted(), sign.ErrUntrusted},
		{"header id_type changed", flip(len(signed) - len(sign.Magic) - 12 + 2), sign.NewTrusted(k.Cert), sign.ErrMalformed},
		{"sig_len too long", flip(len(signed) - len(sign.Magic) - 2), sign.NewTrusted(k.Cert), sign.ErrMalformed},
		{"only the magic", []byte(sign.Magic), sign.NewTrusted(k.Cert), sign.ErrMalformed},
		{"CMS start changed", flip(len(data)), sign.NewTrusted(k.Cert), sign.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sign.Split(tt.file)
			var signer *x509.Certificate
			if err == nil {
				signer, err = tt.trusted.Verify(s)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				return
			}
			if !bytes.Equal(s.Payload, data) || !signer.Equal(k.Cert) {
				t.Fatalf("payload %q signer %q, want %q by %q", s.Payload, signer.Subject, data, k.Cert.Subject)
			}
		})
	}
	if _, err := sign.Append(signed, k); !errors.Is(err, sign.ErrSigned) {
		t.Errorf("sign.Append of a signed file: %v, want sign.ErrSigned", err)
	}
}

// TestOpenSSL checks a signature with the tools a distribution has
// outside livesplice: OpenSSL's cms, on the parts extract-module-sig.pl
// would cut out.
func TestOpenSSL(t *testing.T) {
	k := signtest.NewKey(t, "signer", 7)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("update module\n"), 1000)
	signed, err := sign.Append(data, k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.Split(signed)
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "cert.pem")
	sig := filepath.Join(dir, "sig.p7s")
	for p, b := range map[string][]byte{cert: pemOf("CERTIFICATE", k.Cert.Raw), sig: s.CMS} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(payload []byte) error {
		p := filepath.Join(dir, "payload")
		if err := os.WriteFile(p, payload, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER",
			"-in", sig, "-content", p, "-certfile", cert, "-CAfile", cert,
			"-purpose", "any", "-out", os.DevNull).CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := verify(s.Payload); err != nil {
		t.Fatalf("openssl cms -verify refused a good signature: %v", err)
	}
	bad := bytes.Clone(s.Payload)
	bad[10] ^= 1
	if err := verify(bad); err == nil {
		t.Fatal("openssl cms -verify accepted a changed payload")
	}
	// And the other way: OpenSSL's own signature of the same kind, as
	// sign-file makes it, verifies here.
	key := filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pemOf("PRIVATE KEY", der), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "payload")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ossl, err := exec.Command("openssl", "cms", "-sign", "-binary", "-noattr", "-nocerts",
		"-nosmimecap", "-md", "sha256", "-outform", "DER", "-in", p,
		"-signer", cert, "-inkey", key).Output()
	if err != nil {
		t.Fatalf("openssl cms -sign: %v", err)
	}
	if _, err := sign.NewTrusted(k.Cert).Verify(&sign.Signature{Payload: data, CMS: ossl}); err != nil {
		t.Fatalf("OpenSSL's signature: %v", err)
	}
}

func TestLoadKey(t *testing.T) {
	k := signtest.NewKey(t, "signer", 3)
	other := signtest.NewKey(t, "other", 4)
	dir := t.TempDir()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"signing_key.pem":  append(pemOf("PRIVATE KEY", pkcs8), pemOf("CERTIFICATE", k.Cert.Raw)...),
		"key-pkcs1.pem":    pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.Private)),
		"signing_key.x509": k.Cert.Raw,
		"other.pem":        pemOf("CERTIFICATE", other.Cert.Raw),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in := func(n string) string {
		if n == "" {
			return ""
		}
		return filepath.Join(dir, n)
	}
	tests := []struct {
		key, cert string
		ok        bool
	}{
		{"signing_key.pem", "", true},
		{"key-pkcs1.pem", "signing_key.x509", true},
		{"key-pkcs1.pem", "", false},          // no certificate
		{"key-pkcs1.pem", "other.pem", false}, // not the key's
		{"other.pem", "", false},              // no key
		{"missing.pem", "", false},
	}
	for _, tt := range tests {
		got, err := sign.LoadKey(in(tt.key), in(tt.cert))
		if (err == nil) != tt.ok {
			t.Errorf("sign.LoadKey(%s, %s) = %v, want ok %v", tt.key, tt.cert, err, tt.ok)
			continue
		}
		if tt.ok && !got.Cert.Equal(k.Cert) {
			t.Errorf("sign.LoadKey(%s, %s): certificate %q", tt.key, tt.cert, got.Cert.Subject)
		}
	}
}

func TestLoadTrusted(t *testing.T) {
	a, b, c := signtest.NewKey(t, "a", 10), signtest.NewKey(t, "b", 11), signtest.NewKey(t, "c", 12)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ab.pem"), append(pemOf("CERTIFICATE", a.Cert.Raw), pemOf("CERTIFICATE", b.Cert.Raw)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.der"), c.Cert.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr, err := sign.LoadTrusted(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*sign.Key{a, b, c} {
		signed, err := sign.Append([]byte("x"), k)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sign.Split(signed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Verify(s); err != nil {
			t.Errorf("%s: %v", k.Cert.Subject.CommonName, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.LoadTrusted(dir); err == nil {
		t.Error("sign.LoadTrusted accepted a file that is no certificate")
	}
	if _, err := sign.LoadTrusted(filepath.Join(dir, "missing")); err == nil {
		t.Error("sign.LoadTrusted accepted a missing directory")
	}
}
