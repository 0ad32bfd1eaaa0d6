package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tarconv"
	"github.com/spf13/cobra"
)

func init() {
	register(newImportCmd)
}

// writeOptions are the flags of every command that writes an archive.
type writeOptions struct {
	keyPath    []string
	out        string
	force      bool
	compress   string
	seq        uint64
	index      string   // --index: the master index to add the archive to
	deletes    []string // --delete
	deleteFrom string   // --delete-from
	deleteTree []string // --delete-tree
	newIndex   bool     // --new-index
	lockWait   time.Duration
	cmd        *cobra.Command
	// update holds the index's lock from before the sequence number is
	// taken until the index is written: the whole read-modify-write.
	update *repo.IndexUpdate
}

func (o *writeOptions) flags(c *cobra.Command) {
	o.cmd = c
	keyFlag(c, &o.keyPath)
	c.Flags().StringVarP(&o.out, "output", "o", "", "archive to write (default standard output)")
	c.Flags().BoolVar(&o.force, "force", false, "replace the output file if it exists")
	c.Flags().StringVar(&o.compress, "compress", "lz4", "chunk compression: lz4 or none")
	c.Flags().Uint64Var(&o.seq, "seq", 0, "sequence number of the archive among its file system's archives\n(default: with --index, one more than the highest in the index, or 1 for a new index; else 0)")
	c.Flags().StringVar(&o.index, "index", "", "add the archive to this master index, which must exist (see --new-index);\nthe update is atomic and locked (needs -o FILE: the index records the archive's file name)")
	c.Flags().BoolVar(&o.newIndex, "new-index", false, "with --index: create the index if it does not exist yet (an existing one is updated as usual)")
	c.Flags().DurationVar(&o.lockWait, "lock-timeout", repo.DefaultLockTimeout, "with --index: how long to wait for another writer of the index (0: fail at once)")
	c.Flags().StringArrayVar(&o.deletes, "delete", nil, "record PATH as deleted, as a tombstone member (repeatable);\nmembers of the archive with the same path supersede it")
	c.Flags().StringVar(&o.deleteFrom, "delete-from", "", "record every path in FILE (- for standard input), one per line, LF or CRLF, as deleted\n(empty lines are skipped)")
	c.Flags().StringArrayVar(&o.deleteTree, "delete-tree", nil, "record DIR and every live path below it in the index as deleted (repeatable; needs --index)")
}

func (o *writeOptions) writer() (format.WriterOptions, error) {
	wo := format.WriterOptions{Sequence: o.seq}
	switch o.compress {
	case "lz4":
		wo.Compress = true
	case "none":
	default:
		return wo, usageError{fmt.Errorf("--compress %q: want lz4 or none", o.compress)}
	}
	for _, d := range o.deletes {
		wo.Tombstones = append(wo.Tombstones, []byte(d))
	}
	if o.deleteFrom != "" {
		var b []byte
		var err error
		if o.deleteFrom == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(o.deleteFrom)
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return wo, &exitError{code: exitFailure, err: fmt.Errorf("--delete-from %s: %w", o.deleteFrom, err)}
		}
		// One path per line, LF or CRLF; empty lines are skipped.
		for _, line := range bytes.Split(b, []byte("\n")) {
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) > 0 {
				wo.Tombstones = append(wo.Tombstones, line)
			}
		}
	}
	// Tombstones carry the canonical form of their path (spec
	// cbfs-index-v1 2.7), the form the index keys on.
	for i, p := range wo.Tombstones {
		if len(p) == 0 {
			return wo, usageError{errors.New("--delete \"\": a deletion needs a path")}
		}
		if len(p) > format.MaxPathLen {
			return wo, usageError{fmt.Errorf("--delete: a path of %d bytes, over the cap %d", len(p), format.MaxPathLen)}
		}
		if bytes.IndexByte(p, 0) >= 0 {
			return wo, usageError{fmt.Errorf("--delete %s: a path holds no NUL byte (is --delete-from a list of paths, one a line?)", quote(p))}
		}
		c, err := index.CanonicalPath(p)
		if err != nil {
			return wo, usageError{fmt.Errorf("--delete %s: %v: no file of the file system has this path", quote(p), err)}
		}
		wo.Tombstones[i] = c
	}
	if o.index == "" {
		if len(o.deleteTree) > 0 {
			return wo, usageError{errors.New("--delete-tree needs --index: the paths below DIR are those the index holds")}
		}
		if o.newIndex {
			return wo, usageError{errors.New("--new-index needs --index")}
		}
		return wo, nil
	}
	if o.out == "" || o.out == "-" {
		return wo, usageError{errors.New("--index needs -o FILE: the index records the archive's file name")}
	}
	if st, err := os.Stat(o.out); err == nil && !st.Mode().IsRegular() {
		return wo, usageError{fmt.Errorf("--index needs -o to name a file: %s is not one, and the index records the archive's file name", o.out)}
	}
	if o.lockWait < 0 {
		return wo, usageError{fmt.Errorf("--lock-timeout %v: want 0 or more", o.lockWait)}
	}
	// The index is locked and read before anything is written, --seq
	// given or not: an index that cannot be updated is found now, not
	// after the archive is complete, and no other writer can take the
	// same sequence number or lose this update.
	keys, err := quietKeys(o.keyPath)
	if err != nil {
		return wo, err
	}
	if st, err := os.Stat(filepath.Dir(o.index)); !store.IsURL(o.index) && (err != nil || !st.IsDir()) {
		return wo, &exitError{code: exitFailure, err: fmt.Errorf("--index %s: its directory does not exist", o.index)}
	}
	u, err := openIndexUpdate(o.index, keys, o.newIndex, o.lockWait)
	if err != nil {
		return wo, err
	}
	o.update = u
	next, err := u.NextSeq()
	if err != nil {
		return wo, &exitError{code: exitFailure, err: err}
	}
	if o.cmd == nil || !o.cmd.Flags().Changed("seq") {
		// Reserved in an object store (no lock holds it there).
		if wo.Sequence, err = u.ReserveSeq(); err != nil {
			return wo, &exitError{code: exitFailure, err: err}
		}
	} else if wo.Sequence < u.HighSeq() {
		return wo, &exitError{code: exitUsage, err: fmt.Errorf("--seq %d: the index %s has seen sequence %d; an archive below it would lose to older ones", wo.Sequence, o.index, u.HighSeq()),
			hint: fmt.Sprintf("leave --seq out to take %d", next)}
	}
	// A deletion of a path the index does not hold deletes nothing: most
	// likely a typo, said so that it is not silently a no-op.
	for _, p := range wo.Tombstones {
		if rec, ok, err := u.Lookup(p); err != nil {
			return wo, indexInputErr(o.index, err)
		} else if !ok {
			fmt.Fprintf(os.Stderr, "cbfs: --delete %s: not in the index %s: the tombstone deletes nothing\n", quote(p), o.index)
		} else if !rec.Live() {
			fmt.Fprintf(os.Stderr, "cbfs: --delete %s: already deleted in the index %s\n", quote(p), o.index)
		}
	}
	for _, d := range o.deleteTree {
		dir, err := index.CanonicalPath([]byte(d))
		if err != nil {
			return wo, usageError{fmt.Errorf("--delete-tree %s: %v", quote([]byte(d)), err)}
		}
		tree, err := u.LiveTree(dir)
		if err != nil {
			return wo, indexInputErr(o.index, err)
		}
		if len(tree) == 0 {
			fmt.Fprintf(os.Stderr, "cbfs: --delete-tree %s: the index %s holds no live path there\n", quote(dir), o.index)
		}
		wo.Tombstones = append(wo.Tombstones, tree...)
	}
	return wo, nil
}

// openIndexUpdate locks and reads the index, which may be sealed with any
// of keys (the update is sealed with the first), saying when it waits for
// another writer.
func openIndexUpdate(path string, keys []*crypt.Key, create bool, wait time.Duration) (*repo.IndexUpdate, error) {
	u, err := repo.OpenIndexUpdate(path, keys[0], repo.IndexOptions{Create: create, LockTimeout: wait, ReadKeys: keys[1:], Waiting: func(lock string) {
		fmt.Fprintf(os.Stderr, "cbfs: waiting for another cbfs updating %s (lock %s; --lock-timeout %v)\n", path, lock, wait)
	}})
	var ne *repo.NoIndexError
	var be *repo.LockBusyError
	switch {
	case errors.Is(err, repo.ErrNoConditionalWrites):
		return nil, &exitError{code: exitFailure, err: err,
			hint: "keep the index on a local file system (--index FILE), or use a store with conditional writes (AWS S3, MinIO, versitygw)"}
	case errors.As(err, &ne):
		return nil, &exitError{code: exitFailure, err: err,
			hint: fmt.Sprintf("rebuild a lost index from the archives with 'cbfs index rebuild -k KEY -o %s ARCHIVES...'; give --new-index to start a new one", path)}
	case errors.As(err, &be):
		return nil, &exitError{code: exitFailure, err: err, hint: "wait for it to finish, or give a longer --lock-timeout"}
	case err != nil:
		return nil, indexInputErr(path, err)
	}
	return u, nil
}

// unlock releases the index's lock, if held.
func (o *writeOptions) unlock() {
	if o.update != nil {
		o.update.Close()
		o.update = nil
	}
}

// quietKeys reads the keys as loadKeys does, without printing warnings
// about key files: the command prints them when it loads the keys itself.
func quietKeys(srcs []string) ([]*crypt.Key, error) {
	if len(srcs) == 0 {
		if env := os.Getenv("CBFS_KEY_FILE"); env != "" {
			srcs = []string{env}
		}
	}
	var out []*crypt.Key
	for _, src := range srcs {
		if _, ok := keys.KeyringName(src); ok {
			k, err := loadKeySource(src)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
			continue
		}
		k, _, err := keys.ReadFile(src)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return loadKeys(nil) // the usage error, with its hint
	}
	return out, nil
}

// updateIndex adds the archive just committed to --index, if given, and
// reports what the index says about it. Call it after commit.
func (o *writeOptions) updateIndex(key *crypt.Key) error {
	if o.index == "" {
		return nil
	}
	defer o.unlock()
	return o.addArchive(key, true)
}

// addArchive adds the archive o.out to the index held in o.update and
// reports what the index says about it. written says this command has
// just written the archive (pack, import), not been given it (index add).
func (o *writeOptions) addArchive(key *crypt.Key, written bool) error {
	res, err := o.update.AddArchiveFile(o.out)
	if err != nil && !written {
		// The archive's own fault (unreadable, another key, not an
		// archive) keeps its status; the index is unchanged.
		return &exitError{err: fmt.Errorf("not added to the index %s (unchanged): %w", o.index, err)}
	}
	if err != nil {
		code := exitFailure
		var ie *index.Error
		if errors.As(err, &ie) {
			code = exitDamaged // the index is damaged: say so as for reading it
		}
		return &exitError{code: code, err: fmt.Errorf("the archive %s is complete, but the index %s was not updated: %w", o.out, o.index, err),
			hint: "the old index is unchanged; once the cause is fixed, add the archive to it with: " + repairCommand(o, key)}
	}
	for _, e := range res.Excluded {
		fmt.Fprintf(os.Stderr, "cbfs: %s member %d: %s has a '..' component: kept out of the index\n", e.Archive, e.Member, quote(e.Path))
	}
	if res.Already {
		fmt.Fprintf(os.Stderr, "cbfs: %s is in the index %s already: left as it was\n", store.Base(o.out), o.index)
		return nil
	}
	verb := "added"
	if res.Created {
		verb = "created " + o.index + " and added"
	}
	fmt.Fprintf(os.Stderr, "cbfs: %s %s to the index %s\n", verb, store.Base(o.out), o.index)
	for _, c := range res.Copies {
		fmt.Fprintf(os.Stderr, "cbfs: warning: %s and %s are the same archive (id %x): counted once\n", c.Names[0], c.Names[1], c.ID)
	}
	if len(res.Conflicts) == 0 {
		return nil
	}
	for _, c := range res.Conflicts {
		var who []string
		for _, l := range c.Candidates {
			who = append(who, fmt.Sprintf("%s member %d", l.Archive.Name, l.Member))
		}
		fmt.Fprintf(os.Stderr, "cbfs: conflict: %s: sequence %d in %s\n", quote(c.Path), c.Candidates[0].Archive.Seq, strings.Join(who, " and "))
	}
	return &exitError{code: exitConflict, err: fmt.Errorf("%s with another archive of sequence %d; the index holds every candidate",
		plural(len(res.Conflicts), "path conflicts", "paths conflict"), res.Conflicts[0].Candidates[0].Archive.Seq),
		hint: "write the archive again with a higher --seq, or leave --seq to its default with --index"}
}

// repairCommand is the command that adds the archive just written to
// the index. It names the key file, never the key.
func repairCommand(o *writeOptions, key *crypt.Key) string {
	var ks []string
	for _, kp := range o.keyPath {
		ks = append(ks, "-k "+shellQuote(kp))
	}
	if len(ks) == 0 {
		ks = append(ks, "-k "+shellQuote(os.Getenv("CBFS_KEY_FILE")))
	}
	return fmt.Sprintf("cbfs index add %s %s %s", strings.Join(ks, " "), shellQuote(o.index), shellQuote(o.out))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newImportCmd() *cobra.Command {
	var o writeOptions
	var verbose bool
	c := &cobra.Command{
		Use:   "import -k KEY [-o OUT] [TAR|-]",
		Short: "Convert a plain tar into a CBFS archive, losslessly",
		Long: `import reads a plain tar (any format: gnu, oldgnu, pax, ustar, v7, star,
sparse, xattrs) and writes a CBFS archive. A tar compressed with gzip, bzip2,
xz or zstd is recognised by its first bytes, as tar -xf does, and
decompressed (said on standard error); the archive then holds the tar, and
export gives back the decompressed tar. Every byte of the input is kept:
'cbfs export' gives the same tar back, byte for byte. It streams: it works in
a pipe and its memory does not grow with the input.

--delete PATH (repeatable) and --delete-from FILE record deletions: one
tombstone member per path, written before the tar's entries (so an entry of
the tar with the same path supersedes it). Export leaves them out. FILE has
one path per line (LF or CRLF; empty lines skipped); "-" reads it from
standard input.

--index INDEX adds the archive to the master index once it is written (the
old index is kept on any failure). The index must exist: give --new-index to
create it on a first write; a lost index is rebuilt with 'cbfs index
rebuild', never restarted. The index is locked from before the archive is
written until it is updated, so concurrent writers wait for each other
(--lock-timeout); an index in an object store (s3://) is written
conditionally instead, and its default sequence number reserved (README).
The default --seq is one more than the highest sequence the index has
seen; a lower --seq is refused. --delete-tree DIR deletes DIR
and every live path below it in the index. Exit status 6: the archive and
index were written, but a path conflicts with another archive of the same
sequence number.`,
		Example: `  cbfs import -k fs1.key -o backup.cbfs backup.tar
  tar cf - dir | cbfs import -k fs1.key > dir.cbfs
  cbfs import -k fs1.key --index fs1.idx --delete old/file -o arch/0042.cbfs new.tar`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if o.deleteFrom == "-" && (len(args) == 0 || args[0] == "-") {
				return usageError{errors.New("--delete-from - and the tar cannot both be standard input")}
			}
			wo, err := o.writer()
			defer o.unlock()
			if err != nil {
				return err
			}
			key, err := loadKey(o.keyPath)
			if err != nil {
				return err
			}
			in, name, err := openInput(args)
			if err != nil {
				return inputErr(name, err)
			}
			defer in.Close()
			size := inputSize(in)
			p := startProgress("import "+name, size)
			if verbose {
				list := memberLister(!isStdout(o.out), p)
				wo.OnAdd = func(m *format.Meta) {
					if listed(m.Type) {
						list(m.Path)
					}
				}
			}
			tarIn, comp, head, err := tarconv.Decompress(p.reader(in))
			if err != nil {
				p.finish()
				return inputErr(name, err)
			}
			defer tarIn.Close()
			if comp != "" {
				p.say("cbfs: %s: %s-compressed: decompressing it\n", name, comp)
			}
			out, err := createOutput(c.Context(), o.out, o.force, true)
			if err != nil {
				p.finish()
				return err
			}
			st, err := tarconv.ImportTar(c.Context(), out, tarIn, key, wo)
			p.finish()
			if err != nil {
				out.abort()
				err = inputErr(name, err)
				if what := tarconv.LooksLike(head); what != "" && errors.Is(err, tarconv.ErrNotTar) {
					err = &exitError{code: exitBadInput, err: err, hint: fmt.Sprintf("it looks like %s; cbfs imports a tar, plain or compressed with gzip, bzip2, xz or zstd (bsdtar -cf out.tar @in converts most archives to tar)", what)}
				}
				return err
			}
			if err := out.commit(); err != nil {
				return err
			}
			if o.out != "" && o.out != "-" {
				fmt.Fprintf(os.Stderr, "cbfs: imported %s (%s) from %s into %s\n", plural(st.Entries, "entry", "entries"), plural(int(st.InputBytes), "byte", "bytes"), name, o.out)
			}
			return o.updateIndex(key)
		},
	}
	o.flags(c)
	verboseFlag(c, &verbose)
	return c
}

// listed says whether -v lists a member of this type: files, not
// deletions or the tar's own records.
func listed(t format.Type) bool {
	return t != format.TypeTombstone && t != format.TypeTrailer && t != format.TypeTarGlobal && t != format.TypeReplaces
}
