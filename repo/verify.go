package repo

import (
	"context"
	"errors"
	"io"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/parallel"
	"github.com/cbfs/cbfs/store"
)

// Status is one object's verdict from Verify.
type Status string

const (
	StatusOK         Status = "ok"
	StatusDamaged    Status = "damaged"
	StatusWrongKey   Status = "wrong-key"
	StatusUnreadable Status = "unreadable" // not read, or not a CBFS archive or index
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys open the archives (the one whose key check value an archive
	// carries); none runs the keyless checks only.
	Keys []*crypt.Key
	// Jobs is how many objects are checked at once (at least one).
	Jobs int
	// Members collects where each intact member is (Intact), and Paths
	// the canonical paths of each archive's live members (keyed only):
	// what an index audit (CheckIndex) needs. Without them memory does
	// not grow with the members of an archive.
	Members, Paths bool
	// Done, when set, is called as each object is finished (from the
	// worker that checked it): for progress.
	Done func(i int)
}

// VerifyResult is what Verify found in one object.
type VerifyResult struct {
	Source store.Source
	Status Status
	// Err is what stopped the check before the end, nil when it read
	// everything (Problems may still hold damage found on the way).
	Err   error
	Keyed bool
	// Members counts the intact members, Damaged those found damaged.
	Members, Damaged int
	// Header is the archive's header as read (record 0's, or the
	// footer's copy when record 0 is damaged); nil when unreadable.
	Header *format.Header
	// HeaderAuthenticated: Header passed its MAC under the key.
	HeaderAuthenticated bool
	Problems            []*format.Error
	// Index is set when the object is a master index (checked as one).
	Index *index.FileInfo
	// IsIndex says the object is a master index, whatever its state.
	IsIndex bool
	// Intact are the intact members by number; Paths the canonical paths
	// of the live members (VerifyOptions.Paths).
	Intact map[uint32]IntactMember
	Paths  map[string]bool
}

// Verify checks every byte of each source: without keys the framing,
// checksums, layout and digest (accidental damage); with a key also every
// seal (any change). A source that is a master index is checked as one.
// Results are in the order of sources. Once ctx is cancelled no further
// source is started; the error is then ctx's cause.
func Verify(ctx context.Context, sources []store.Source, opt VerifyOptions) ([]VerifyResult, error) {
	results := make([]VerifyResult, len(sources))
	err := parallel.Do(ctx, len(sources), opt.Jobs, func(ctx context.Context, i int) {
		results[i] = verifyOne(sources[i], opt)
		if opt.Done != nil {
			opt.Done(i)
		}
	})
	return results, err
}

func verifyOne(src store.Source, opt VerifyOptions) VerifyResult {
	keyed := false
	for _, k := range opt.Keys {
		keyed = keyed || k != nil
	}
	r := VerifyResult{Source: src, Keyed: keyed}
	obj, err := src.Open()
	if err != nil {
		r.Status, r.Err = StatusUnreadable, err
		return r
	}
	defer obj.Close()
	var magic [8]byte
	if n, _ := obj.ReadAt(magic[:], 0); index.HasMagic(magic[:n]) {
		return verifyIndex(r, obj, opt.Keys)
	}
	var found []format.Entry
	if opt.Paths && keyed {
		r.Paths = map[string]bool{}
	}
	collect := func(e format.Entry) error {
		if opt.Members {
			found = append(found, format.Entry{Number: e.Number, Offset: e.Offset, Length: e.Length})
		}
		if r.Paths != nil && e.Meta != nil && e.Meta.Type != format.TypeTombstone && index.Indexed(e.Meta.Type) {
			if c, err := index.CanonicalPath(e.Meta.Path); err == nil {
				r.Paths[string(c)] = true
			}
		}
		return nil
	}
	rep, err := format.ScanArchive(obj, format.ScanOptions{Keys: opt.Keys, Content: true, Digest: true}, collect)
	if rep != nil {
		r.Header, r.HeaderAuthenticated = rep.Header, rep.HeaderAuthenticated
		r.Members, r.Damaged, r.Problems = rep.Members, rep.Damaged, rep.Problems
		if rep.Header != nil && opt.Members {
			r.Intact = make(map[uint32]IntactMember, len(found))
			for _, e := range found {
				r.Intact[e.Number] = IntactMember{Offset: rep.Header.PhysOffset(e.Offset), Span: rep.Header.PhysSpan(e.Offset, e.Length)}
			}
		}
	}
	if errors.Is(err, format.ErrWrongKey) {
		// Under another key: still checked without it, so that damage
		// is reported as damage (status 3), not hidden behind the key.
		if kl, kerr := format.ScanArchive(obj, format.ScanOptions{Content: true, Digest: true}, nil); kl != nil && (len(kl.Problems) > 0 || kerr != nil) {
			r.Keyed, r.Header, r.Members, r.Damaged = false, kl.Header, kl.Members, kl.Damaged
			r.Problems = append([]*format.Error{{Class: format.ClassKey, Offset: -1, Member: -1, What: "written under another key than those given: checked without the key"}}, kl.Problems...)
			r.Err, r.Status = kerr, StatusDamaged
			if kerr != nil && !format.IsDamage(kerr) {
				r.Status = StatusUnreadable
			}
			return r
		}
	}
	r.Err = err
	var fe *format.Error
	switch {
	case errors.Is(err, format.ErrWrongKey):
		r.Status = StatusWrongKey
	case errors.As(err, &fe):
		r.Status = StatusDamaged
	case err != nil:
		r.Status = StatusUnreadable
	case len(r.Problems) > 0:
		r.Status = StatusDamaged
	default:
		r.Status = StatusOK
	}
	return r
}

// verifyIndex checks a master index given where an archive was expected:
// its seal and structure with a key, its header and framing without.
func verifyIndex(r VerifyResult, obj store.Object, keys []*crypt.Key) VerifyResult {
	r.IsIndex = true
	info, err := index.Check(io.NewSectionReader(obj, 0, obj.Size()), keys...)
	r.Index, r.Err = info, err
	var ie *index.Error
	switch {
	case err == nil:
		r.Status = StatusOK
	case errors.Is(err, format.ErrWrongKey):
		r.Status = StatusWrongKey
	case errors.As(err, &ie):
		r.Status = StatusDamaged
	default:
		r.Status = StatusUnreadable
	}
	return r
}
