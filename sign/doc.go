// Package sign signs files the way the kernel's scripts/sign-file signs
// modules, and checks such signatures: a detached CMS SignedData (RFC
// 5652) over the whole file, SHA-256, RSA PKCS #1 v1.5, no signed
// attributes and no certificates inside, naming its signer by issuer and
// serial number; appended to the file, then a 12-byte struct
// module_signature (id_type PKEY_ID_PKCS7, sig_len big-endian) and the
// magic "~Module signature appended~\n".
//
// One format serves both what livesplice signs: the update module, whose
// signature the kernel itself checks when it enforces module signatures,
// and the update pack, whose signature livesplice checks before anything
// is loaded. The keys are the X.509 certificate and private key a
// distribution already keeps for module signing (certs/signing_key.pem,
// which holds both, or a key and a certificate apart), and the trusted
// set is a directory of certificates, PEM or DER.
//
// Outside livesplice, the signature of a file F is checked with the
// kernel's scripts/extract-module-sig.pl and OpenSSL:
//
//	extract-module-sig.pl -0 F > payload
//	extract-module-sig.pl -s F > sig.p7s
//	openssl cms -verify -binary -inform DER -in sig.p7s -content payload \
//		-certfile CERT.pem -CAfile CERT.pem -purpose any -out /dev/null
//
// (OpenSSL wants the certificate in PEM there.)
//
// Values read from files (a Signature split off a file) stay apart from
// the keys and certificates they are checked against (Trusted).
package sign
