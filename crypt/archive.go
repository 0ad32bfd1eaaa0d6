package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// Labels of the v1 key schedule (spec section "Key schedule"). Changing one
// is a new major format version.
const (
	labelAEAD  = "cbfs/v1 aead"
	labelMAC   = "cbfs/v1 mac"
	labelCheck = "cbfs/v1 key check"
)

const (
	// IDSize is the size of an archive id, the HKDF salt of its subkeys.
	IDSize = 16
	// CheckSize is the size of an archive's key check value.
	CheckSize = 16
	// MACSize is the size of a header or footer MAC.
	MACSize = 32
	// TagSize is the AEAD tag appended to every sealed frame.
	TagSize = 16
	// NonceSize is the AES-GCM nonce size.
	NonceSize = 12
)

// ErrOpen is returned when a sealed frame fails authentication. It carries
// no detail on purpose.
var ErrOpen = errors.New("authentication failed")

// ArchiveKeys are the subkeys of one archive, derived from the file
// system's key and the archive id. Each archive has its own AEAD key, so
// nonces only need to be unique within an archive, and they are by
// construction (see Nonce).
type ArchiveKeys struct {
	aead  cipher.AEAD
	mac   [32]byte
	check [CheckSize]byte
}

func derive(k *Key, salt []byte, label string, n int) []byte {
	b, err := hkdf.Key(sha256.New, k.b[:], salt, label, n)
	if err != nil {
		panic("cbfs: hkdf failed") // only for n > 255*32
	}
	return b
}

// DeriveArchiveKeys runs the v1 key schedule for one archive.
func DeriveArchiveKeys(k *Key, id [IDSize]byte) *ArchiveKeys {
	ak := new(ArchiveKeys)
	ek := derive(k, id[:], labelAEAD, 32)
	defer clear(ek)
	block, err := aes.NewCipher(ek)
	if err != nil {
		panic("cbfs: aes: " + err.Error())
	}
	ak.aead, err = cipher.NewGCM(block)
	if err != nil {
		panic("cbfs: gcm: " + err.Error())
	}
	mk := derive(k, id[:], labelMAC, 32)
	copy(ak.mac[:], mk)
	clear(mk)
	copy(ak.check[:], derive(k, id[:], labelCheck, CheckSize))
	return ak
}

// Check is the archive's key check value: public, and equal only for the
// right key.
func (ak *ArchiveKeys) Check() [CheckSize]byte { return ak.check }

// CheckMatches compares a stored key check value in constant time.
func (ak *ArchiveKeys) CheckMatches(b []byte) bool {
	return subtle.ConstantTimeCompare(ak.check[:], b) == 1
}

// MAC is HMAC-SHA-256 under the archive's MAC key.
func (ak *ArchiveKeys) MAC(parts ...[]byte) [MACSize]byte {
	h := hmac.New(sha256.New, ak.mac[:])
	for _, p := range parts {
		h.Write(p)
	}
	var out [MACSize]byte
	h.Sum(out[:0])
	return out
}

// MACMatches checks a MAC in constant time.
func (ak *ArchiveKeys) MACMatches(mac []byte, parts ...[]byte) bool {
	want := ak.MAC(parts...)
	return hmac.Equal(want[:], mac)
}

// Nonce builds the v1 frame nonce: frame kind, final flag, stream number
// (big-endian 32 bits), index within the stream (big-endian 48 bits).
// No two frames of one archive share (kind, stream, index), so no nonce
// repeats under an archive key.
func Nonce(kind byte, final bool, stream uint32, index uint64) [NonceSize]byte {
	var n [NonceSize]byte
	n[0] = kind
	if final {
		n[1] = 1
	}
	binary.BigEndian.PutUint32(n[2:6], stream)
	var ix [8]byte
	binary.BigEndian.PutUint64(ix[:], index)
	copy(n[6:12], ix[2:8])
	return n
}

// Seal appends the sealed plaintext and its tag to dst.
func (ak *ArchiveKeys) Seal(dst []byte, nonce [NonceSize]byte, plaintext, ad []byte) []byte {
	return ak.aead.Seal(dst, nonce[:], plaintext, ad)
}

// Open appends the opened ciphertext to dst, or returns ErrOpen.
func (ak *ArchiveKeys) Open(dst []byte, nonce [NonceSize]byte, ciphertext, ad []byte) ([]byte, error) {
	out, err := ak.aead.Open(dst, nonce[:], ciphertext, ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
