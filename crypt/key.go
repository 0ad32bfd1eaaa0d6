// Package crypt holds the key schedule of format v1 and the sealing
// primitives; where keys come from is package keys. Nothing in this
// package ever formats key bytes: Key has no exported fields and prints
// as a fingerprint only.
package crypt

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// KeySize is the exact size of a key file: 32 raw bytes, nothing around them.
const KeySize = 32

// Key is a file system's long-lived key. The zero value is not a valid key.
type Key struct {
	b [KeySize]byte
}

// String never reveals key material.
func (k *Key) String() string { return "cbfs key " + k.ID() }

// GoString keeps %#v from dumping the bytes.
func (k *Key) GoString() string { return k.String() }

// ID is a short public fingerprint of the key: 16 hex digits of
// HKDF-SHA-256(key, "", "cbfs/v1 key id"), grouped by four.
func (k *Key) ID() string {
	b, err := hkdf.Key(sha256.New, k.b[:], nil, "cbfs/v1 key id", 8)
	if err != nil {
		panic("cbfs: hkdf failed") // cannot happen for an 8-byte output
	}
	h := hex.EncodeToString(b)
	return h[0:4] + "-" + h[4:8] + "-" + h[8:12] + "-" + h[12:16]
}

// KeyFromBytes makes a key from exactly KeySize bytes (tests, vectors, and
// callers that keep the key elsewhere).
func KeyFromBytes(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want exactly %d", len(b), KeySize)
	}
	k := new(Key)
	copy(k.b[:], b)
	return k, nil
}
