package sign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Magic ends every signed file, as it ends a signed kernel module.
const Magic = "~Module signature appended~\n"

// The struct module_signature before Magic (include/linux/module_signature.h):
// algo, hash, id_type, signer_len, key_id_len, 3 bytes of padding, sig_len.
const (
	trailerLen  = 12
	pkeyIDPKCS7 = 2
)

var (
	// ErrUnsigned: the file does not end in Magic.
	ErrUnsigned = errors.New("not signed")
	// ErrMalformed: it ends in Magic, but what is before it is not a
	// signature of this format.
	ErrMalformed = errors.New("malformed signature")
	// ErrUntrusted: the signer is none of the trusted certificates.
	ErrUntrusted = errors.New("signed by a key outside the trusted set")
	// ErrMismatch: the signer is trusted, but the signature does not
	// match the contents (a byte changed after signing).
	ErrMismatch = errors.New("the signature does not match the contents: changed after signing")
	// ErrSigned: Append was given a file that is signed already.
	ErrSigned = errors.New("already signed")
)

// Key is a signing key with its certificate.
type Key struct {
	Private *rsa.PrivateKey
	Cert    *x509.Certificate
}

// LoadKey reads an RSA private key and its certificate from keyPath, PEM
// (PKCS #8 or PKCS #1), and certPath, PEM or DER; certPath "" means that
// keyPath holds the certificate too, as the kernel's certs/signing_key.pem
// does.
func LoadKey(keyPath, certPath string) (*Key, error) {
	key, cert, err := readKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("%s: no private key", keyPath)
	}
	if certPath != "" {
		certs, err := readCerts(certPath)
		if err != nil {
			return nil, err
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("%s: %d certificates, want 1", certPath, len(certs))
		}
		cert = certs[0]
	}
	if cert == nil {
		return nil, fmt.Errorf("%s: no certificate (give it with its own file)", keyPath)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%s: the certificate %q is not the key's", keyPath, cert.Subject)
	}
	return &Key{Private: key, Cert: cert}, nil
}

// readKeyFile returns the RSA key and the certificate, if any, of a PEM file.
func readKeyFile(path string) (*rsa.PrivateKey, *x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var key *rsa.PrivateKey
	var cert *x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, nil, fmt.Errorf("%s: a %T, not an RSA key", path, k)
			}
			key = rk
		case "RSA PRIVATE KEY":
			if key, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
		case "CERTIFICATE":
			if cert, err = x509.ParseCertificate(b.Bytes); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return key, cert, nil
}

// readCerts returns the certificates of a file: PEM blocks, or one DER
// certificate.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 && !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: neither PEM nor a DER certificate: %w", path, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// Append returns data followed by k's signature of it.
func Append(data []byte, k *Key) ([]byte, error) {
	if bytes.HasSuffix(data, []byte(Magic)) {
		return nil, ErrSigned
	}
	digest := sha256.Sum256(data)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.Private, crypto.SHA256, digest[:])
	if err != nil {
		return nil, err
	}
	cms, err := marshalCMS(k.Cert.RawIssuer, k.Cert.SerialNumber, sig)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(data)+len(cms)+trailerLen+len(Magic))
	out = append(out, data...)
	out = append(out, cms...)
	var t [trailerLen]byte
	t[2] = pkeyIDPKCS7
	binary.BigEndian.PutUint32(t[8:], uint32(len(cms)))
	out = append(out, t[:]...)
	return append(out, Magic...), nil
}

// Signature is a signature split off a signed file.
type Signature struct {
	Payload []byte // the bytes it signs: the file without the signature
	CMS     []byte // the DER SignedData
}

// Split separates a signed file into what was signed and the signature.
func Split(file []byte) (*Signature, error) {
	if !bytes.HasSuffix(file, []byte(Magic)) {
		return nil, ErrUnsigned
	}
	end := len(file) - len(Magic)
	if end < trailerLen {
		return nil, fmt.Errorf("%w: %d bytes before the magic, no room for its header", ErrMalformed, end)
	}
	t := file[end-trailerLen : end]
	n := binary.BigEndian.Uint32(t[8:])
	switch {
	case t[2] != pkeyIDPKCS7:
		return nil, fmt.Errorf("%w: id_type %d, not PKCS #7 (%d)", ErrMalformed, t[2], pkeyIDPKCS7)
	case uint64(n) > uint64(end-trailerLen):
		return nil, fmt.Errorf("%w: sig_len %d, longer than the %d bytes before it", ErrMalformed, n, end-trailerLen)
	}
	start := end - trailerLen - int(n)
	return &Signature{Payload: file[:start], CMS: file[start : end-trailerLen]}, nil
}

// Trusted is a set of certificates whose signatures are accepted.
type Trusted struct {
	Dir   string
	certs []*x509.Certificate
}

// LoadTrusted reads every regular file of dir as certificates (PEM,
// several to a file, or one DER). A missing directory is an error; an
// empty one trusts nothing.
func LoadTrusted(dir string) (*Trusted, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	t := &Trusted{Dir: dir}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		certs, err := readCerts(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		t.certs = append(t.certs, certs...)
	}
	return t, nil
}

// NewTrusted returns the set of the given certificates.
func NewTrusted(certs ...*x509.Certificate) *Trusted {
	return &Trusted{certs: certs}
}

// Verify checks s and returns the trusted certificate that signed it.
func (t *Trusted) Verify(s *Signature) (*x509.Certificate, error) {
	si, err := parseCMS(s.CMS)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for _, c := range t.certs {
		if !bytes.Equal(c.RawIssuer, si.rawIssuer) || c.SerialNumber.Cmp(si.serial) != 0 {
			continue
		}
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		digest := sha256.Sum256(s.Payload)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], si.sig); err != nil {
			return nil, fmt.Errorf("%w (signer %q)", ErrMismatch, c.Subject)
		}
		return c, nil
	}
	return nil, fmt.Errorf("%w (serial %s)", ErrUntrusted, si.serial)
}
