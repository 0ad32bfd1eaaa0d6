package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/store"
)

// IndexObjectError is an object under a prefix given for archives that
// is a master index (recognised by its magic, as in a DIR): it is
// skipped with a note, never counted as a bad archive.
type IndexObjectError struct{ Where string }

func (e *IndexObjectError) Error() string {
	return e.Where + ": a master index, not an archive: skipped"
}

// EmptyPrefixError is an s3://BUCKET/PREFIX/ with no object under it.
type EmptyPrefixError struct{ URL string }

func (e *EmptyPrefixError) Error() string { return e.URL + ": no objects under this prefix" }

// URLSources expands an object-store argument: s3://BUCKET/KEY is one
// archive; s3://BUCKET/PREFIX/ stands for every object under the prefix,
// recursively, in key order. An object under a prefix that turns out to
// be a master index fails to open with an *IndexObjectError; the check
// costs nothing more, since the last bytes are read to open an archive
// anyway.
func URLSources(ctx context.Context, arg string) ([]store.Source, error) {
	loc, err := store.ParseLocation(arg)
	if err != nil {
		return nil, err
	}
	st, key, err := store.Resolve(loc)
	if err != nil {
		return nil, err
	}
	if !loc.IsPrefix() {
		return []store.Source{{Name: store.Base(key), Where: st.URL(key), Open: func() (store.Object, error) {
			return st.Open(ctx, key)
		}}}, nil
	}
	infos, err := listObjects(ctx, st, key)
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, &EmptyPrefixError{URL: arg}
	}
	out := make([]store.Source, 0, len(infos))
	for _, in := range infos {
		name, where := in.Name, st.URL(in.Name)
		out = append(out, store.Source{Name: store.Base(name), Where: where, Size: in.Size, Open: func() (store.Object, error) {
			obj, err := st.Open(ctx, name)
			if err != nil {
				return nil, err
			}
			// The trailer magic, from the bytes the opening read
			// fetched: the start of the object costs a request, an
			// archive is opened from its end (archive spec 8.2). An
			// index whose trailer is damaged is reported as an
			// unreadable archive.
			var magic [8]byte
			if obj.Size() >= 8 {
				if _, err := obj.ReadAt(magic[:], obj.Size()-8); err == nil && index.EndsLikeIndex(magic[:]) {
					obj.Close()
					return nil, &IndexObjectError{Where: where}
				}
			}
			return obj, nil
		}})
	}
	return out, nil
}

// listObjects lists the objects under prefix that may be archives or
// indexes: the sequence reservations of an index kept there (small
// objects under ".NAME.seq/") are left out, as a DIR leaves out the
// lock file ".NAME.lock".
func listObjects(ctx context.Context, st store.Store, prefix string) ([]store.Info, error) {
	infos, err := st.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := infos[:0]
	for _, in := range infos {
		if !store.IsSeqReservation(in.Name) && !hiddenUnder(prefix, in.Name) {
			out = append(out, in)
		}
	}
	return out, nil
}

// hiddenUnder says whether key, below prefix, has a component that starts
// with '.': skipped as a DIR skips such names (index spec 6.1), so that a
// directory synced to the store (its index's .NAME.lock, a killed
// update's temporary file) reads as it did on disk.
func hiddenUnder(prefix, key string) bool {
	for _, c := range strings.Split(strings.TrimPrefix(key, prefix), "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}

// ListIndexParts lists the index files an argument names: a file, an
// object, or every object under an s3:// prefix (the parts a sharded
// rebuild wrote).
func ListIndexParts(ctx context.Context, arg string) ([]string, error) {
	loc, err := store.ParseLocation(arg)
	if err != nil || !loc.IsPrefix() {
		return []string{arg}, err
	}
	st, key, err := store.Resolve(loc)
	if err != nil {
		return nil, err
	}
	infos, err := listObjects(ctx, st, key)
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("%s: no objects under this prefix", arg)
	}
	var out []string
	for _, in := range infos {
		out = append(out, st.URL(in.Name))
	}
	return out, nil
}

// readIndexURL reads an index from an object store, with the ETag it was
// read at.
func readIndexURL(ctx context.Context, url string, keys ...*crypt.Key) (*index.Index, string, error) {
	obj, err := store.OpenURL(ctx, url)
	if err != nil {
		return nil, "", err
	}
	defer obj.Close()
	r := store.Stream(obj, 0)
	defer r.Close()
	x, err := index.Read(r, keys...)
	if err != nil {
		return nil, "", &ObjectError{Where: url, Err: err}
	}
	return x, store.ETag(obj), nil
}

// sourceOf is an archive argument, a path or a URL, as a source.
func sourceOf(ctx context.Context, arg string) store.Source {
	if !store.IsURL(arg) {
		return store.File(arg)
	}
	return store.Source{Name: store.Base(arg), Where: arg, Open: func() (store.Object, error) {
		return store.OpenURL(ctx, arg)
	}}
}

// ErrNoConditionalWrites refuses an index in a store that does not
// honour conditional writes: two writers could lose each other's updates.
var ErrNoConditionalWrites = errors.New("this object store does not honour conditional writes (If-Match / If-None-Match), so two writers could lose each other's updates of an index kept in it")

// remoteIndex is an index kept in an object store, updated by
// conditional writes on the ETag read (If-Match), or If-None-Match: *
// when it did not exist: no lock file, no lost update.
type remoteIndex struct {
	ctx    context.Context
	bucket store.Store
	key    string
	etag   string // "" when it did not exist
	create bool   // a missing index may be created (--new-index)
	// reserved is the sequence number ReserveSeq reserved (0: none).
	reserved uint64
}

// openRemoteUpdate opens the index at url for an update.
func openRemoteUpdate(ctx context.Context, url string, key *crypt.Key, opt IndexOptions) (*IndexUpdate, error) {
	loc, err := store.ParseLocation(url)
	if err != nil {
		return nil, err
	}
	st, k, err := store.Resolve(loc)
	if err != nil {
		return nil, err
	}
	if p, ok := st.(interface {
		ProbeConditionalWrites(context.Context, string) (bool, error)
	}); ok {
		cond, err := p.ProbeConditionalWrites(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", url, err)
		}
		if !cond {
			return nil, fmt.Errorf("index %s: %w", url, ErrNoConditionalWrites)
		}
	}
	u := &IndexUpdate{Path: url, key: key, readKeys: opt.ReadKeys, remote: &remoteIndex{ctx: ctx, bucket: st, key: k, create: opt.Create}}
	if err := u.reopen(opt.Create); err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

// reopen opens the remote index again (its trailer and directory), with
// its ETag; a missing one is a new index when create is set.
func (u *IndexUpdate) reopen(create bool) error {
	if u.file != nil {
		u.file.Close()
		u.file = nil
	}
	x, obj, err := openIndexObject(u.remote.ctx, u.Path, append([]*crypt.Key{u.key}, u.readKeys...)...)
	switch {
	case errors.Is(err, os.ErrNotExist) && create:
		u.Index, u.Created, u.remote.etag = nil, true, ""
		return nil
	case errors.Is(err, os.ErrNotExist):
		return &NoIndexError{Index: u.Path}
	case err != nil:
		return fmt.Errorf("index %s: %w", u.Path, err)
	}
	u.Index, u.file, u.Created, u.remote.etag = x, obj, false, store.ETag(obj)
	return nil
}

// replaceRemote writes the index that write produces over the one
// opened, conditionally on its ETag (If-Match; If-None-Match: * where it
// did not exist), streaming (a multipart upload past its first part),
// and opens it again.
func (u *IndexUpdate) replaceRemote(write func(io.Writer) error) error {
	opt := store.CreateOptions{IfMatch: u.remote.etag}
	w, err := u.remote.bucket.Create(u.remote.ctx, u.remote.key, opt)
	if err != nil {
		return err
	}
	w.AbortOn(u.remote.ctx)
	if err := write(w); err != nil {
		w.Abort()
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	return u.reopen(false)
}

// seqReserver is a store where sequence numbers are reserved by
// conditional creates (store.S3Bucket).
type seqReserver interface {
	ReserveSeq(ctx context.Context, indexKey string, from uint64) (uint64, error)
	ReleaseSeqs(ctx context.Context, indexKey string, upTo uint64) (int, error)
}

// ReserveSeq is the sequence number of a new archive added to the index
// without an explicit one (--seq): NextSeq for an index file, whose lock
// is held from now until the update. An index in an object store holds
// no lock, so two writers that read it at once would both take high-seq
// + 1 and, for a path both archives hold, write a conflict; the number
// is reserved instead, by creating a small object for it beside the
// index with If-None-Match: * (store.ReserveSeq: from high-seq + 1 up,
// past the numbers other writers reserved), and the number whose object
// this writer created is its own. Reservations are removed once an
// index holding their archives is written (releaseSeqs), so a writer
// that read the index before such a removal could create a number
// another writer still holds: after reserving, it checks that the index
// is still the one it read, or that the one written since has a high-seq
// below its number (every removal follows the write of an index whose
// high-seq is at or above the numbers removed, and a high-seq never
// goes down), and reserves again above it otherwise. A writer that
// crashes leaves its reservation behind: a gap in the sequence numbers,
// which the index allows, never a number used twice.
func (u *IndexUpdate) ReserveSeq() (uint64, error) {
	r, ok := u.remoteReserver()
	if !ok {
		return u.NextSeq()
	}
	ctx := u.remote.ctx
	for tries := 0; ; tries++ {
		next, err := u.NextSeq()
		if err != nil {
			return 0, err
		}
		n, err := r.ReserveSeq(ctx, u.remote.key, next)
		if err != nil {
			return 0, fmt.Errorf("index %s: reserving a sequence number: %w", u.Path, err)
		}
		in, err := u.remote.bucket.Stat(ctx, u.remote.key)
		switch {
		case err == nil && in.ETag != "" && in.ETag == u.remote.etag,
			errors.Is(err, os.ErrNotExist) && u.remote.etag == "":
			u.remote.reserved = n
			return n, nil
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return 0, fmt.Errorf("index %s: %w", u.Path, err)
		}
		// Written (or removed) since it was read: read it again.
		if err := u.reopen(u.remote.create); err != nil {
			return 0, err
		}
		if u.HighSeq() < n {
			u.remote.reserved = n
			return n, nil
		}
		if tries == 20 {
			return 0, fmt.Errorf("index %s: reserving a sequence number: the index kept passing the numbers reserved", u.Path)
		}
	}
}

func (u *IndexUpdate) remoteReserver() (seqReserver, bool) {
	if u.remote == nil {
		return nil, false
	}
	r, ok := u.remote.bucket.(seqReserver)
	return r, ok
}

// releaseSeqs removes, once the index is written, the reservations of
// numbers up to its high-seq (this writer's among them, and those that
// crashed writers left), when this update reserved one. Best effort: a
// failure leaves objects the next writer's release removes.
func (u *IndexUpdate) releaseSeqs() {
	r, ok := u.remoteReserver()
	if !ok || u.remote.reserved == 0 || u.Index == nil {
		return
	}
	if _, err := r.ReleaseSeqs(u.remote.ctx, u.remote.key, u.HighSeq()); err == nil {
		u.remote.reserved = 0
	}
}

// shardEnv are the variables batch engines set to a worker's index.
var shardEnv = []string{"JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"}

// shardFromEnv is I of "env/N": the first of shardEnv that is set, and
// its name.
func shardFromEnv() (name, value string, err error) {
	for _, v := range shardEnv {
		if s := os.Getenv(v); s != "" {
			if _, err := strconv.Atoi(s); err != nil {
				return v, "", fmt.Errorf("%s=%q: not a number", v, s)
			}
			return v, s, nil
		}
	}
	return "", "", fmt.Errorf("--shard env/N: none of %s is set", strings.Join(shardEnv, ", "))
}
