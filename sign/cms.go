package sign

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
)

var (
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSHA256     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

// The CMS structures this package writes and reads (RFC 5652), in
// encoding/asn1's terms: a detached SignedData, one SignerInfo without
// signed attributes, no certificates.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
	EncapContentInfo encapContentInfo
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

type encapContentInfo struct {
	EContentType asn1.ObjectIdentifier
	EContent     asn1.RawValue `asn1:"optional,explicit,tag:0"`
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

type signerInfo struct {
	Version            int
	SID                issuerAndSerial
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
}

var asn1Null = asn1.RawValue{Tag: asn1.TagNull}

// marshalCMS encodes the SignedData of one signature by the certificate
// whose raw issuer and serial are given.
func marshalCMS(rawIssuer []byte, serial *big.Int, sig []byte) ([]byte, error) {
	sd := signedData{
		Version:          1,
		DigestAlgorithms: []pkix.AlgorithmIdentifier{{Algorithm: oidSHA256, Parameters: asn1Null}},
		EncapContentInfo: encapContentInfo{EContentType: oidData},
		SignerInfos: []signerInfo{{
			Version:            1,
			SID:                issuerAndSerial{Issuer: asn1.RawValue{FullBytes: rawIssuer}, Serial: serial},
			DigestAlgorithm:    pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1Null},
			SignatureAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSA, Parameters: asn1Null},
			Signature:          sig,
		}},
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(contentInfo{
		ContentType: oidSignedData,
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner},
	})
}

// cmsSigner is what a SignedData says about its one signature.
type cmsSigner struct {
	rawIssuer []byte
	serial    *big.Int
	sig       []byte
}

// parseCMS decodes a SignedData as marshalCMS writes it and refuses any
// other shape: detached, SHA-256 and RSA, one signer, no signed
// attributes.
func parseCMS(der []byte) (*cmsSigner, error) {
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("CMS: %w", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("CMS: bytes after the ContentInfo")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("CMS: content type %v, not signedData", ci.ContentType)
	}
	var sd signedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("CMS SignedData: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("CMS: bytes after the SignedData")
	}
	switch {
	case !sd.EncapContentInfo.EContentType.Equal(oidData):
		return nil, fmt.Errorf("CMS: signed content of type %v, not data", sd.EncapContentInfo.EContentType)
	case len(sd.EncapContentInfo.EContent.FullBytes) > 0:
		return nil, errors.New("CMS: the content is inside, not detached")
	case len(sd.SignerInfos) != 1:
		return nil, fmt.Errorf("CMS: %d signers, not 1", len(sd.SignerInfos))
	}
	si := sd.SignerInfos[0]
	switch {
	case len(si.SignedAttrs.FullBytes) > 0:
		return nil, errors.New("CMS: signed attributes, which this format has none of")
	case !si.DigestAlgorithm.Algorithm.Equal(oidSHA256):
		return nil, fmt.Errorf("CMS: digest %v, not SHA-256", si.DigestAlgorithm.Algorithm)
	case !si.SignatureAlgorithm.Algorithm.Equal(oidRSA):
		return nil, fmt.Errorf("CMS: signature algorithm %v, not RSA", si.SignatureAlgorithm.Algorithm)
	case si.SID.Serial == nil:
		return nil, errors.New("CMS: the signer has no serial number")
	}
	return &cmsSigner{rawIssuer: si.SID.Issuer.FullBytes, serial: si.SID.Serial, sig: si.Signature}, nil
}
