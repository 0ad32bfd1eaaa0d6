package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
)

// Labels of the master index key schedule (spec/cbfs-index-v1.md, "Key
// schedule"). Changing one is a new major index version.
const (
	labelIndex      = "cbfs/v1 index"
	labelIndexMAC   = "cbfs/v1 index mac"
	labelIndexCheck = "cbfs/v1 index key check"
)

// SIVSize is the size of a master index's synthetic IV.
const SIVSize = 16

// IndexMAC returns the keyed hash of a master index's content: the first
// SIVSize bytes of its sum are the index's synthetic IV. The key is the
// same for every index of a file system, so equal content gives an equal
// IV; that is what makes an index deterministic without a random salt.
func IndexMAC(k *Key) hash.Hash {
	mk := derive(k, nil, labelIndexMAC, 32)
	defer clear(mk)
	return hmac.New(sha256.New, mk)
}

// IndexKeys seal one master index. They are derived from the file
// system's key and the index's synthetic IV, so different content never
// shares an AEAD key, and nonces only need to be unique within one index.
type IndexKeys struct {
	aead  cipher.AEAD
	check [CheckSize]byte
}

// DeriveIndexKeys runs the index key schedule for one synthetic IV.
func DeriveIndexKeys(k *Key, siv [SIVSize]byte) *IndexKeys {
	ik := new(IndexKeys)
	ek := derive(k, siv[:], labelIndex, 32)
	defer clear(ek)
	block, err := aes.NewCipher(ek)
	if err != nil {
		panic("cbfs: aes: " + err.Error())
	}
	ik.aead, err = cipher.NewGCM(block)
	if err != nil {
		panic("cbfs: gcm: " + err.Error())
	}
	// The check value is salted with nothing, not with the IV: a damaged
	// IV then fails as damage (the content does not open), not as a wrong
	// key. It tells no more than the key's public fingerprint does.
	copy(ik.check[:], derive(k, nil, labelIndexCheck, CheckSize))
	return ik
}

// Check is the index's key check value: public, and equal only for the
// right key.
func (ik *IndexKeys) Check() [CheckSize]byte { return ik.check }

// CheckMatches compares a stored key check value in constant time.
func (ik *IndexKeys) CheckMatches(b []byte) bool {
	return subtle.ConstantTimeCompare(ik.check[:], b) == 1
}

// Seal appends the sealed plaintext and its tag to dst.
func (ik *IndexKeys) Seal(dst []byte, nonce [NonceSize]byte, plaintext, ad []byte) []byte {
	return ik.aead.Seal(dst, nonce[:], plaintext, ad)
}

// Open appends the opened ciphertext to dst, or returns ErrOpen.
func (ik *IndexKeys) Open(dst []byte, nonce [NonceSize]byte, ciphertext, ad []byte) ([]byte, error) {
	out, err := ik.aead.Open(dst, nonce[:], ciphertext, ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
