package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newIndexCmd) }

func newIndexCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "index",
		Short: "Rebuild, list, look up, compare and merge master indexes",
		Long: `The master index says, for every path of a file system, which archive and
offset hold its current data. It is sealed with the file system's key and
deterministic: the same archives always give the same bytes, so 'cmp' proves
that a rebuilt index equals the one kept while writing ('pack --index' and
'import --index'). The format is specified in spec/cbfs-index-v1.md.

For each path the archive with the highest sequence number wins; within one
archive the last member. Deletions are tombstone members, kept in the index
so that a rebuild does not bring deleted files back. Two archives with the
same sequence number that both hold a path are a conflict: every candidate
is kept and reported, never one picked silently.`,
	}
	c.AddCommand(newIndexRebuildCmd(), newIndexLsCmd(), newIndexLookupCmd(), newIndexDiffCmd(), newIndexMergeCmd(), newIndexAddCmd(), newIndexRekeyCmd())
	return c
}

// indexInputErr gives index read errors their exit statuses.
func indexInputErr(name string, err error) error {
	e := inputErr(name, err)
	var ve *index.VersionError
	var ee *exitError
	if (errors.As(err, &ve) || errors.Is(err, index.ErrNotIndex)) && errors.As(e, &ee) && ee.code == 0 {
		ee.code = exitBadInput
		if errors.Is(err, index.ErrNotIndex) && ee.hint == "" && looksLikeArchive(name) {
			ee.err = fmt.Errorf("%w: it is a CBFS archive", ee.err)
			ee.hint = "an index of archives is made with 'cbfs index rebuild -k KEY -o INDEX ARCHIVE|DIR...'"
		}
	}
	return e
}

// looksLikeArchive says whether the local file name starts as a CBFS
// archive does (a record name, cbfs-...).
func looksLikeArchive(name string) bool { return string(fileHead(name, 5)) == "cbfs-" }

func readIndex(path string, keys ...*crypt.Key) (*index.Index, error) {
	x, err := repo.ReadIndexFile(path, keys...)
	if err != nil {
		return nil, indexInputErr(path, err)
	}
	return x, nil
}

type indexBuildOptions struct {
	keyPath  []string
	out      string
	force    bool
	json     bool
	shard    string
	partial  bool
	memory   string
	jobs     int
	lockWait time.Duration
	cmd      *cobra.Command
}

func (o *indexBuildOptions) flags(c *cobra.Command) {
	o.cmd = c
	keyFlag(c, &o.keyPath)
	c.Flags().StringVarP(&o.out, "output", "o", "", "index file to write (required; - for standard output)")
	c.Flags().BoolVar(&o.force, "force", false, "replace the output file if it exists")
	c.Flags().BoolVar(&o.json, "json", false, "print a JSON report on standard output")
	c.Flags().DurationVar(&o.lockWait, "lock-timeout", repo.DefaultLockTimeout, "how long to wait for another writer of the output index (0: fail at once)")
}

// lockOutput takes the lock of an index file about to be replaced, so
// that no update by a writer is lost under it; nil for standard output.
func lockOutput(o *indexBuildOptions) (*repo.IndexLock, error) {
	if o.out == "-" || store.IsURL(o.out) {
		// An object store has no lock file: the object is written whole
		// by one conditional write.
		return nil, nil
	}
	if st, err := os.Stat(o.out); err == nil && !st.Mode().IsRegular() {
		return nil, nil // a device or a pipe is written, not replaced
	}
	if o.lockWait < 0 {
		return nil, usageError{fmt.Errorf("--lock-timeout %v: want 0 or more", o.lockWait)}
	}
	l, err := repo.LockIndexFile(o.out, repo.IndexOptions{LockTimeout: o.lockWait, Waiting: func(lock string) {
		fmt.Fprintf(os.Stderr, "cbfs: waiting for another cbfs updating %s (lock %s; --lock-timeout %v)\n", o.out, lock, o.lockWait)
	}})
	if err != nil {
		return nil, &exitError{code: exitFailure, err: err, hint: "wait for it to finish, or give a longer --lock-timeout"}
	}
	return l, nil
}

// createIndexOutput opens the output of rebuild or merge, checked under
// its lock before the rename.
func createIndexOutput(o *indexBuildOptions, l *repo.IndexLock) (*output, error) {
	path := o.out
	if l != nil {
		path = l.Path() // through a symlink: the file it points to
	}
	out, err := createOutput(o.cmd.Context(), path, o.force, true)
	if err == nil && l != nil && out.file != nil {
		out.file.BeforeRename = l.Unchanged
	}
	return out, err
}

func newIndexRebuildCmd() *cobra.Command {
	var o indexBuildOptions
	c := &cobra.Command{
		Use:   "rebuild -k KEY -o INDEX [--shard I/N] [--json] ARCHIVE|DIR...",
		Short: "Rebuild the master index from the archives alone",
		Long: `rebuild reads each archive's footer and summary (one read at the end of
the file, a second for a large summary), several archives at a time, and
writes the master index. An archive whose footer or summary is missing or
damaged is scanned member by member instead: every complete member still
counts, and the archive is reported.
An archive that cannot be read at all (wrong key, not a CBFS archive,
damaged header, I/O error) is listed; nothing of it is in the index.

A DIR stands for every regular file directly in it (not in subdirectories)
whose name does not start with '.'. The index records each archive by its
file name, without the directory.

--shard I/N builds the part of the index from every N-th archive: of the
archives sorted by file name, those at positions I, I+N, I+2N, ... (counting
from 0). 'cbfs index merge' combines the N parts into the same bytes as a
full rebuild, so a rebuild can be spread over machines.

A rebuild writes only a whole index: when an archive cannot be read at all
(another key, not an archive, an I/O error), it is named and nothing is
written, since an index without it could bring back what it superseded or
deleted. --partial writes the index of the others anyway (the exit status
still says what went wrong). When no archive opens with the key, nothing is
written, --partial or not. Master index files in a DIR are skipped with a
note. An existing output is replaced only with --force, under the index's
lock (as 'pack --index' takes it).

Exit status: 0 done; 3 the index was written, but some archive was damaged
and scanned member by member (listed on standard error), or an archive's
header is damaged (not written); 4 some archive is under another key (not
written; none opens with the key: never written); 5 a file is not a CBFS
archive (not written); 1 an archive could not be read or the index could not
be written; 6 the index was written and holds conflicts (listed); 2 usage.`,
		Example: `  cbfs index rebuild -k fs1.key -o fs1.idx archives/
  cmp fs1.idx kept.idx && echo identical
  cbfs index rebuild -k fs1.key --shard 0/4 -o part0.idx archives/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runIndexRebuild(&o, args) },
	}
	o.flags(c)
	c.Flags().StringVar(&o.shard, "shard", "", "build only part I of N (I/N, 0 <= I < N); env/N takes I from\nJOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX or SLURM_ARRAY_TASK_ID;\n{shard} in -o is replaced by I")
	jobsFlag(c, &o.jobs)
	c.Flags().BoolVar(&o.partial, "partial", false, "write the index even when some archives cannot be read (the exit status still says so)")
	c.Flags().StringVar(&o.memory, "memory", "64MiB", "records held in memory before sorted runs spill to temporary files beside the output (such as 256MiB or 1GiB)")
	return c
}

// parseSize reads --memory.
func parseSize(s string) (int, error) {
	n, err := store.ParseSize(s)
	if err != nil || n > 1<<40 {
		return 0, fmt.Errorf("--memory %q: want a size such as 64MiB", s)
	}
	return int(n), nil
}

// limitMemory makes the garbage collector keep the heap near a budget
// (unless GOMEMLIMIT says otherwise): the runs in memory and what is
// being merged, with room for the rest of the program.
func limitMemory(budget int) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(budget) + 24<<20)
	}
}

func needOutput(o *indexBuildOptions) error {
	if o.out == "" {
		return usageError{errors.New("give -o INDEX (or -o - for standard output)")}
	}
	if o.json && o.out == "-" {
		return usageError{errors.New("--json prints the report on standard output: give -o FILE")}
	}
	return nil
}

func runIndexRebuild(o *indexBuildOptions, args []string) error {
	if err := needOutput(o); err != nil {
		return err
	}
	var shard repo.Shard
	if o.shard == "" && strings.Contains(o.out, "{shard}") {
		return usageError{fmt.Errorf("-o %s: {shard} is replaced by the shard's number, and there is no --shard", o.out)}
	}
	if o.shard != "" {
		var err error
		if shard, err = repo.ParseShard(o.shard); err != nil {
			return usageError{err}
		}
		// Each shard writes a part of a fixed name: a worker run again
		// writes the same part.
		o.out = strings.ReplaceAll(o.out, "{shard}", strconv.Itoa(shard.I))
	}
	// Each archive is read with the key whose key check value it
	// carries; the index is sealed with the first.
	keys, err := loadKeys(o.keyPath)
	if err != nil {
		return err
	}
	key := keys[0]
	srcs, indexes, err := repo.ArchiveSourcesContext(o.cmd.Context(), args)
	noteIndexes(indexes)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	mem, err := parseSize(o.memory)
	if err != nil {
		return usageError{err}
	}
	limitMemory(mem)
	lock, err := lockOutput(o)
	if err != nil {
		return err
	}
	if lock != nil {
		defer lock.Unlock()
	}
	out, err := createIndexOutput(o, lock)
	if err != nil {
		return err
	}
	start := time.Now()
	tmp := ""
	if o.out != "-" && !store.IsURL(o.out) {
		tmp = filepath.Dir(o.out)
	}
	// Only a whole index is written (spec cbfs-index-v1 6.2): one without
	// an archive that could not be read could bring back what that
	// archive superseded or deleted.
	// A shard with no archive at all (more shards than archives) writes
	// an empty part, so that the merge of every part still works.
	keep := func(res *repo.RebuildResult) bool {
		skipIndexObjects(res)
		return (res.Archives > 0 || len(res.Unreadable) == 0) && (len(res.Unreadable) == 0 || o.partial)
	}
	res, err := repo.RebuildTo(o.cmd.Context(), srcs, key, shard, repo.RebuildOptions{Memory: mem, TempDir: tmp, Keep: keep, Jobs: jobsFor(o.jobs, anyURL(args...)),
		ReadKeys: keys[1:]}, out)
	if err != nil {
		out.abort()
		return &exitError{code: exitFailure, err: err}
	}
	written := keep(res)
	if written {
		if err := out.commit(); err != nil {
			return indexWriteErr(o.out, err)
		}
	} else {
		out.abort()
	}
	rep := indexReport{Index: o.out, Archives: res.Archives, Members: res.Members, Seconds: time.Since(start).Seconds(), written: written, partial: o.partial}
	if anyURL(append(args, o.out)...) {
		r := store.Requests()
		rep.Requests = &r
	}
	if shard.N > 0 {
		rep.Shard = shard.String()
	}
	if len(keys) > 1 {
		for i, k := range keys {
			rep.Keys = append(rep.Keys, keyUse{KeyID: k.ID(), Archives: res.KeyArchives[i], SealsIndex: i == 0})
		}
	}
	rep.fill(res.Combined, res.Copies)
	for _, s := range res.Scanned {
		js := reportArchive{Archive: s.Name, Where: s.Where, Error: s.Err.Error(), Members: s.Members, Problems: []string{}}
		for _, p := range s.Problems {
			js.Problems = append(js.Problems, p.Error())
		}
		rep.Scanned = append(rep.Scanned, js)
	}
	for _, u := range res.Unreadable {
		rep.Unreadable = append(rep.Unreadable, reportArchive{Archive: u.Name, Where: u.Where, Error: u.Err.Error(), Problems: []string{}})
		c, _ := classify(u.Err)
		rep.unreadCode = worse(rep.unreadCode, c)
	}
	for _, e := range res.Excluded {
		rep.Excluded = append(rep.Excluded, reportExcluded{Archive: e.Archive, Member: e.Member, Path: string(e.Path)})
	}
	return rep.finish(o.json)
}

// skipIndexObjects takes the master indexes found under an s3:// prefix
// out of the unreadable archives, with a note, as in a DIR.
func skipIndexObjects(res *repo.RebuildResult) {
	unread := res.Unreadable[:0]
	for _, u := range res.Unreadable {
		if isIndexObject(u.Err) {
			fmt.Fprintf(os.Stderr, "cbfs: note: %s\n", u.Err)
			continue
		}
		unread = append(unread, u)
	}
	res.Unreadable = unread
}

// indexWriteErr explains an index output that could not be put in place.
func indexWriteErr(path string, err error) error {
	var re *repo.IndexReplacedError
	if errors.As(err, &re) {
		return &exitError{code: exitFailure, err: err, hint: "run the command again: " + path + " is as the other writer left it"}
	}
	return err
}

func newIndexMergeCmd() *cobra.Command {
	var o indexBuildOptions
	c := &cobra.Command{
		Use:   "merge -k KEY -o OUT [--json] PART...",
		Short: "Combine index parts (or indexes) into one",
		Long: `merge combines indexes, such as the parts that 'index rebuild --shard' wrote,
into one: the union of their archives, and for every path the winner over
all of them. Merging the N shards of a rebuild gives the same bytes as the
full rebuild. An archive present in two parts counts once and is reported.

Exit status: 0 done; 6 the index was written and holds conflicts (listed on
standard error); 3 a part is damaged; 4 wrong key; 5 a part is not an index.`,
		Example: `  cbfs index merge -k fs1.key -o fs1.idx part0.idx part1.idx part2.idx part3.idx`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := needOutput(&o); err != nil {
				return err
			}
			keys, err := loadKeys(o.keyPath)
			if err != nil {
				return err
			}
			key := keys[0] // the merged index is sealed with the first key
			start := time.Now()
			// Locked before the parts are read: OUT may be one of them.
			lock, err := lockOutput(&o)
			if err != nil {
				return err
			}
			if lock != nil {
				defer lock.Unlock()
			}
			// Every part is opened (and its directory checked) before
			// anything is written: a part that does not read is named
			// with its own status. An s3:// prefix stands for every
			// object under it (the parts a sharded rebuild wrote).
			var paths []string
			for _, a := range args {
				ps, err := repo.ListIndexParts(c.Context(), a)
				if err != nil {
					return &exitError{code: exitFailure, err: err}
				}
				for _, p := range ps {
					if p != o.out || p == a {
						paths = append(paths, p) // not an earlier output under the prefix
					}
				}
			}
			for _, p := range paths {
				_, f, err := repo.OpenIndexFile(p, key)
				if err != nil {
					return indexInputErr(p, err)
				}
				f.Close()
			}
			out, err := createIndexOutput(&o, lock)
			if err != nil {
				return err
			}
			x, err := repo.MergeIndexFilesTo(o.cmd.Context(), paths, key, out)
			if err != nil {
				out.abort()
				var ie *index.Error
				if errors.As(err, &ie) || errors.Is(err, format.ErrWrongKey) {
					return indexInputErr("index merge", err)
				}
				return &exitError{code: exitDamaged, err: err}
			}
			if err := out.commit(); err != nil {
				return indexWriteErr(o.out, err)
			}
			copies := x.Copies
			rep := indexReport{Index: o.out, Archives: len(x.Archives), Seconds: time.Since(start).Seconds(), written: true}
			if anyURL(append(args, o.out)...) {
				r := store.Requests()
				rep.Requests = &r
			}
			for _, a := range x.Archives {
				rep.Members += int64(a.Members)
			}
			rep.fill(x, copies)
			return rep.finish(o.json)
		},
	}
	o.flags(c)
	return c
}

// indexReport is what rebuild and merge say, as text on standard error
// or as JSON on standard output.
type indexReport struct {
	Index      string           `json:"index"`
	Shard      string           `json:"shard"`
	Archives   int              `json:"archives"`
	Members    int64            `json:"members"`
	Records    int              `json:"records"`
	Live       int              `json:"live"`
	Tombstones int              `json:"tombstones"`
	Conflicts  []reportConflict `json:"conflicts"`
	Scanned    []reportArchive  `json:"scanned"`
	Unreadable []reportArchive  `json:"unreadable"`
	Copies     []reportCopy     `json:"copies"`
	Excluded   []reportExcluded `json:"excluded"`
	Written    bool             `json:"written"`
	Seconds    float64          `json:"seconds"`
	// Requests are those made to object stores, when any was used.
	Requests *store.RequestStats `json:"requests,omitempty"`
	// Keys, when several were given, says how many archives each opened;
	// the first seals the index.
	Keys []keyUse `json:"keys,omitempty"`
	// Rekeyed are the archives of an index rekey: old and new ids.
	Rekeyed    []indexRekeyRow `json:"rekeyed,omitempty"`
	written    bool
	partial    bool
	unreadCode int // the worst status of the unreadable archives
}

// keyUse is one key of several: how many archives it opened.
type keyUse struct {
	KeyID      string `json:"key_id"`
	Archives   int    `json:"archives"`
	SealsIndex bool   `json:"seals_index"`
}

// reportExcluded is a member kept out of the index: its path has a '..'
// component.
type reportExcluded struct {
	Archive string `json:"archive"`
	Member  uint32 `json:"member"`
	Path    string `json:"path"`
}

type reportConflict struct {
	Path       string           `json:"path"`
	PathBase64 string           `json:"path_base64,omitempty"`
	Candidates []indexEntryJSON `json:"candidates"`
}

type reportArchive struct {
	Archive  string   `json:"archive"`
	Where    string   `json:"where"`
	Error    string   `json:"error"`
	Members  int      `json:"members"`
	Problems []string `json:"problems"`
}

type reportCopy struct {
	ID    string    `json:"id"`
	Names [2]string `json:"names"`
}

func (r *indexReport) fill(c *index.CombineResult, copies []index.Copy) {
	st := c.Stats
	r.Records, r.Live, r.Tombstones = st.Records, st.Live, st.Tombstones
	r.Conflicts, r.Scanned, r.Unreadable, r.Copies, r.Excluded = []reportConflict{}, []reportArchive{}, []reportArchive{}, []reportCopy{}, []reportExcluded{}
	for _, c := range repo.CombinedConflicts(c) {
		rc := reportConflict{Path: string(c.Path)}
		if !utf8.Valid(c.Path) {
			rc.PathBase64 = base64.StdEncoding.EncodeToString(c.Path)
		}
		for _, l := range c.Candidates {
			rc.Candidates = append(rc.Candidates, entryJSON(c.Path, l, true))
		}
		r.Conflicts = append(r.Conflicts, rc)
	}
	for _, c := range copies {
		r.Copies = append(r.Copies, reportCopy{ID: hex.EncodeToString(c.ID[:]), Names: c.Names})
	}
}

// finish prints the report and gives the exit status.
func (r *indexReport) finish(asJSON bool) error {
	w := bufio.NewWriter(os.Stderr)
	for _, u := range r.Unreadable {
		fmt.Fprintf(w, "cbfs: %s: cannot be read, not indexed: %s\n", u.Where, strings.TrimPrefix(u.Error, u.Where+": "))
	}
	for _, s := range r.Scanned {
		fmt.Fprintf(w, "cbfs: %s: %s; scanned member by member: %d complete members counted\n", s.Where, s.Error, s.Members)
		for _, p := range s.Problems {
			fmt.Fprintf(w, "cbfs: %s:   %s\n", s.Where, p)
		}
	}
	for _, e := range r.Excluded {
		fmt.Fprintf(w, "cbfs: %s member %d: %s has a '..' component: kept out of the index\n", e.Archive, e.Member, quote([]byte(e.Path)))
	}
	for _, c := range r.Copies {
		fmt.Fprintf(w, "cbfs: warning: %s and %s are the same archive (id %s): counted once, as %s\n", c.Names[0], c.Names[1], c.ID, c.Names[0])
	}
	for _, c := range r.Conflicts {
		var who []string
		for _, e := range c.Candidates {
			what := fmt.Sprintf("%s member %d", e.Archive, e.Member)
			if e.Type == format.TypeTombstone.String() {
				what += " (deleted)"
			}
			who = append(who, what)
		}
		fmt.Fprintf(w, "cbfs: conflict: %s: sequence %d in %s\n", quote([]byte(c.Path)), c.Candidates[0].Seq, strings.Join(who, " and "))
	}
	if len(r.Keys) > 0 {
		var uses []string
		for _, k := range r.Keys {
			uses = append(uses, fmt.Sprintf("%s with key %s", plural(k.Archives, "archive", "archives"), k.KeyID))
		}
		fmt.Fprintf(w, "cbfs: note: %s opened; the index is sealed with key %s\n", strings.Join(uses, ", "), r.Keys[0].KeyID)
	}
	r.Written = r.written
	if !asJSON && r.written {
		fmt.Fprintf(w, "cbfs: %s: %s, %s, %s -> %s (%.2fs)\n",
			plural(r.Archives, "archive", "archives"), plural(r.Live, "live path", "live paths"), plural(r.Tombstones, "tombstone", "tombstones"),
			plural(len(r.Conflicts), "conflict", "conflicts"), r.Index, r.Seconds)
	}
	w.Flush()
	if asJSON {
		if err := printJSON(stdout, r); err != nil {
			return err
		}
	}
	switch {
	case r.Archives == 0 && len(r.Unreadable) > 0:
		code := r.unreadCode
		if code == exitWrongKey {
			return &exitError{code: code, err: fmt.Errorf("no archive opens with this key (%s named above): %s was not written", plural(len(r.Unreadable), "archive", "archives"), r.Index),
				hint: "check -k/--key or CBFS_KEY_FILE: 'cbfs key id -k FILE' shows which key a file holds"}
		}
		return &exitError{code: code, err: fmt.Errorf("no archive could be read (%d named above): %s was not written", len(r.Unreadable), r.Index)}
	case len(r.Unreadable) > 0 && !r.written:
		return &exitError{code: r.unreadCode, err: fmt.Errorf("%s could not be read (named above): %s was not written, since an index without them could bring back what they superseded or deleted",
			plural(len(r.Unreadable), "archive", "archives"), r.Index),
			hint: "give the right archives and key, or --partial to write the index of the others anyway"}
	case len(r.Unreadable) > 0:
		return &exitError{code: r.unreadCode, err: fmt.Errorf("%s could not be read and %d damaged: the partial index %s holds everything else",
			plural(len(r.Unreadable), "archive", "archives"), len(r.Scanned), r.Index)}
	case len(r.Scanned) > 0:
		return &exitError{code: exitDamaged, err: fmt.Errorf("%s damaged (scanned member by member): the index %s holds every complete member",
			plural(len(r.Scanned), "archive", "archives"), r.Index)}
	case len(r.Conflicts) > 0:
		return &exitError{code: exitConflict, err: fmt.Errorf("%s: the index %s holds every candidate", plural(len(r.Conflicts), "conflict", "conflicts"), r.Index),
			hint: "give one of the archives a higher sequence number (--seq), or write an archive that settles the paths"}
	}
	return nil
}

// indexEntryJSON is one candidate, as --json prints it.
type indexEntryJSON struct {
	Path       string `json:"path,omitempty"`
	PathBase64 string `json:"path_base64,omitempty"`
	Archive    string `json:"archive"`
	ArchiveID  string `json:"archive_id"`
	Seq        uint64 `json:"seq"`
	Member     uint32 `json:"member"`
	Type       string `json:"type"`
	Offset     int64  `json:"offset"`
	Span       int64  `json:"span"`
	Size       int64  `json:"size"`
	Inode      uint64 `json:"inode,omitempty"`
	Conflict   bool   `json:"conflict,omitempty"`
}

func entryJSON(path []byte, l repo.Location, noPath bool) indexEntryJSON {
	j := indexEntryJSON{Archive: l.Archive.Name, ArchiveID: hex.EncodeToString(l.Archive.ID[:]), Seq: l.Archive.Seq,
		Member: l.Member, Type: l.Type.String(), Offset: l.Offset, Span: l.Span, Size: l.Size, Inode: l.Inode}
	if !noPath {
		j.Path = string(path)
		if !utf8.Valid(path) {
			j.PathBase64 = base64.StdEncoding.EncodeToString(path)
		}
	}
	return j
}

// indexLine is the tab-separated form: path, archive, offset, size, seq.
// The path is escaped as ls escapes it, so a tab or newline in a path
// cannot break the columns.
func indexLine(path []byte, l repo.Location, conflict bool) string {
	s := fmt.Sprintf("%s\t%s\t%d\t%d\t%d", quote(path), l.Archive.Name, l.Offset, l.Size, l.Archive.Seq)
	if conflict {
		s += "\tconflict"
	}
	return s
}

// openIndex opens an index file for lookups (trailer and directory
// read and checked; blocks read as needed).
func openIndex(path string, keys ...*crypt.Key) (*index.Reader, func(), error) {
	x, f, err := repo.OpenIndexFile(path, keys...)
	if err != nil {
		return nil, nil, indexInputErr(path, err)
	}
	return x, func() { f.Close() }, nil
}

// jsonArray writes a JSON array one element at a time, as printJSON
// would write it whole.
type jsonArray struct {
	w *bufio.Writer
	n int
}

func (a *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	if a.n == 0 {
		a.w.WriteString("[\n  ")
	} else {
		a.w.WriteString(",\n  ")
	}
	a.n++
	_, err = a.w.Write(b)
	return err
}

func (a *jsonArray) close() {
	if a.n == 0 {
		a.w.WriteString("[]\n")
		return
	}
	a.w.WriteString("\n]\n")
}

func newIndexLsCmd() *cobra.Command {
	var keyPath []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls -k KEY [--json] INDEX [PATH]",
		Short: "List the live paths of an index",
		Long: `ls prints one live path per line, sorted by path bytes, tab-separated: the
path, the archive's file name, the physical offset of the member in the
archive, the file's size and the archive's sequence number. Paths are
escaped as 'cbfs ls' and tar tv escape them: a backslash as \\, a newline,
tab and the other C control characters as \n, \t, ..., other control bytes
and bytes that are not UTF-8 as \NNN octal. Deleted paths (tombstones) are not listed.
A conflicted path is listed once per live candidate, with a sixth column
'conflict'. --json prints one JSON array with every field.

With PATH, only PATH and the paths below it are listed, and only the blocks
of the index that hold them are read. The listing streams: the index is
read one block at a time, whatever its size.`,
		Example: `  cbfs index ls -k fs1.key fs1.idx
  cbfs index ls -k fs1.key fs1.idx home/ann
  cbfs index ls -k fs1.key --json fs1.idx | jq -r '.[].path'`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			x, done, err := openIndex(args[0], keys...)
			if err != nil {
				return err
			}
			defer done()
			w := bufio.NewWriterSize(stdout, 1<<20)
			defer w.Flush()
			js := &jsonArray{w: w}
			emit := func(rec *index.Record) error {
				conflict := rec.Conflicted()
				for _, e := range rec.Entries {
					if e.Type == format.TypeTombstone {
						continue
					}
					l := repo.Location{Archive: x.Archives[e.Archive], Entry: e}
					if asJSON {
						j := entryJSON(rec.Path, l, false)
						j.Conflict = conflict
						if err := js.add(j); err != nil {
							return err
						}
						continue
					}
					w.WriteString(indexLine(rec.Path, l, conflict))
					w.WriteByte('\n')
				}
				return nil
			}
			var it *index.Iter
			var prefix []byte
			if len(args) == 2 {
				dir, err := index.CanonicalPath([]byte(args[1]))
				if err != nil {
					return usageError{fmt.Errorf("%s: not a path the index can hold: %v", quote([]byte(args[1])), err)}
				}
				if rec, ok, err := x.Lookup(dir); err != nil {
					return indexInputErr(args[0], err)
				} else if ok {
					if err := emit(rec); err != nil {
						return err
					}
				}
				prefix = append(dir, '/')
				it = x.Records(prefix)
			} else {
				it = x.Records(nil)
			}
			for it.Next() {
				if prefix != nil && !bytes.HasPrefix(it.Path(), prefix) {
					break
				}
				if err := emit(it.Record()); err != nil {
					return err
				}
			}
			if err := it.Err(); err != nil {
				w.Flush()
				return indexInputErr(args[0], err)
			}
			if asJSON {
				js.close()
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return c
}

// readPathList reads one path per line (a trailing CR dropped, empty
// lines skipped).
func readPathList(name string) ([]string, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), format.MaxPathLen+2)
	for sc.Scan() {
		if l := strings.TrimSuffix(sc.Text(), "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func newIndexLookupCmd() *cobra.Command {
	var keyPath []string
	var from string
	var asJSON bool
	c := &cobra.Command{
		Use:   "lookup -k KEY [--json] INDEX [--from FILE] [PATH...]",
		Short: "Say which archive and offset hold each path",
		Long: `lookup prints, for each PATH, one tab-separated line: the archive's file
name, the archive's id (the name alone does not prove which archive a file
is: check the id, as 'cbfs ls --json' or 'cbfs verify --json' show it), the
member's physical offset in it, the file's size, the archive's sequence
number, and the path. A deleted path prints 'deleted in ARCHIVE (id ID) seq
N' and the path; a path the index does not know is reported on standard
error. A conflicted path prints a line per candidate. PATH is looked up in
its canonical form: "./a/b", "/a/b" and "a//b/" are "a/b". --from FILE
takes more paths, one per line ('-' for standard input).

lookup reads the index's trailer and directory, then only the blocks that
may hold the paths, each once however many paths it holds.

Exit status: 0 every path is live; 1 some path is deleted or unknown; 6 some
path is conflicted (and none deleted or unknown).`,
		Example: `  cbfs index lookup -k fs1.key fs1.idx home/ann/notes.txt
  cbfs index lookup -k fs1.key fs1.idx --from paths.txt`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			names := args[1:]
			if from != "" {
				more, err := readPathList(from)
				if err != nil {
					return &exitError{code: exitFailure, err: fmt.Errorf("--from %s: %w", from, err)}
				}
				names = append(slices.Clone(names), more...)
			}
			if len(names) == 0 {
				return usageError{errors.New("give a PATH to look up, or --from FILE")}
			}
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			x, done, err := openIndex(args[0], keys...)
			if err != nil {
				return err
			}
			defer done()
			// Looked up by their canonical forms, the form the index
			// keys on; said as the index holds them.
			paths := make([][]byte, len(names))
			bad := make([]error, len(names))
			for i, n := range names {
				paths[i], bad[i] = index.CanonicalPath([]byte(n))
			}
			found := make([]*index.Record, len(names))
			var ok [][]byte
			var at []int
			for i := range paths {
				if bad[i] == nil {
					ok, at = append(ok, paths[i]), append(at, i)
				}
			}
			err = x.LookupMany(ok, func(i int, rec *index.Record) error {
				found[at[i]] = &index.Record{Path: bytes.Clone(rec.Path), Entries: slices.Clone(rec.Entries)}
				return nil
			})
			if err != nil {
				return indexInputErr(args[0], err)
			}
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			var js []indexEntryJSON
			missing, conflicts := 0, 0
			for i, n := range names {
				p := paths[i]
				if bad[i] != nil {
					missing++
					w.Flush()
					fmt.Fprintf(os.Stderr, "cbfs: %s: not a path the index can hold: %v\n", quote([]byte(n)), bad[i])
					continue
				}
				rec := found[i]
				if rec == nil {
					missing++
					w.Flush()
					fmt.Fprintf(os.Stderr, "cbfs: %s: not in the index\n", quote(p))
					continue
				}
				conflict := rec.Conflicted()
				if conflict {
					conflicts++
				}
				if !rec.Live() {
					missing++
				}
				for _, e := range rec.Entries {
					l := repo.Location{Archive: x.Archives[e.Archive], Entry: e}
					if asJSON {
						j := entryJSON(p, l, false)
						j.Conflict = conflict
						js = append(js, j)
						continue
					}
					if l.Type == format.TypeTombstone {
						fmt.Fprintf(w, "deleted in %s (id %x) seq %d\t%s\n", l.Archive.Name, l.Archive.ID, l.Archive.Seq, quote(p))
					} else {
						fmt.Fprintf(w, "%s\t%x\t%d\t%d\t%d\t%s\n", l.Archive.Name, l.Archive.ID, l.Offset, l.Size, l.Archive.Seq, quote(p))
					}
				}
			}
			if asJSON {
				if js == nil {
					js = []indexEntryJSON{}
				}
				if err := printJSON(w, js); err != nil {
					return err
				}
			}
			w.Flush()
			switch {
			case missing > 0:
				return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d paths are deleted or not in the index", missing, len(names))}
			case conflicts > 0:
				return &exitError{code: exitConflict, err: fmt.Errorf("%d of %d paths are conflicted", conflicts, len(names))}
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (deleted paths have type \"tombstone\")")
	c.Flags().StringVar(&from, "from", "", "also look up the paths in FILE, one per line (- for standard input)")
	return c
}

func newIndexDiffCmd() *cobra.Command {
	var keyPath []string
	c := &cobra.Command{
		Use:   "diff -k KEY A B",
		Short: "Compare two indexes",
		Long: `diff compares two indexes by content: archives by id, records by path. It
exits 0 when they are equal. Otherwise it lists the differences and exits 1:
'archive - ...' and 'archive + ...' for an archive only in A or only in B
(both for one that differs), '- PATH ...' and '+ PATH ...' for a path's
record in A and in B (path, archive, offset, size, seq, then the type when
it is not a file). Both indexes are read one block at a time, side by side.`,
		Example: `  cbfs index diff -k fs1.key kept.idx rebuilt.idx`,
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			a, doneA, err := openIndex(args[0], keys...)
			if err != nil {
				return err
			}
			defer doneA()
			b, doneB, err := openIndex(args[1], keys...)
			if err != nil {
				return err
			}
			defer doneB()
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			n := 0
			err = repo.DiffReaders(a, b, func(e repo.IndexDiff) error {
				n++
				if !e.IsRecord {
					if e.ArchA != nil {
						fmt.Fprintf(w, "archive - %s\n", archiveLine(e.ArchA))
					}
					if e.ArchB != nil {
						fmt.Fprintf(w, "archive + %s\n", archiveLine(e.ArchB))
					}
					return nil
				}
				diffSide(w, "-", e.Path, e.A)
				diffSide(w, "+", e.Path, e.B)
				return nil
			})
			if err != nil {
				w.Flush()
				return indexInputErr(args[0]+" or "+args[1], err)
			}
			if n == 0 {
				return nil
			}
			w.Flush()
			return &exitError{code: exitFailure, err: fmt.Errorf("%s and %s differ: %d differences", args[0], args[1], n)}
		},
	}
	keyFlag(c, &keyPath)
	return c
}

func archiveLine(a *index.Archive) string {
	return fmt.Sprintf("%s\tid %x\tseq %d\tmembers %d", a.Name, a.ID, a.Seq, a.Members)
}

func diffSide(w io.Writer, sign string, path []byte, ls []repo.Location) {
	for _, l := range ls {
		line := indexLine(path, l, len(ls) > 1)
		if l.Type != format.TypeRegular {
			line += "\t" + l.Type.String()
		}
		fmt.Fprintf(w, "%s %s\n", sign, line)
	}
}

func newIndexAddCmd() *cobra.Command {
	o := writeOptions{}
	c := &cobra.Command{
		Use:   "add -k KEY [--new-index] INDEX ARCHIVE...",
		Short: "Add archives already written to an index",
		Long: `add adds archives to the master index INDEX as 'pack --index' and 'import
--index' do after writing one: each is read as a rebuild reads it (footer and
summary) and merged in, under the index's lock, atomically. It repairs an
index whose update failed after its archive was written. INDEX must exist
unless --new-index is given.

Exit status: 0 done; 6 the index was written and holds conflicts; 1 the index
could not be updated (the old one is unchanged); 3, 4, 5 as for reading.`,
		Example: `  cbfs index add -k fs1.key fs1.index archives/0042.cbfs`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			if o.lockWait < 0 {
				return usageError{fmt.Errorf("--lock-timeout %v: want 0 or more", o.lockWait)}
			}
			keys, err := loadKeys(o.keyPath)
			if err != nil {
				return err
			}
			key := keys[0]
			o.index = args[0]
			if o.update, err = openIndexUpdate(o.index, keys, o.newIndex, o.lockWait); err != nil {
				return err
			}
			defer o.unlock()
			for _, a := range args[1:] {
				o.out = a
				if err := o.addArchive(key, false); err != nil {
					return err
				}
			}
			return nil
		},
	}
	keyFlag(c, &o.keyPath)
	c.Flags().BoolVar(&o.newIndex, "new-index", false, "create INDEX if it does not exist yet")
	c.Flags().DurationVar(&o.lockWait, "lock-timeout", repo.DefaultLockTimeout, "how long to wait for another writer of the index (0: fail at once)")
	return c
}
