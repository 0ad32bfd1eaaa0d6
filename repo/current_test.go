package repo

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/store"
)

// countedObject counts the bytes read from an archive.
type countedObject struct {
	store.Object
	n *atomic.Int64
}

func (c countedObject) ReadAt(p []byte, off int64) (int, error) {
	k, err := c.Object.ReadAt(p, off)
	c.n.Add(int64(k))
	return k, err
}

// treeHistory writes archives of successive changes, as the tree
// benchmark does: archive k holds directory d<k>, and rewrites files of
// every earlier directory, so that in path order each directory's files
// come from its own archive and from every later one, interleaved. It
// returns the current content of every path and the archives' total
// size.
func treeHistory(t *testing.T, dir string, key *crypt.Key, archives, files, size int) (map[string][]byte, int64) {
	rnd := rand.New(rand.NewPCG(5, 6))
	want := map[string][]byte{}
	var total int64
	for k := 1; k <= archives; k++ {
		name := filepath.Join(dir, fmt.Sprintf("%04d.cbfs", k))
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := format.NewWriter(f, key, format.WriterOptions{Sequence: uint64(k), Compress: true})
		if err != nil {
			t.Fatal(err)
		}
		add := func(p string) {
			content := make([]byte, size+rnd.IntN(size))
			for i := range content {
				content[i] = byte(rnd.IntN(16)) // compresses, a little
			}
			if _, err := w.Add(&format.Meta{Type: format.TypeRegular, Path: []byte(p), Mode: 0o644, Size: int64(len(content))}, bytes.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			want[p] = content
		}
		for i := range files {
			add(fmt.Sprintf("d%02d/f%03d", k, i))
		}
		for j := 1; j < k; j++ {
			for i := k % 7; i < files; i += files / 8 {
				add(fmt.Sprintf("d%02d/f%03d", j, i))
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
		f.Close()
	}
	return want, total
}

// TestTreeReadsArchivesOnce: the current tree of archives whose members
// interleave in path order (each directory from its own archive and from
// every later one) comes out whole, in path order, each file with its
// latest content, and the archives are read about once: the block cache
// keeps a place in each of them, not only in the last few (12 archives:
// 1.2 times their bytes read, 22 times with four blocks of 1 MiB).
func TestTreeReadsArchivesOnce(t *testing.T) {
	for _, c := range []struct{ archives, files, size int }{{12, 96, 6000}, {40, 32, 3000}} {
		t.Run(fmt.Sprint(c.archives), func(t *testing.T) { testTreeReads(t, c.archives, c.files, c.size) })
	}
}

func testTreeReads(t *testing.T, archives, files, size int) {
	key := testutil.Key(t, 4)
	dir := t.TempDir()
	want, total := treeHistory(t, dir, key, archives, files, size)
	srcs, _, err := ArchiveSources([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var ib bytes.Buffer
	if _, err := RebuildTo(context.Background(), srcs, key, Shard{}, RebuildOptions{}, &ib); err != nil {
		t.Fatal(err)
	}
	x, err := index.Read(bytes.NewReader(ib.Bytes()), key)
	if err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	open := func(a index.Archive) store.Source {
		s := store.File(filepath.Join(dir, a.Name))
		o := s.Open
		s.Open = func() (store.Object, error) {
			obj, err := o()
			if err != nil {
				return nil, err
			}
			return countedObject{obj, &read}, nil
		}
		return s
	}
	tr, err := OpenTree(context.Background(), x, open, TreeOptions{Keys: []*crypt.Key{key}, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var out bytes.Buffer
	n, _, err := WriteTree(context.Background(), tr, &out, nil)
	if err != nil || n != len(want) || len(tr.Missing)+len(tr.Skipped) != 0 {
		t.Fatalf("%d members of %d written: %v", n, len(want), err)
	}
	if r := read.Load(); r > total*3/2 {
		t.Errorf("%d bytes read for %d bytes of archives", r, total)
	} else {
		t.Logf("%d bytes read for %d bytes of archives", r, total)
	}
	tarRd := tar.NewReader(&out)
	prev := ""
	for {
		h, err := tarRd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(tarRd)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name <= prev || !bytes.Equal(got, want[h.Name]) {
			t.Fatalf("%s (after %s): %d bytes, want %d, in path order", h.Name, prev, len(got), len(want[h.Name]))
		}
		prev = h.Name
		delete(want, h.Name)
	}
	if len(want) != 0 {
		t.Fatalf("%d paths not in the tar", len(want))
	}
}

// TestDropHidden: what is below a path whose member is not a directory
// is left out, named with the outermost such path; paths that only
// start with its name ("a.txt", "a-x" beside "a") stay.
func TestDropHidden(t *testing.T) {
	mk := func(p string, typ format.Type) TreeMember {
		return TreeMember{Path: []byte(p), Entry: format.Entry{Meta: &format.Meta{Type: typ, Path: []byte(p)}}}
	}
	R, D, L := format.TypeRegular, format.TypeDir, format.TypeSymlink
	ms := []TreeMember{mk("a", R), mk("a-x", R), mk("a.txt", R), mk("a/b", R), mk("a/b/c", R), mk("a0", D), mk("b", D), mk("b/c", L),
		mk("b/c/d", D), mk("b/c/d/e", R), mk("b/cd", R), mk("c", D), mk("c/x", R)}
	kept, hidden := dropHidden(ms)
	var got []string
	for _, m := range kept {
		got = append(got, string(m.Path))
	}
	if fmt.Sprint(got) != "[a a-x a.txt a0 b b/c b/cd c c/x]" {
		t.Fatalf("kept %v", got)
	}
	want := []string{
		`a/b: below "a", which is now a file, not a directory`,
		`a/b/c: below "a", which is now a file, not a directory`,
		`b/c/d: below "b/c", which is now a symlink, not a directory`,
		`b/c/d/e: below "b/c", which is now a symlink, not a directory`,
	}
	if len(hidden) != len(want) {
		t.Fatalf("hidden %v", hidden)
	}
	for i, h := range hidden {
		if s := string(h.Path) + ": " + h.Why; s != want[i] {
			t.Errorf("%s, want %s", s, want[i])
		}
	}
	if k, h := dropHidden(ms[5:7]); len(k) != 2 || h != nil {
		t.Fatal("nothing hidden: not the same members")
	}
}
