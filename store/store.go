package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Store is where a command's objects live: a local file system or an
// object store's bucket. Names are paths (local) or keys (a bucket).
type Store interface {
	// Open opens one object for reading at offsets.
	Open(ctx context.Context, name string) (Object, error)
	// List lists every object under a prefix (a bucket), recursively, in
	// name order. Locally it is not used: a directory is listed by repo.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Create starts an output that appears under name only once
	// committed, complete.
	Create(ctx context.Context, name string, opt CreateOptions) (Pending, error)
	// Stat says whether an object exists, its size and its ETag (an
	// object store's version tag; "" locally). A missing object is an
	// error that is fs.ErrNotExist.
	Stat(ctx context.Context, name string) (Info, error)
	// URL is how messages name the object name.
	URL(name string) string
}

// Info is a stored object as a listing or a Stat gives it.
type Info struct {
	Name string // the key or path
	Size int64
	ETag string
}

// CreateOptions say when an output may replace an existing object.
type CreateOptions struct {
	// Replace allows replacing an existing object (--force). Without it
	// the commit fails (fs.ErrExist) if the object exists by then; in an
	// object store by a conditional write (If-None-Match: *).
	Replace bool
	// IfMatch, set, commits only over the object of that ETag (an index
	// update: If-Match); a changed object fails with ErrChanged.
	IfMatch string
}

// Pending is an output being written: nothing is visible under its name
// until Commit returns nil; Abort, or the cancellation of the context
// given to AbortOn, leaves nothing.
type Pending interface {
	io.Writer
	Commit() error
	Abort()
	AbortOn(ctx context.Context)
}

// ErrChanged is the error of a conditional write whose object changed
// since it was read.
var ErrChanged = errors.New("changed by another writer since it was read")

// Location is a command's argument: a local path or an object-store URL
// s3://BUCKET/KEY. A URL whose key is empty or ends in '/' is a prefix:
// every object under it.
type Location struct {
	Raw    string
	Bucket string // "" for a local path
	Key    string
}

// IsS3 says whether the location is in an object store.
func (l Location) IsS3() bool { return l.Bucket != "" }

// IsPrefix says whether an s3 location stands for every object under it.
func (l Location) IsPrefix() bool { return l.IsS3() && (l.Key == "" || strings.HasSuffix(l.Key, "/")) }

func (l Location) String() string { return l.Raw }

// IsURL says whether an argument names an object-store location.
func IsURL(arg string) bool { return strings.HasPrefix(arg, "s3://") }

// ParseLocation parses a command's argument.
func ParseLocation(arg string) (Location, error) {
	if !IsURL(arg) {
		return Location{Raw: arg}, nil
	}
	rest := strings.TrimPrefix(arg, "s3://")
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%s: no bucket: want s3://BUCKET/KEY or s3://BUCKET/PREFIX/", arg)
	}
	return Location{Raw: arg, Bucket: bucket, Key: key}, nil
}

// Resolve gives the store of a location and the name in it.
func Resolve(loc Location) (Store, string, error) {
	if !loc.IsS3() {
		return Local{}, loc.Raw, nil
	}
	c, err := DefaultS3()
	if err != nil {
		return nil, "", err
	}
	return c.Bucket(loc.Bucket), loc.Key, nil
}

// OpenURL opens the object at a command's argument, a path or a URL.
func OpenURL(ctx context.Context, arg string) (Object, error) {
	loc, err := ParseLocation(arg)
	if err != nil {
		return nil, err
	}
	st, name, err := Resolve(loc)
	if err != nil {
		return nil, err
	}
	return st.Open(ctx, name)
}

// Local is the local file system.
type Local struct{}

func (Local) Open(_ context.Context, name string) (Object, error) { return File(name).Open() }

func (Local) List(_ context.Context, prefix string) ([]Info, error) {
	return nil, fmt.Errorf("%s: a local directory is listed by its reader", prefix)
}

func (Local) Create(ctx context.Context, name string, opt CreateOptions) (Pending, error) {
	f, err := CreateAtomic(name, opt.Replace)
	if err != nil {
		return nil, err
	}
	f.AbortOn(ctx)
	return f, nil
}

func (Local) Stat(_ context.Context, name string) (Info, error) {
	st, err := os.Stat(name)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: name, Size: st.Size()}, nil
}

func (Local) URL(name string) string { return name }

// Base is the last component of a path or key: the name an index records
// for an archive wherever it lives.
func Base(name string) string {
	if IsURL(name) {
		name = strings.TrimSuffix(name, "/")
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			return name[i+1:]
		}
		return name
	}
	return filepath.Base(name)
}

// noObject is a missing object in an object store: it is fs.ErrNotExist.
type noObject struct{ what string }

func (e noObject) Error() string        { return "no such " + e.what }
func (e noObject) Is(target error) bool { return target == fs.ErrNotExist }

// ParseSize reads a byte count with an optional K, M, G or T suffix (or
// KiB, MiB, GiB, TiB, KB, ...), powers of 1024: "64MiB", "16M", "5242880".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mul := int64(1)
	for i, u := range "KMGT" {
		if strings.HasSuffix(t, string(u)) {
			mul, t = 1<<(10*(i+1)), t[:len(t)-1]
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mul {
		return 0, fmt.Errorf("%q: want a size such as 64MiB", s)
	}
	return n * mul, nil
}
