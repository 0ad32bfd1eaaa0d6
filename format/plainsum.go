package format

import (
	"encoding/binary"
	"hash/crc32"
)

// PlainSum folds the plaintexts of an archive's sealed frames (m, c and s,
// as sealed: padded metadata records, stored chunks or their LZ4 blocks,
// padded summary chunks), in order, into one value, with no plaintext
// decoded. Rekey computes it over the frames it opens from the source, and
// a Reader with ReaderOptions.PlainSum over those it opens from the new
// archive: equal sums show that the new archive holds, frame for frame,
// the source's plaintext (archive spec 10.6), so that every check that
// decodes plaintext holds for one exactly when it holds for the other.
// It is a checksum against faults (a buffer reused too early, a frame
// sealed twice, memory), not a MAC: both archives are sealed already.
type PlainSum struct {
	Frames uint64
	Sum    uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// plainCRC is the CRC-32C of one frame's plaintext.
func plainCRC(plain []byte) uint32 { return crc32.Checksum(plain, castagnoli) }

// add folds one frame in: its kind, flags, plaintext length and CRC.
func (s *PlainSum) add(kind, flags byte, n int, crc uint32) {
	var b [10]byte
	b[0], b[1] = kind, flags
	binary.LittleEndian.PutUint32(b[2:], uint32(n))
	binary.LittleEndian.PutUint32(b[6:], crc)
	s.Sum = crc32.Update(s.Sum, castagnoli, b[:])
	s.Frames++
}
