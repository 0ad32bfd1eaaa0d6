package format

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// RekeyOptions adjust Rekey.
type RekeyOptions struct {
	// Rand supplies the new archive id; crypto/rand when nil. Only tests
	// and the vector generator set it.
	Rand io.Reader
	// Workers is the number of goroutines opening and sealing frames;
	// GOMAXPROCS when 0.
	Workers int
}

// RekeyResult describes an archive Rekey wrote.
type RekeyResult struct {
	// Old and New are the source's and the new archive's headers.
	Old, New Header
	// OldKey is the one of the old keys the source was written under.
	OldKey  *crypt.Key
	Members uint64
	// Size is the size of the archive written: the source's, less any
	// zero blocks a tar tool added after its end.
	Size int64
	// Plain is the sum of the plaintexts sealed (the source's, as
	// opened): a Reader with ReaderOptions.PlainSum over the new archive
	// gives the same sum when it holds them frame for frame.
	Plain PlainSum
}

// ErrSameKey is a rekey to the key the archive is already under.
var ErrSameKey = errors.New("the new key is the key the archive is written under")

// Rekey reads a CBFS archive from src, which must open with one of
// oldKeys, and writes to dst the same archive sealed under newKey (archive
// spec 10.6): a new archive id, the same sequence number, chunk and record
// sizes and minor version, and the same frames in the same places holding
// the same plaintext. Each sealed frame is opened with the old archive
// keys and sealed again with the new ones, as it is: stored bytes stay
// stored, LZ4 blocks stay the same LZ4 blocks (nothing is decompressed or
// compressed), so every member, the summary and every offset in it are
// unchanged. Only the record names, the header, the CRCs, the tags, the
// footer's id, digest and MAC differ.
//
// Every byte of the source is checked as a streaming reader checks it
// with the key (framing, grammar, every seal, the header and footer MACs,
// the digest), except what needs the plaintext decoded (metadata records,
// LZ4 blocks, the summary against the members): the new archive holds
// the same plaintext, and a keyed verify of it checks those. What was
// written to dst before an error is not an archive: the caller discards
// it. Memory is bounded by a window of frames, whatever the archive's
// size.
func Rekey(dst io.Writer, src io.Reader, oldKeys []*crypt.Key, newKey *crypt.Key, opt RekeyOptions) (*RekeyResult, error) {
	if newKey == nil {
		return nil, errors.New("rekey: no new key")
	}
	pr := &physReader{r: bufio.NewReaderSize(src, 256<<10)}
	hdr, err := pr.readHeaderRecord()
	if err != nil {
		return nil, err
	}
	oldAK, err := hdr.pickKeys(oldKeys)
	if err != nil {
		return nil, err
	}
	if oldAK == nil {
		return nil, errors.New("rekey: no old key")
	}
	if err := hdr.Authenticate(oldAK); err != nil {
		return nil, err
	}
	res := &RekeyResult{Old: *hdr, OldKey: hdr.KeyOf(oldKeys...)}
	if res.OldKey.ID() == newKey.ID() {
		return nil, ErrSameKey
	}
	pr.size = int64(hdr.RecordSize)

	nh := Header{Major: hdr.Major, Minor: hdr.Minor, Suite: hdr.Suite, ChunkSize: hdr.ChunkSize,
		RecordSize: hdr.RecordSize, Sequence: hdr.Sequence}
	rnd := opt.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	for nh.ID == hdr.ID || nh.ID == [crypt.IDSize]byte{} {
		if _, err := io.ReadFull(rnd, nh.ID[:]); err != nil {
			return nil, fmt.Errorf("archive id: %w", err)
		}
	}
	newAK := crypt.DeriveArchiveKeys(newKey, nh.ID)
	nh.Check = newAK.Check()
	nh.MAC = newAK.MAC(nh.encodeNoMAC())
	res.New = nh

	rw := newRecordWriter(dst, nh.ID, int(nh.RecordSize))
	defer rw.stop()
	rw.writeHeaderRecord(frame.Append(nil, KindHeader, FlagFinal, nh.Encode()))

	rk := &rekeyer{old: oldAK, new: newAK, cs: int64(hdr.ChunkSize)}
	rk.bufs = newFreeList(FrameHeaderSize+int(summaryFrameLen(rk.cs)), (rekeyDepth+2)*rekeyBatchFrames+2)
	n := opt.Workers
	if n <= 0 {
		n = workers()
	}
	pipe := newOrdered(func(b *rekeyBatch) { b.run(rk) }, n, rekeyDepth)
	done := make(chan error, 1)
	go func() { done <- rk.assemble(pipe, rw) }()
	summaryOffset, members, err := rk.produce(pr, pipe)
	pipe.close()
	if aerr := <-done; err == nil {
		err = aerr
	}
	if err != nil {
		return nil, err
	}
	f, err := pr.readFooterRecord()
	if err != nil {
		return nil, err
	}
	oldDigest := pr.digest.Sum()
	switch {
	case f.ID != hdr.ID:
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "footer belongs to archive %x, not %x", f.ID, hdr.ID)
	case f.Header != *hdr:
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "the footer's copy of the archive header differs from record 0")
	case f.Members != members:
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "footer counts %d members, the archive holds %d", f.Members, members)
	case f.SummaryOffset != uint64(summaryOffset) || f.StreamLength != uint64(pr.logical):
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "footer's summary offset or stream length does not match the archive")
	case subtle.ConstantTimeCompare(f.Digest[:], oldDigest[:]) != 1:
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "archive digest mismatch: a frame header or tag, or the header frame, was changed")
	case !f.Authenticate(oldAK):
		err = newErr(ClassFooter, int64(f.FooterOffset), -1, "footer MAC mismatch")
	}
	if err != nil {
		return nil, err
	}

	rw.flushData()
	digest, err := rw.finish()
	if err != nil {
		return nil, err
	}
	if rw.logical != pr.logical || uint64(rw.phys) != f.FooterOffset {
		// The layout is the source's by construction.
		return nil, fmt.Errorf("rekey: the new archive's layout differs from the source's (stream %d of %d, footer at %d of %d)",
			rw.logical, pr.logical, rw.phys, f.FooterOffset)
	}
	nf := Footer{Major: f.Major, Minor: f.Minor, ID: nh.ID, Members: f.Members, SummaryOffset: f.SummaryOffset,
		SummaryLength: f.SummaryLength, StreamLength: f.StreamLength, FooterOffset: f.FooterOffset, Digest: digest, Header: nh}
	nf.MAC = newAK.MAC(nf.encodeNoMAC())
	footer := frame.Append(nil, KindFooter, FlagFinal, nf.Encode())
	tail := append(outerHeader(nh.ID, rw.next, int64(len(footer)))[:], footer...)
	tail = append(tail, make([]byte, PadLen(int64(len(footer)))+2*BlockSize)...)
	if _, err := dst.Write(tail); err != nil {
		return nil, &OutputError{Err: err}
	}
	res.Members = f.Members
	res.Size = rw.phys + int64(len(tail))
	res.Plain = rk.plain
	return res, nil
}

type rekeyer struct {
	old, new *crypt.ArchiveKeys
	cs       int64
	bufs     *freeList
	plain    PlainSum // of the frames written, in order (assemble's)
}

// rekeyJob is one sealed frame: buf holds its header and payload, opened
// and sealed again in place.
type rekeyJob struct {
	fh     frame.Header
	buf    []byte
	stream uint32
	index  uint64
	phys   int64
	member int64 // for errors: -1 for the summary
	err    error
	// plen and crc are the opened plaintext's length and CRC-32C.
	plen int
	crc  uint32
}

type rekeyBatch struct {
	jobs  []rekeyJob
	bytes int
}

// run opens each frame with the old archive keys and seals its plaintext
// as it is, in the same buffer, with the new ones: same kind, flags,
// stream and index, so the same nonce and associated data under the new
// key.
func (b *rekeyBatch) run(rk *rekeyer) {
	for i := range b.jobs {
		j := &b.jobs[i]
		payload := j.buf[FrameHeaderSize:]
		plain, err := frame.Open(rk.old, j.fh, j.buf[:FrameHeaderSize], payload, j.stream, j.index)
		if err != nil {
			class := ClassMember
			if j.fh.Kind == KindSummary {
				class = ClassSummary
			}
			j.err = newErr(class, j.phys, j.member, "%s frame %d failed authentication", frameName(j.fh.Kind), j.index)
			continue
		}
		j.plen, j.crc = len(plain), plainCRC(plain)
		out := frame.Seal(j.buf[:0], rk.new, j.fh.Kind, j.fh.Flags, j.stream, j.index, plain)
		if len(out) != len(j.buf) || &out[0] != &j.buf[0] {
			panic("cbfs rekey: a frame changed size when sealed again")
		}
	}
}

// produce reads the source's frames in order, checks their framing and
// the grammar (m c* c_final)* s* s_final, as a streaming reader does, and
// hands them to the pipeline in batches. It returns the summary's offset
// and the member count.
func (rk *rekeyer) produce(pr *physReader, pipe *ordered[*rekeyBatch]) (int64, uint64, error) {
	var member uint32
	var index uint64
	var state byte = KindMeta
	summaryOffset := int64(-1)
	b := &rekeyBatch{}
	flush := func() {
		if len(b.jobs) > 0 {
			pipe.submit(b)
			b = &rekeyBatch{jobs: make([]rekeyJob, 0, rekeyBatchFrames)}
		}
	}
	defer flush()
	for {
		logical := pr.logical
		phys := pr.physOf(logical)
		var hb [FrameHeaderSize]byte
		if err := pr.readLogical(hb[:]); err != nil {
			return 0, 0, err
		}
		fh, bad := parseFrameHeader(hb[:])
		if bad == "" {
			bad = checkFrameLen(fh, rk.cs)
		}
		if bad != "" {
			return 0, 0, newErr(ClassFrame, phys, memberOr(state, member), "%s", bad)
		}
		switch {
		case state == KindMeta && fh.Kind == KindMeta:
			if uint64(member) >= MaxMembers {
				return 0, 0, newErr(ClassFrame, phys, -1, "over %d members", uint64(MaxMembers))
			}
			state, index = KindContent, 0
		case state == KindContent && fh.Kind == KindContent:
		case (state == KindMeta || state == KindSummary) && fh.Kind == KindSummary:
			if state == KindMeta {
				summaryOffset = logical
				state, index = KindSummary, 0
			}
		default:
			return 0, 0, newErr(ClassFrame, phys, memberOr(state, member), "%q frame where a %q frame belongs", fh.Kind, state)
		}
		if index >= MaxChunks {
			return 0, 0, newErr(ClassFrame, phys, int64(member), "over %d frames in one stream", uint64(MaxChunks))
		}
		j := rekeyJob{fh: fh, stream: member, index: index, phys: phys, member: int64(member)}
		if fh.Kind == KindSummary {
			j.stream, j.member = 0, -1
		}
		n := FrameHeaderSize + int(fh.Len)
		if n <= rk.bufs.size {
			j.buf = rk.bufs.get()[:n]
		} else {
			j.buf = make([]byte, n) // a metadata frame larger than a chunk
		}
		copy(j.buf, hb[:])
		if err := pr.readLogical(j.buf[FrameHeaderSize:]); err != nil {
			return 0, 0, err
		}
		if frame.CRC(hb[:], j.buf[FrameHeaderSize:]) != fh.CRC {
			return 0, 0, newErr(ClassFrame, phys, memberOr(state, member), "frame checksum mismatch")
		}
		pr.digest.Frame(hb[:], j.buf[FrameHeaderSize:])
		b.jobs = append(b.jobs, j)
		b.bytes += n
		if len(b.jobs) >= rekeyBatchFrames || b.bytes >= batchBytes {
			flush()
		}
		if fh.Kind == KindMeta {
			index = 0
		} else {
			index++
		}
		if fh.Kind == KindContent && fh.Final() {
			member++
			state = KindMeta
		}
		if fh.Kind == KindSummary && fh.Final() {
			return summaryOffset, uint64(member), nil
		}
	}
}

// assemble writes the sealed frames in order into the new records. After
// a failed frame it drains the pipeline, writing nothing more.
func (rk *rekeyer) assemble(pipe *ordered[*rekeyBatch], rw *recordWriter) error {
	var first error
	for {
		b, ok := pipe.next()
		if !ok {
			return first
		}
		for i := range b.jobs {
			j := &b.jobs[i]
			if first == nil && j.err != nil {
				first = j.err
			}
			if first == nil {
				rk.plain.add(j.fh.Kind, j.fh.Flags, j.plen, j.crc)
				rw.writeFrame(j.buf)
				if err := rw.error(); err != nil {
					first = err
				}
			}
			rk.bufs.put(j.buf[:cap(j.buf)])
			j.buf = nil
		}
	}
}

// rekeyDepth is how many batches of frames may be in flight between
// reading and writing: a batch is up to batchBytes, and opening and
// sealing a frame costs little, so a few per core keep every core busy.
const rekeyDepth = 8

// rekeyBatchFrames caps a batch's frames: each holds a buffer of a whole
// frame's size however small the frame.
const rekeyBatchFrames = 8
