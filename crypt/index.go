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
	labelIndexBlock = "cbfs/v1 index block"
	labelIndexDir   = "cbfs/v1 index directory"
	labelIndexMAC   = "cbfs/v1 index mac"
	labelIndexCheck = "cbfs/v1 index key check"
)

// SIVSize is the size of a synthetic IV of a master index's sealed frame.
const SIVSize = 16

// IndexMAC returns the keyed hash a master index's synthetic IVs are
// taken from: the first SIVSize bytes of its sum over a frame's context
// and exactly the bytes that frame seals. The key is the same for every
// index of a file system, so equal content gives an equal IV; that is
// what makes an index deterministic without a random salt.
func IndexMAC(k *Key) hash.Hash {
	mk := derive(k, nil, labelIndexMAC, 32)
	defer clear(mk)
	return hmac.New(sha256.New, mk)
}

// IndexCheck is the key check value of every index under k: public, and
// equal only for the right key. It is salted with nothing, so that a
// damaged IV fails as damage (the frame does not open), not as a wrong
// key. It tells no more than the key's public fingerprint does.
func IndexCheck(k *Key) [CheckSize]byte {
	var c [CheckSize]byte
	copy(c[:], derive(k, nil, labelIndexCheck, CheckSize))
	return c
}

// IndexCheckMatches compares a stored key check value in constant time.
func IndexCheckMatches(k *Key, b []byte) bool {
	c := IndexCheck(k)
	return subtle.ConstantTimeCompare(c[:], b) == 1
}

// IndexKeys seal one frame of a master index: an AEAD key derived from
// the file system's key and the frame's synthetic IV, itself a MAC of
// exactly the bytes sealed. Two frames with different sealed bytes never
// share a key (short of a 128-bit MAC collision), so the one nonce each
// key seals under never repeats with different plaintext.
type IndexKeys struct {
	aead cipher.AEAD
}

// DeriveIndexKeys derives the AEAD key of a record block (dir false) or
// of the block directory (dir true) from its synthetic IV.
func DeriveIndexKeys(k *Key, dir bool, siv [SIVSize]byte) *IndexKeys {
	label := labelIndexBlock
	if dir {
		label = labelIndexDir
	}
	ek := derive(k, siv[:], label, 32)
	defer clear(ek)
	block, err := aes.NewCipher(ek)
	if err != nil {
		panic("cbfs: aes: " + err.Error())
	}
	ik := new(IndexKeys)
	ik.aead, err = cipher.NewGCM(block)
	if err != nil {
		panic("cbfs: gcm: " + err.Error())
	}
	return ik
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
