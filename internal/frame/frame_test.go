package frame

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cbfs/cbfs/crypt"
)

func testKeys(t *testing.T) *crypt.ArchiveKeys {
	t.Helper()
	k, err := crypt.KeyFromBytes(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return crypt.DeriveArchiveKeys(k, [crypt.IDSize]byte{1})
}

// TestSealOpenChunk: a sealed chunk opens to its plaintext, compressed,
// padded or neither; the CRC covers header and payload; a flipped byte
// fails the seal.
func TestSealOpenChunk(t *testing.T) {
	ak := testKeys(t)
	const cs = MinChunkSize
	plain := bytes.Repeat([]byte("chunk "), cs/6+1)[:cs]
	for _, c := range []struct {
		name   string
		padded bool
		lz4    bool
	}{{"stored", false, false}, {"lz4", false, true}, {"padded lz4", true, true}} {
		stored, flags := plain, byte(0)
		if c.lz4 {
			stored, flags = Compress(make([]byte, cs), plain), FlagLZ4
			if stored == nil {
				t.Fatal("did not compress")
			}
		}
		if c.padded {
			stored = Pad(stored, cs)
		}
		f := Seal(nil, ak, 'c', flags, 3, 5, stored)
		h, err := ParseHeader(f)
		if err != nil || int(h.Len) != len(f)-HeaderSize || CRC(f, f[HeaderSize:]) != h.CRC {
			t.Fatalf("%s: header %+v, %v", c.name, h, err)
		}
		got, err := OpenChunk(ak, h, f, bytes.Clone(f[HeaderSize:]), 3, 5, cs, c.padded, make([]byte, cs))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: %v", c.name, err)
		}
		f[HeaderSize] ^= 1
		if _, err := OpenChunk(ak, h, f, f[HeaderSize:], 3, 5, cs, c.padded, make([]byte, cs)); err != ErrAuth {
			t.Fatalf("%s: flipped payload gave %v", c.name, err)
		}
	}
	short := Seal(nil, ak, 'c', 0, 0, 1, plain[:10])
	h, _ := ParseHeader(short)
	var se *ChunkSizeError
	if _, err := OpenChunk(ak, h, short, short[HeaderSize:], 0, 1, cs, false, nil); !errors.As(err, &se) || se.Len != 10 {
		t.Fatalf("short non-final chunk: %v", err)
	}
}

func TestCheckChunkLen(t *testing.T) {
	const cs, tag = 4096, crypt.TagSize
	for _, c := range []struct {
		flags byte
		n     uint32
		want  error
	}{
		{FlagLZ4, tag, ErrLZ4Len}, {FlagLZ4, tag + 1, nil}, {FlagLZ4, cs + tag, ErrLZ4Len}, {FlagLZ4, cs + tag + 1, ErrLen},
		{0, cs + tag, nil}, {0, cs + tag - 1, ErrStoredLen}, {FlagFinal, tag, nil}, {FlagFinal, tag - 1, ErrLen},
		{FlagFinal, cs + tag + 1, ErrLen},
	} {
		if got := CheckChunkLen(Header{Kind: 'c', Flags: c.flags, Len: c.n}, cs); got != c.want {
			t.Errorf("flags %d length %d: %v, want %v", c.flags, c.n, got, c.want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	b := Append(nil, 'H', FlagFinal, []byte("x"))
	if _, err := ParseHeader(b); err != nil {
		t.Fatal(err)
	}
	b[2] = 1
	if _, err := ParseHeader(b); err != ErrReserved {
		t.Fatal(err)
	}
	b[2], b[1] = 0, 4
	if _, err := ParseHeader(b); err != ErrFlags {
		t.Fatal(err)
	}
}
