package members

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// additional is authenticated with every datagram, so a sealed message of
// another protocol or version is refused.
var additional = []byte("vigil-members/1")

// ParseKey decodes the shared key: standard base64 of 16, 24 or 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty key")
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("key is %d bytes, want 16, 24 or 32", len(k))
}

// Fingerprint names a key without revealing it: "sha256:" and the first 8
// bytes of its SHA-256, in hex. Agents compare fingerprints through the API.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// sealer encrypts and authenticates datagrams.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("members: key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("members: key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns nonce || ciphertext.
func (s *sealer) seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("members: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, additional), nil
}

// open authenticates and decrypts a datagram sealed with the same key.
func (s *sealer) open(b []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(b) < n+s.aead.Overhead() {
		return nil, errors.New("members: datagram too short")
	}
	return s.aead.Open(nil, b[:n], b[n:], additional)
}
