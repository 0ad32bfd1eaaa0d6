package format

import (
	"crypto/sha256"
	"hash"

	"github.com/cbfs/cbfs/crypt"
)

// Digest computes the footer's digest (spec 6.2): SHA-256 over record 0's
// header frame, then, for each frame of the logical frame stream in
// order, its 12-byte header (which holds its CRC) and its last 16 bytes
// (the AEAD tag). The ciphertext itself is not hashed: its CRC finds an
// accidental change without the key, and its tag, which the digest binds
// under the footer MAC, a deliberate one with it. Hashing every byte of
// the archive took a quarter of the CPU of an uncompressed import and
// was its longest serial path; this is 28 bytes a frame.
type Digest struct{ h hash.Hash }

// NewDigest starts a digest with headerFrame, the 104-byte `H` frame of
// record 0 (its frame header and payload, no padding).
func NewDigest(headerFrame []byte) *Digest {
	d := &Digest{h: sha256.New()}
	d.h.Write(headerFrame)
	return d
}

// Frame adds one frame of the logical frame stream: hdr is its 12-byte
// frame header, payload its payload (ciphertext and tag). SHA-256 keeps
// the partial block itself: two small writes a frame cost nothing next
// to the frame's own 64 KiB.
func (d *Digest) Frame(hdr, payload []byte) {
	d.h.Write(hdr[:FrameHeaderSize])
	d.h.Write(payload[max(0, len(payload)-crypt.TagSize):])
}

// Sum returns the digest of what was added.
func (d *Digest) Sum() [32]byte {
	var s [32]byte
	d.h.Sum(s[:0])
	return s
}
