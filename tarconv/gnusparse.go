package tarconv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/cbfs/cbfs/format"
)

// GNU tar's pax sparse formats, read here rather than by Go's archive/tar,
// which refuses a pax header or a sparse map over 1 MiB: GNU tar writes
// 4.7 MB of pax records for a file of 80,000 data extents in format 0.0,
// 1.2 MB in 0.1, and a map of 1.2 MB in front of the data in 1.0. Import
// takes pax headers up to maxPAXSize; these formats are expanded with
// maps up to that size, held in memory as one Extent (16 bytes) per
// extent. Old GNU 'S' entries still go through Go's reader, which has no
// such bound on them.

// paxSparse is what an imported entry's pax records say about its sparse
// layout.
type paxSparse struct {
	major   int             // 0: the map is in the pax records; 1: in front of the data
	extents []format.Extent // format 0.0 and 0.1
	size    int64           // the file's real size
}

// readPAXSparse finds GNU sparse pax records in an imported entry's raw
// header bytes (as import keeps them: the previous entry's padding, then
// whole blocks). ok is false when the entry is not a GNU pax sparse file
// of a version known here; err says why a map is malformed.
func readPAXSparse(raw []byte) (sp *paxSparse, ok bool, err error) {
	var nums []int64 // 0.0: offset, numbytes, ... in record order
	var mapRec []byte
	var major, minor, numblocks, size, realsize []byte
	for off := len(raw) % format.BlockSize; off+format.BlockSize <= len(raw); {
		b := (*format.Block)(raw[off : off+format.BlockSize])
		off += format.BlockSize
		tf := b.Typeflag()
		if tf != 'x' && tf != 'L' && tf != 'K' {
			break // the main header
		}
		n, perr := format.ParseNumeric(b.Size())
		if perr != nil || n < 0 || n > int64(len(raw)-off) {
			return nil, false, nil
		}
		body := raw[off : off+int(n)]
		off += int(n + format.PadLen(n))
		if tf != 'x' {
			continue
		}
		err := eachPAXRecord(body, func(k string, v []byte) error {
			switch k {
			case "GNU.sparse.offset", "GNU.sparse.numbytes":
				// GNU tar writes them in pairs, offset first.
				want := "GNU.sparse.offset"
				if len(nums)%2 == 1 {
					want = "GNU.sparse.numbytes"
				}
				if k != want {
					return errors.New("GNU.sparse.offset and GNU.sparse.numbytes records out of pairs")
				}
				x, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					return fmt.Errorf("%s %q is not a number", k, v)
				}
				nums = append(nums, x)
			case "GNU.sparse.map":
				mapRec = v
			case "GNU.sparse.major":
				major = v
			case "GNU.sparse.minor":
				minor = v
			case "GNU.sparse.numblocks":
				numblocks = v
			case "GNU.sparse.size":
				size = v
			case "GNU.sparse.realsize":
				realsize = v
			}
			return nil
		})
		if err != nil {
			return nil, true, err
		}
	}
	// Versions as Go's reader tells them apart: 0.0 and 0.1 may have no
	// version records.
	sp = &paxSparse{}
	switch mj, mn := string(major), string(minor); {
	case mj == "0" && (mn == "0" || mn == "1"):
	case mj == "1" && mn == "0":
		sp.major = 1
	case major != nil || minor != nil:
		return nil, false, nil
	case mapRec == nil && nums == nil:
		return nil, false, nil
	}
	sz := size
	if realsize != nil {
		sz = realsize
	}
	if sp.size, err = strconv.ParseInt(string(sz), 10, 64); err != nil || sp.size < 0 {
		return nil, true, errors.New("GNU sparse file without a valid real size")
	}
	if sp.major == 1 {
		return sp, true, nil
	}
	if mapRec != nil {
		nums = nums[:0]
		for f := range bytes.SplitSeq(mapRec, []byte(",")) {
			x, err := strconv.ParseInt(string(f), 10, 64)
			if err != nil {
				return nil, true, fmt.Errorf("GNU.sparse.map holds %q, not a number", f)
			}
			nums = append(nums, x)
		}
	}
	n, err := strconv.ParseInt(string(numblocks), 10, 64)
	if err != nil || n < 0 || 2*n != int64(len(nums)) {
		return nil, true, fmt.Errorf("GNU.sparse.numblocks %q does not match the %d numbers of the map", numblocks, len(nums))
	}
	sp.extents = make([]format.Extent, 0, n)
	for i := 0; i < len(nums); i += 2 {
		sp.extents = append(sp.extents, format.Extent{Offset: nums[i], Length: nums[i+1]})
	}
	return sp, true, checkExtents(sp.extents, sp.size)
}

// checkExtents applies Go's reader's rules to a sparse map: extents in
// order, not overlapping, within the file.
func checkExtents(ext []format.Extent, size int64) error {
	var end int64
	for _, e := range ext {
		if e.Offset < 0 || e.Length < 0 || e.Offset > size-e.Length || e.Offset < end {
			return fmt.Errorf("sparse map: extent at %d of %d bytes is out of order, overlaps or passes the size %d", e.Offset, e.Length, size)
		}
		end = e.Offset + e.Length
	}
	return nil
}

// eachPAXRecord calls fn with each pax record of b in order.
func eachPAXRecord(b []byte, fn func(k string, v []byte) error) error {
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return errors.New("pax record without a length")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return errors.New("bad pax record length")
		}
		rec := b[sp+1 : n-1]
		eq := bytes.IndexByte(rec, '=')
		if eq <= 0 {
			return errors.New("bad pax record key")
		}
		if err := fn(string(rec[:eq]), rec[eq+1:]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// paxSparseContent writes the file an imported GNU pax sparse entry
// holds, its holes as zeros; data is the entry's data area.
func paxSparseContent(sp *paxSparse, data io.Reader, w io.Writer) error {
	ext := sp.extents
	if sp.major == 1 {
		var err error
		br := bufio.NewReaderSize(data, 64<<10)
		if ext, err = readSparseMap1x0(br, sp.size); err != nil {
			return err
		}
		data = br
	}
	sw := &sparseWriter{w: w, extents: ext}
	if _, err := io.Copy(sw, data); err != nil {
		return err
	}
	return sw.finish(sp.size)
}

// readSparseMap1x0 reads the map GNU sparse 1.0 puts in front of the
// data: decimal lines (the count, then offset and length of each extent)
// padded with zeros to a whole block, of at most maxPAXSize bytes.
func readSparseMap1x0(br *bufio.Reader, size int64) ([]format.Extent, error) {
	read := int64(0)
	next := func() (int64, error) {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if read > maxPAXSize {
			return 0, fmt.Errorf("GNU sparse 1.0 map over the %d-byte cap", maxPAXSize)
		}
		if err != nil {
			return 0, errors.New("GNU sparse 1.0 map cut short")
		}
		x, err := strconv.ParseInt(string(line[:len(line)-1]), 10, 64)
		if err != nil || x < 0 {
			return 0, fmt.Errorf("GNU sparse 1.0 map holds %q, not a number", line[:len(line)-1])
		}
		return x, nil
	}
	n, err := next()
	if err != nil {
		return nil, err
	}
	// The count is not trusted for an allocation: the map grows as its
	// lines are read.
	ext := make([]format.Extent, 0, min(n, 1<<12))
	for i := int64(0); i < n; i++ {
		o, err := next()
		if err != nil {
			return nil, err
		}
		l, err := next()
		if err != nil {
			return nil, err
		}
		ext = append(ext, format.Extent{Offset: o, Length: l})
	}
	if _, err := br.Discard(int(format.PadLen(read))); err != nil {
		return nil, errors.New("GNU sparse 1.0 map cut short")
	}
	return ext, checkExtents(ext, size)
}
