package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// The keys tokens are checked with, and the algorithms each may check. A
// key is tried only for the algorithms of its own kind, so that a token
// signed HS256 "with" an RSA public key (algorithm confusion) finds no key.

// minRSABits is the smallest RSA modulus accepted (NIST: 2048 bits).
const minRSABits = 2048

// MinHMACSecret is the shortest token_hmac_secret accepted, in bytes: the
// output size of SHA-256, as RFC 7518 section 3.2 asks for HS256.
const MinHMACSecret = 32

// verifyKey is one key: an HMAC secret ([]byte), *rsa.PublicKey,
// *ecdsa.PublicKey or ed25519.PublicKey, with its key id and, from a JWKS,
// the one algorithm it is for ("" for any of its kind).
type verifyKey struct {
	kid string
	alg string
	key any
}

// fits reports whether k may check a token signed with alg.
func (k verifyKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case []byte:
		return alg == "HS256" || alg == "HS384" || alg == "HS512"
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// algorithms are the signing algorithms accepted at all; "none" is not one.
var algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// ReadPublicKeyFile reads a PEM file holding one public key (a PUBLIC KEY
// block, or a CERTIFICATE whose key is used): RSA of 2048 bits or more,
// ECDSA on P-256, P-384 or P-521, or Ed25519. The error names the file and
// the problem. Configuration checks call it too.
func ReadPublicKeyFile(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKeyPEM reads the first PEM block of data as ReadPublicKeyFile does.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (want -----BEGIN PUBLIC KEY-----)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("a %q PEM block: want PUBLIC KEY (a private key does not belong here)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the key: %v", err)
	}
	return key, checkKey(key)
}

// checkKey refuses key kinds and sizes no accepted algorithm uses.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("an RSA key of %d bits: want %d or more", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("an ECDSA key on %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("a %T key: want RSA, ECDSA or Ed25519", key)
	}
	return nil
}

// jwk is one key of a JSON Web Key Set (RFC 7517), the members we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads a JSON Web Key Set: RSA, EC (P-256, P-384, P-521) and OKP
// (Ed25519) signing keys. Keys of other kinds, keys for encryption and keys
// for algorithms we do not accept are skipped (a JWKS may hold them for
// others); a set that leaves no key, or a key of our kinds that is broken,
// is an error, so that a bad refresh keeps the last good set.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %v", err)
	}
	var keys []verifyKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Alg != "" && !accepted(k.Alg) {
			continue
		}
		key, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		if key == nil {
			continue
		}
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, k.Kid, err)
		}
		vk := verifyKey{kid: k.Kid, alg: k.Alg, key: key}
		if k.Alg != "" && !vk.fits(k.Alg) {
			return nil, fmt.Errorf("key %d (kid %q): a %s key cannot check %s", i, k.Kid, k.Kty, k.Alg)
		}
		keys = append(keys, vk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no signing key we can use in the JWKS (want RSA, EC or Ed25519 keys)")
	}
	return keys, nil
}

func accepted(alg string) bool {
	for _, a := range algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// publicKey builds the key; nil, nil for a kind we do not use.
func (k jwk) publicKey() (any, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64int(k.N)
		e, err2 := b64int(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, nil
		}
		x, err1 := b64bytes(k.X)
		y, err2 := b64bytes(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("EC coordinates of %d and %d bytes on %s", len(x), len(y), k.Crv)
		}
		// Read through the uncompressed point form, which checks that
		// the point is on the curve.
		point := append(append([]byte{4}, x...), y...)
		key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("EC point: %v", err)
		}
		return key, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, nil
		}
		x, err := b64bytes(k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("an Ed25519 key of %d bytes", len(x))
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, nil
}

func b64bytes(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("a key member is missing")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("a key member is not base64url: %v", err)
	}
	return b, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := b64bytes(s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}
