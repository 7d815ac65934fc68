package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/livesplice/livesplice/sign"
)

// defaultTrust is where the certificates whose packs are accepted live.
const defaultTrust = "/etc/livesplice/trusted"

// signatureError is a pack's signature refused: unsigned, by a signer
// outside the trusted set, or not matching its bytes.
type signatureError struct {
	pack string
	err  error
}

func (e *signatureError) Error() string { return fmt.Sprintf("pack %s: %v", e.pack, e.err) }
func (e *signatureError) Unwrap() error { return e.err }

func signCmd() *cobra.Command {
	var key, cert, out string
	cmd := &cobra.Command{
		Use:   "sign --key KEY [--cert CERT] [-o OUT] PACK",
		Short: "Append a signature to PACK (CMS, as scripts/sign-file signs modules)",
		Long: "Append a signature by KEY to PACK: a CMS SignedData over the whole file, " +
			"SHA-256 and RSA, then the trailer of a signed kernel module. KEY is a PEM " +
			"private key; CERT its certificate (PEM or DER), or none when KEY holds both, " +
			"as the kernel's certs/signing_key.pem does. The signed pack replaces PACK, or goes to OUT.",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if key == "" {
				return usageError{errors.New("sign: --key is required")}
			}
			k, err := sign.LoadKey(key, cert)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			signed, err := sign.Append(data, k)
			if err != nil {
				return &signatureError{args[0], err}
			}
			if out == "" {
				out = args[0]
			}
			if err := writeAtomic(out, signed); err != nil {
				return err
			}
			fmt.Printf("signed %s as %s (serial %s)\n", out, k.Cert.Subject, k.Cert.SerialNumber)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "PEM private key (and certificate)")
	cmd.Flags().StringVar(&cert, "cert", "", "certificate of the key, PEM or DER, when not in --key")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the signed pack here instead of over PACK")
	return cmd
}

func verifyCmd() *cobra.Command {
	var trust string
	cmd := &cobra.Command{
		Use:   "verify [--trust DIR] PACK",
		Short: "Check PACK's signature against the trusted certificates",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			signer, err := verifyPack(args[0], trust)
			if err != nil {
				return err
			}
			fmt.Printf("%s: signed by %s (serial %s), trusted in %s\n", args[0], signer.Subject, signer.SerialNumber, trust)
			return nil
		},
	}
	cmd.Flags().StringVar(&trust, "trust", defaultTrust, "directory of trusted certificates (PEM or DER)")
	return cmd
}

// verifyPack checks the signature of the pack at path against the
// certificates in trust and returns its signer.
func verifyPack(path, trust string) (*x509.Certificate, error) {
	t, err := sign.LoadTrusted(trust)
	if err != nil {
		return nil, fmt.Errorf("trusted certificates: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := sign.Split(data)
	if err != nil {
		return nil, &signatureError{path, err}
	}
	c, err := t.Verify(s)
	if err != nil {
		return nil, &signatureError{path, err}
	}
	return c, nil
}

// writeAtomic writes data to path through a temporary file in its
// directory, so that path is whole or as it was.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".sign-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
