package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/parallel"
	"github.com/cbfs/cbfs/store"
)

// RekeyOptions configure Rekey.
type RekeyOptions struct {
	// OldKeys open the sources (each with the one it was written under);
	// NewKey seals the new archives.
	OldKeys []*crypt.Key
	NewKey  *crypt.Key
	// OutDir receives each new archive under its source's file name: a
	// directory, or an object-store prefix s3://BUCKET/PREFIX/ (each
	// archive one object under it). It must not be the directory or
	// prefix a source is in.
	OutDir string
	// Force replaces an existing file (or object) of the same name.
	Force bool
	// Jobs is how many archives are rewritten at once (at least one).
	Jobs int
	// Done, when set, is called as each archive is finished.
	Done func(i int)
}

// RekeyResult is what Rekey did with one archive.
type RekeyResult struct {
	Source store.Source
	// Out is the new archive's path (or URL); empty when nothing was
	// written.
	Out string
	// Old and New are the two archives' headers (archive ids, sequence).
	Old, New           *format.Header
	OldKeyID, NewKeyID string
	Members            uint64
	Size               int64
	// Err says why the archive was not rewritten; nothing is left in
	// OutDir then.
	Err error
}

// ErrOutDirIsSource is an output directory that holds a source: the new
// archive would take the old one's name, and the sources are never
// touched.
var ErrOutDirIsSource = errors.New("the output directory holds the archives being rekeyed (in an object store: the output prefix is within theirs): give another directory or prefix")

// ErrOutNotPrefix is an object-store output that names one object, not a
// prefix the new archives go under.
var ErrOutNotPrefix = errors.New("not a prefix: the new archives go under it, each under its source's file name (end it with '/')")

// rekeyDest is where Rekey writes: a local directory, or a prefix of an
// object store.
type rekeyDest struct {
	dir    os.FileInfo // the local directory
	st     store.Store // the object store, for a prefix
	prefix string      // its key prefix
}

func (d rekeyDest) where(opt RekeyOptions, name string) string {
	if d.st != nil {
		return d.st.URL(d.prefix + name)
	}
	return filepath.Join(opt.OutDir, name)
}

// holds says whether the source is in the output directory or prefix
// (the new archive would take its name), or, in an object store, the
// output prefix is under the source's.
func (d rekeyDest) holds(opt RekeyOptions, s store.Source) bool {
	switch {
	case s.Where == "":
		return false
	case d.st != nil:
		// A prefix stands for everything under it, sub-prefixes
		// included: an output under a source's prefix would put
		// archives of the new key among those of the old.
		parent := s.Where[:strings.LastIndexByte(s.Where, '/')+1]
		return s.Where == d.where(opt, s.Name) || strings.HasPrefix(d.st.URL(d.prefix), parent)
	case store.IsURL(s.Where):
		return false
	}
	ds, err := os.Stat(filepath.Dir(s.Where))
	return err == nil && os.SameFile(ds, d.dir)
}

// Rekey writes each source again under opt.NewKey into opt.OutDir
// (format.Rekey: a new archive id, the same sequence number, members and
// bytes, sealed frame by frame). Each new archive is written to a
// temporary file (or, in an object store, a multipart upload, invisible
// until completed), verified with the new key as 'cbfs verify -k'
// verifies it (every seal, the summary against the members, the digest)
// as its bytes are written, and only then put in place (the upload
// completed) under the source's name. Sources are only read; they may be
// objects too.
func Rekey(ctx context.Context, sources []store.Source, opt RekeyOptions) ([]RekeyResult, error) {
	var dest rekeyDest
	if store.IsURL(opt.OutDir) {
		loc, err := store.ParseLocation(opt.OutDir)
		if err != nil {
			return nil, err
		}
		if !loc.IsPrefix() {
			return nil, fmt.Errorf("%s: %w", opt.OutDir, ErrOutNotPrefix)
		}
		if dest.st, dest.prefix, err = store.Resolve(loc); err != nil {
			return nil, err
		}
	} else {
		st, err := os.Stat(opt.OutDir)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("%s: not a directory", opt.OutDir)
		}
		dest.dir = st
	}
	names := map[string]int{}
	for i, s := range sources {
		if j, ok := names[s.Name]; ok {
			return nil, fmt.Errorf("%s and %s have the same file name: their new archives would too", sources[j].Location(), s.Location())
		}
		names[s.Name] = i
		if dest.holds(opt, s) {
			return nil, fmt.Errorf("%s: %w", opt.OutDir, ErrOutDirIsSource)
		}
	}
	out := make([]RekeyResult, len(sources))
	err := parallel.Do(ctx, len(sources), opt.Jobs, func(ctx context.Context, i int) {
		out[i] = rekeyOne(ctx, sources[i], opt, dest)
		if opt.Done != nil {
			opt.Done(i)
		}
	})
	return out, err
}

// create starts the new archive's output: a temporary file, or an upload.
func (d rekeyDest) create(ctx context.Context, opt RekeyOptions, name string) (store.Pending, error) {
	where := d.where(opt, name)
	if d.st == nil {
		if !opt.Force {
			if _, err := os.Lstat(where); err == nil {
				return nil, &ObjectError{Where: where, Err: errors.New("output file exists (--force replaces it)")}
			}
		}
		f, err := store.CreateAtomic(where, opt.Force)
		if err != nil {
			return nil, err
		}
		f.AbortOn(ctx)
		return f, nil
	}
	// Without --force: refused now if the object exists (HEAD), and at
	// the end by a conditional write if one was created meanwhile.
	p, err := d.st.Create(ctx, d.prefix+name, store.CreateOptions{Replace: opt.Force})
	if errors.Is(err, fs.ErrExist) {
		return nil, &ObjectError{Where: where, Err: errors.New("output object exists (--force replaces it)")}
	}
	if err != nil {
		return nil, err
	}
	p.AbortOn(ctx)
	return p, nil
}

func rekeyOne(ctx context.Context, src store.Source, opt RekeyOptions, dest rekeyDest) RekeyResult {
	r := RekeyResult{Source: src, NewKeyID: opt.NewKey.ID()}
	fail := func(err error) RekeyResult {
		r.Out, r.Err = "", locErr(src, err)
		return r
	}
	obj, err := src.Open()
	if err != nil {
		return fail(err)
	}
	defer obj.Close()
	f, err := dest.create(ctx, opt, src.Name)
	var oe *ObjectError
	if errors.As(err, &oe) {
		r.Err = err
		return r
	}
	if err != nil {
		return fail(err)
	}
	// The new archive is verified with the new key as it is written: the
	// bytes going to the file (or the upload's parts) also go to a keyed
	// streaming read on another goroutine (another core), instead of a
	// second pass over the output once it is complete. What is verified
	// is what was written; the output's own write errors and the sync
	// (or the upload's completion) are Commit's, which comes only after
	// the verification.
	pr, pw := io.Pipe()
	verified := make(chan error, 1)
	var sum format.PlainSum
	go func() {
		var err error
		sum, err = verifyNew(pr, opt.NewKey)
		io.Copy(io.Discard, pr) // a reader that stopped early must not block the writer
		verified <- err
	}()
	res, err := format.Rekey(io.MultiWriter(f, pw), io.NewSectionReader(obj, 0, obj.Size()), opt.OldKeys, opt.NewKey, format.RekeyOptions{})
	pw.CloseWithError(err)
	verr := <-verified
	if err != nil {
		f.Abort()
		return fail(err)
	}
	r.Old, r.New, r.OldKeyID, r.Members, r.Size = &res.Old, &res.New, res.OldKey.ID(), res.Members, res.Size
	if verr == nil && sum != res.Plain {
		verr = fmt.Errorf("its plaintext differs from the source's (%d frames read back, %d sealed): a fault while rekeying", sum.Frames, res.Plain.Frames)
	}
	if verr != nil {
		f.Abort()
		return fail(fmt.Errorf("the new archive does not verify with the new key (nothing written): %w", verr))
	}
	if err := ctx.Err(); err != nil {
		f.Abort()
		return fail(context.Cause(ctx))
	}
	if err := f.Commit(); err != nil {
		if errors.Is(err, fs.ErrExist) {
			r.Err = &ObjectError{Where: dest.where(opt, src.Name), Err: errors.New("output created meanwhile by another writer (--force replaces it)")}
			return r
		}
		return fail(err)
	}
	r.Out = dest.where(opt, src.Name)
	return r
}

// verifyNew checks every byte of the new archive with the new key, as a
// keyed streaming read does (the tar framing, every frame's checksum and
// seal, the layout, the digest, the header and footer MACs), and sums the
// plaintext of its frames, which must be the source's: then every check
// that decodes plaintext (metadata records, LZ4 blocks, the summary
// against the members) holds for it exactly when it held for the source
// (archive spec 10.6), and none is run here.
func verifyNew(src io.Reader, key *crypt.Key) (format.PlainSum, error) {
	rd, err := format.NewReader(src, key, format.ReaderOptions{PlainSum: true})
	if err != nil {
		return format.PlainSum{}, err
	}
	defer rd.Close()
	for {
		if _, err := rd.Next(); err == io.EOF {
			return rd.PlainSum(), nil
		} else if err != nil {
			return format.PlainSum{}, err
		}
	}
}

// IndexRekeyOptions configure RekeyIndex.
type IndexRekeyOptions struct {
	// NewKey seals the new index and opens the rekeyed archives.
	NewKey *crypt.Key
	// OldKeys are the keys the archives were under before: an archive
	// still under one of them is named as not rekeyed yet.
	OldKeys []*crypt.Key
	// Jobs is how many archives are opened at once (at least one).
	Jobs int
}

// IndexRekeyArchive is one archive of the index and its rekeyed copy.
type IndexRekeyArchive struct {
	// Index is the row of the old index (its name, old id, sequence
	// number and member count).
	Index index.Archive
	// Where is the rekeyed archive's location; NewID its archive id.
	Where string
	NewID [crypt.IDSize]byte
	// Err says why no rekeyed copy of this archive was found.
	Err error
}

// NotRekeyedError is an archive found under the name the index records
// that is not the rekeyed copy of the archive the index holds there: a
// rekey keeps the sequence number and the member count (archive spec
// 10.6).
type NotRekeyedError struct {
	Name string
	What string
}

func (e *NotRekeyedError) Error() string {
	return fmt.Sprintf("%s: not the rekeyed copy of the archive the index holds under this name", e.What)
}

// RekeyIndex writes the index x again under opt.NewKey, with each
// archive's new id (archive spec 10.6; index spec 6.8). The rekeyed
// archives are found by the names x records, through open (the
// directory or prefix 'cbfs rekey' wrote them to): each is opened with
// the new key by its header and footer alone (no summary is read), and
// must have the sequence number and member count x records, as a rekey
// keeps them. Names stay, ids change, and offsets and member numbers are
// those of the source, so x's records stand as they are, and the result
// is byte for byte the index a rebuild of the rekeyed archives under
// the new key writes (when x's highest sequence number is its table's,
// as for every index the tools write). When any archive is not found,
// nothing is written to out and the error is ErrIncomplete; the rows
// say why.
func RekeyIndex(ctx context.Context, x *index.Reader, open func(index.Archive) store.Source, opt IndexRekeyOptions, out io.Writer) ([]IndexRekeyArchive, *index.CombineResult, error) {
	rows := make([]IndexRekeyArchive, len(x.Archives))
	err := parallel.Do(ctx, len(rows), max(1, opt.Jobs), func(_ context.Context, i int) {
		rows[i] = rekeyedCopy(x.Archives[i], open(x.Archives[i]), opt)
	})
	if err != nil {
		return rows, nil, err
	}
	ids := make([][crypt.IDSize]byte, len(rows))
	for i, r := range rows {
		if r.Err != nil {
			return rows, nil, ErrIncomplete
		}
		ids[i] = r.NewID
	}
	c, err := index.Rekey(out, opt.NewKey, x, ids)
	return rows, c, err
}

// rekeyedCopy opens the archive src with the new key and checks it
// against the index's row: two reads, its header and its footer.
func rekeyedCopy(row index.Archive, src store.Source, opt IndexRekeyOptions) IndexRekeyArchive {
	r := IndexRekeyArchive{Index: row, Where: src.Location()}
	obj, err := src.Open()
	if err != nil {
		r.Err = locErr(src, err)
		return r
	}
	defer obj.Close()
	a, err := format.OpenArchive(obj, opt.NewKey)
	if errors.Is(err, format.ErrWrongKey) {
		if a, err2 := format.OpenArchive(obj, opt.OldKeys...); err2 == nil {
			err = fmt.Errorf("%w: still under the old key %s, not rekeyed (give the directory 'cbfs rekey' wrote)", err, a.Header.KeyOf(opt.OldKeys...).ID())
		}
	}
	if err == nil {
		switch h, f := a.Header, a.Footer; {
		case h.Sequence != row.Seq:
			err = &NotRekeyedError{Name: row.Name, What: fmt.Sprintf("sequence %d, the index holds %d", h.Sequence, row.Seq)}
		case f.Members != row.Members:
			err = &NotRekeyedError{Name: row.Name, What: fmt.Sprintf("%d members, the index holds %d", f.Members, row.Members)}
		default:
			r.NewID = h.ID
		}
	}
	if err != nil {
		r.Err = locErr(src, err)
	}
	return r
}
