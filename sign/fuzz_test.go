package sign_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/livesplice/livesplice/sign"
	"github.com/livesplice/livesplice/sign/signtest"
)

// FuzzVerify: the signature reader (which check and apply will run as
// root on packs from elsewhere) on mutated signed files. It never
// panics, every refusal is one of the package's errors, and what it
// accepts is exactly a file the trusted key signed.
func FuzzVerify(f *testing.F) {
	k := signtest.NewKey(f, "fuzz", 1)
	payload := []byte("\xfd7zXZ\x00\x00 a pack")
	signed, err := sign.Append(payload, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(payload)
	f.Add([]byte(sign.Magic))
	trusted := sign.NewTrusted(k.Cert)
	f.Fuzz(func(t *testing.T, file []byte) {
		s, err := sign.Split(file)
		if err == nil {
			_, err = trusted.Verify(s)
		}
		switch {
		case err == nil:
			if !bytes.Equal(s.Payload, payload) {
				t.Fatalf("accepted a payload the key never signed: %q", s.Payload)
			}
		case !errors.Is(err, sign.ErrUnsigned) && !errors.Is(err, sign.ErrMalformed) &&
			!errors.Is(err, sign.ErrUntrusted) && !errors.Is(err, sign.ErrMismatch):
			t.Fatalf("refused with an error of no kind: %v", err)
		}
	})
}
