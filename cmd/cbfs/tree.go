package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tree"
	"github.com/spf13/cobra"
)

// The file system's current tree through the master index: what
// 'export --index' writes as one plain tar and 'extract --index'
// restores into a directory.

// treeOptions are the flags export and extract share for it.
type treeOptions struct {
	index     string
	partial   bool
	conflicts string // fail (status 6) or skip
	json      bool
}

func (o *treeOptions) flags(c *cobra.Command) {
	c.Flags().StringVar(&o.index, "index", "", "the master index: take the file system's current tree from ARCHIVES (a directory\nor an s3:// prefix) through it, instead of one archive")
	c.Flags().BoolVar(&o.partial, "partial", false, "with --index: write what can be written when archives the index needs are missing\nor unreadable (the status still says so)")
	c.Flags().StringVar(&o.conflicts, "conflicts", "fail", "with --index: a path two archives of one sequence hold is skipped and named;\n'fail' then exits 6, 'skip' exits 0")
	c.Flags().BoolVar(&o.json, "json", false, "with --index: print a JSON summary on standard error")
}

// treeReport is the --json summary of an export or extract of the tree.
type treeReport struct {
	Index    string           `json:"index"`
	Paths    int              `json:"paths"`
	Bytes    int64            `json:"bytes"`
	Archives []string         `json:"archives_read"`
	Missing  []treeMissing    `json:"archives_missing"`
	Skipped  []treeSkipReport `json:"skipped"`
}

type treeMissing struct {
	Archive string `json:"archive"`
	Paths   int    `json:"paths"`
	Error   string `json:"error"`
}

type treeSkipReport struct {
	Path string `json:"path"`
	Why  string `json:"why"`
}

// openTree reads the index and opens the tree over the archives in dir,
// with PATH arguments selecting subtrees. Archives that cannot be opened
// are named; without --partial that is the error.
func openTree(ctx context.Context, o *treeOptions, keys []*crypt.Key, dir string, paths []string) (*repo.Tree, *treeReport, error) {
	if o.conflicts != "fail" && o.conflicts != "skip" {
		return nil, nil, usageError{fmt.Errorf("--conflicts %q: want fail or skip", o.conflicts)}
	}
	open, remote, err := archivesIn(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	x, err := repo.ReadIndexFile(o.index, keys...)
	if err != nil {
		return nil, nil, inputErr(o.index, err)
	}
	var sel [][]byte
	for _, p := range paths {
		sel = append(sel, []byte(p))
	}
	jobs := 4
	if remote {
		jobs = 16 // each open waits on the network
	}
	t, err := repo.OpenTree(ctx, x, open, repo.TreeOptions{Paths: sel, Keys: keys, Jobs: jobs})
	if err != nil {
		return nil, nil, usageError{err}
	}
	rep := &treeReport{Index: o.index, Archives: []string{}, Missing: []treeMissing{}, Skipped: []treeSkipReport{}}
	for _, a := range t.Archives {
		rep.Archives = append(rep.Archives, a.Index.Name)
	}
	code := exitOK
	for _, m := range t.Missing {
		fmt.Fprintf(os.Stderr, "cbfs: %s: needed for %s: %s\n", m.Index.Name, plural(m.Paths, "path", "paths"), oneLine(m.Err.Error()))
		rep.Missing = append(rep.Missing, treeMissing{Archive: m.Index.Name, Paths: m.Paths, Error: m.Err.Error()})
		c, _ := classify(m.Err)
		code = worse(code, c)
	}
	if len(t.Missing) > 0 && !o.partial {
		t.Close()
		return nil, rep, &exitError{code: code, err: fmt.Errorf("%s the index needs could not be opened (named above): nothing written", plural(len(t.Missing), "archive", "archives")),
			hint: "give the directory that holds them, the right key, or --partial to write the rest"}
	}
	return t, rep, nil
}

// archivesIn is how the tree opens an archive by the name the index
// records: a file in the directory dir, or the object of that name under
// an s3:// prefix (s3://BUCKET/PREFIX/). remote says which.
func archivesIn(ctx context.Context, dir string) (open func(index.Archive) store.Source, remote bool, err error) {
	if !store.IsURL(dir) {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, false, usageError{fmt.Errorf("with --index, ARCHIVES is the directory (or s3:// prefix) that holds the archives: %s is not one", dir)}
		}
		return func(a index.Archive) store.Source { return store.File(filepath.Join(dir, a.Name)) }, false, nil
	}
	loc, err := store.ParseLocation(dir)
	if err != nil {
		return nil, false, usageError{err}
	}
	if !loc.IsPrefix() {
		return nil, false, usageError{fmt.Errorf("with --index, ARCHIVES is the prefix that holds the archives: %s does not end in '/' (give %s/)", dir, dir)}
	}
	st, prefix, err := store.Resolve(loc)
	if err != nil {
		return nil, false, &exitError{code: exitFailure, err: err}
	}
	// The index names archives by their last component (index spec
	// 6.1) and a prefix stands for every object under it, as a rebuild
	// read them: an archive is found by its name anywhere under the
	// prefix; of several objects of that name, the one with the
	// archive's id (each opened from its end, one GET).
	listed, err := repo.URLSources(ctx, dir)
	var empty *repo.EmptyPrefixError
	if err != nil && !errors.As(err, &empty) {
		return nil, false, &exitError{code: exitFailure, err: err}
	}
	byName := map[string][]store.Source{}
	for _, s := range listed {
		byName[s.Name] = append(byName[s.Name], s)
	}
	return func(a index.Archive) store.Source {
		switch c := byName[a.Name]; len(c) {
		case 0:
			key := prefix + a.Name
			return store.Source{Name: a.Name, Where: st.URL(key), Open: func() (store.Object, error) { return st.Open(ctx, key) }}
		case 1:
			return c[0]
		default:
			for _, s := range c {
				if obj, err := s.Open(); err == nil {
					ar, err := format.OpenArchive(obj)
					obj.Close()
					if err == nil && ar.Header.ID == a.ID {
						return s
					}
				}
			}
			return c[0] // named with its id as not the archive meant
		}
	}, true, nil
}

// finishTree reports skipped paths and says the exit status.
func finishTree(o *treeOptions, t *repo.Tree, rep *treeReport) error {
	for _, h := range t.Hidden {
		fmt.Fprintf(os.Stderr, "cbfs: note: %s: %s: not part of the current tree\n", quote(h.Path), h.Why)
	}
	for _, p := range t.Unmatched {
		fmt.Fprintf(os.Stderr, "cbfs: %s: no live path of the index at or under it\n", quote(p))
		rep.Skipped = append(rep.Skipped, treeSkipReport{Path: string(p), Why: "no live path of the index at or under it"})
	}
	conflicts := 0
	for _, s := range t.Skipped {
		fmt.Fprintf(os.Stderr, "cbfs: %s: %s; skipped\n", quote(s.Path), s.Why)
		rep.Skipped = append(rep.Skipped, treeSkipReport{Path: string(s.Path), Why: s.Why})
		if s.Conflict {
			conflicts++
		}
	}
	if o.json {
		w := bufio.NewWriter(os.Stderr)
		printJSON(w, rep)
		w.Flush()
	}
	code := exitOK
	for _, m := range t.Missing {
		c, _ := classify(m.Err)
		code = worse(code, c)
	}
	if code != exitOK {
		return &exitError{code: code, err: fmt.Errorf("--partial: %s of the index not written (their archives are named above)", plural(len(t.Skipped), "path", "paths"))}
	}
	if conflicts > 0 && o.conflicts == "fail" {
		return &exitError{code: exitConflict, err: fmt.Errorf("%s skipped: two archives of one sequence hold each (named above)", plural(conflicts, "conflicted path", "conflicted paths")),
			hint: "--conflicts skip exits 0 for them; write an archive with a higher sequence that settles them"}
	}
	if len(t.Unmatched) > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of the paths given not found in the index (named above)", len(t.Unmatched))}
	}
	if other := len(t.Skipped) - conflicts; other > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s skipped (named above)", plural(other, "path", "paths"))}
	}
	return nil
}

// runExportTree writes the current tree as one plain tar.
func runExportTree(c *cobra.Command, o *treeOptions, keys []*crypt.Key, outPath string, force, verbose bool, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("export --index needs ARCHIVES, the directory that holds the archives")}
	}
	t, rep, err := openTree(c.Context(), o, keys, args[0], args[1:])
	if err != nil {
		return err
	}
	defer t.Close()
	out, err := createOutput(c.Context(), outPath, force, true)
	if err != nil {
		return err
	}
	var list func([]byte)
	if verbose {
		list = memberLister(!isStdout(outPath), nil)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	var onMember func(*repo.TreeMember)
	if list != nil {
		onMember = func(m *repo.TreeMember) { list(m.Entry.Meta.Path) }
	}
	n, written, err := repo.WriteTree(c.Context(), t, bw, onMember)
	rep.Paths, rep.Bytes = n, written
	if err != nil {
		out.abort()
		return &exitError{err: err} // names the archive and the member
	}
	// The end of a plain tar: two zero blocks (archive spec 7.6).
	if _, err := bw.Write(make([]byte, 2*format.BlockSize)); err != nil {
		out.abort()
		return err
	}
	if err := bw.Flush(); err != nil {
		out.abort()
		return err
	}
	if err := out.commit(); err != nil {
		return err
	}
	if !isStdout(outPath) {
		fmt.Fprintf(os.Stderr, "cbfs: exported %s from %s into %s\n", plural(rep.Paths, "path", "paths"),
			plural(len(rep.Archives), "archive", "archives"), outPath)
	}
	return finishTree(o, t, rep)
}

// treeUse is the usage line of the --index form, for help texts.
var treeUse = strings.TrimSpace(`
With --index INDEX, ARCHIVES is the directory (or the s3:// prefix,
s3://BUCKET/PREFIX/) that holds the file system's archives, and the command works on the file system's current tree: every
live path of the index (or those at or under the PATHs given), each read by
random access from the archive that holds its current state, in path order
(a directory before what it holds). Each archive is checked to be the one
the index means (its archive id) before any member is read. An archive the
index needs that is missing or under another key is named with the number
of paths it supplies, and nothing is written (--partial writes the rest;
the status still says so). A path two archives of one sequence hold is
named and skipped (status 6; --conflicts skip: 0). A hard link stays a link
only when its target in the output is the very member it linked to;
otherwise it becomes a regular file with the content it had.`)

// runExtractTree restores the current tree into dest.
func runExtractTree(c *cobra.Command, o *treeOptions, keys []*crypt.Key, dest string, opt tree.ExtractOptions, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("extract --index needs ARCHIVES, the directory that holds the archives")}
	}
	t, rep, err := openTree(c.Context(), o, keys, args[0], args[1:])
	if err != nil {
		return err
	}
	defer t.Close()
	items := make([]tree.Item, len(t.Members))
	for i, m := range t.Members {
		items[i] = tree.Item{Archive: m.Archive.Archive, Entry: m.Entry, LinkAs: m.LinkAs, Where: m.Archive.Source.Location()}
	}
	opt.Report = problemPrinter(nil)
	st, err := tree.ExtractItems(c.Context(), items, dest, opt)
	var de *tree.DestError
	if errors.As(err, &de) {
		return &exitError{code: exitFailure, err: de, hint: "-C names the directory to extract into; it is created if missing"}
	}
	if err != nil {
		return err
	}
	rep.Paths, rep.Bytes = st.Members, st.Bytes
	if err := extractStatus(o.index, st, false); err != nil {
		finishTree(o, t, rep) // the skipped paths are named too
		return err
	}
	return finishTree(o, t, rep)
}
