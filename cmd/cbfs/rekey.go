package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newRekeyCmd) }

// rekeyJSON is one archive's line of rekey --json.
type rekeyJSON struct {
	Archive   string  `json:"archive"`
	Output    string  `json:"output,omitempty"`
	Status    string  `json:"status"` // rekeyed, failed
	Sequence  *uint64 `json:"sequence,omitempty"`
	OldID     string  `json:"old_archive_id,omitempty"`
	NewID     string  `json:"new_archive_id,omitempty"`
	OldKeyID  string  `json:"old_key_id,omitempty"`
	NewKeyID  string  `json:"new_key_id"`
	Members   uint64  `json:"members"`
	Size      int64   `json:"size"`
	Error     string  `json:"error,omitempty"`
	errStatus int
}

func newRekeyCmd() *cobra.Command {
	var oldKeys []string
	var newKey, outDir string
	var asJSON, force bool
	var jobs int
	c := &cobra.Command{
		Use:   "rekey -k OLD --new-key NEW -o OUTDIR [--json] ARCHIVE|DIR...",
		Short: "Write archives again under a new key, frame by frame",
		Long: `rekey writes each archive again, sealed under the new key, into OUTDIR under
the same file name: a new archive id, the same sequence number, the same
members, metadata and content bytes at the same offsets. Every frame is
opened with the old key and sealed again with the new one as it is: nothing
is decompressed or compressed again, so rekey costs about what a keyed
verify does.

The source is checked as it is read (every seal, the header and footer MACs,
the digest): a damaged archive is not rewritten. Each new archive is written
to a temporary file and verified with the new key as it is written (the tar
framing, every frame's checksum and seal, the digest, both MACs), and its
plaintext, read back frame by frame, must be the source's; only then is it
put in place. Plaintext is not decoded on either side: every rule about it
holds for the new archive exactly when it held for the source (spec 10.6),
and 'cbfs verify -k' of either checks those. The sources are never changed;
OUTDIR must not be a directory they are in. -k may be given more than once (each archive
is opened with the key it was written under).

Archives and OUTDIR may be in an object store: ARCHIVE s3://BUCKET/KEY,
DIR s3://BUCKET/PREFIX/ (every archive under it), OUTDIR s3://BUCKET/PREFIX/
(each new archive an object under it, named as its source). Each goes up as
a multipart upload, verified as its parts go up and completed only once it
verified: nothing is visible under its name before, and an error or a
signal aborts the upload. An existing object is replaced only with --force.

Rotating a file system's key: keygen NEW; rekey every archive; rebuild the
index with -k NEW over the new archives; 'verify -k NEW --index'; then
remove the old archives (README, "Rotating a key"). Until then, -k NEW -k OLD
reads the mixed set.

Exit status: 0 every archive rekeyed; 3 a source is damaged; 4 a source is
under none of the old keys; 1 a file could not be read or written; 5 not a
CBFS archive; 2 usage.`,
		Example: `  cbfs keygen -o fs1-2027.key
  cbfs rekey -k fs1.key --new-key fs1-2027.key -o archives-2027/ archives/
  cbfs index rebuild -k fs1-2027.key -o fs1-2027.index archives-2027/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runRekey(c.Context(), oldKeys, newKey, outDir, force, asJSON, jobs, args)
		},
	}
	keyFlag(c, &oldKeys)
	c.Flags().StringVar(&newKey, "new-key", "", "the new key: a key file or keyring:NAME")
	c.Flags().StringVarP(&outDir, "output", "o", "", "directory (or s3://BUCKET/PREFIX/) to write the new archives into (required; not the sources')")
	c.Flags().BoolVar(&force, "force", false, "replace files (or objects) of the same name in OUTDIR")
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, one object per archive")
	c.Flags().IntVarP(&jobs, "jobs", "j", runtime.GOMAXPROCS(0), "archives rewritten at once")
	return c
}

func runRekey(ctx context.Context, oldSrcs []string, newSrc, outDir string, force, asJSON bool, jobs int, args []string) error {
	if newSrc == "" {
		return usageError{errors.New("rekey needs --new-key FILE (or keyring:NAME)")}
	}
	if outDir == "" || outDir == "-" {
		return usageError{errors.New("rekey needs -o OUTDIR: the directory the new archives go to")}
	}
	oldKeys, newKey, err := loadRekeyKeys(oldSrcs, newSrc)
	if err != nil {
		return err
	}
	if store.IsURL(outDir) {
		if loc, err := store.ParseLocation(outDir); err != nil {
			return usageError{err}
		} else if !loc.IsPrefix() {
			return usageError{fmt.Errorf("-o %s: %w", outDir, repo.ErrOutNotPrefix)}
		}
	} else if st, err := os.Stat(outDir); err != nil || !st.IsDir() {
		return &exitError{code: exitFailure, err: fmt.Errorf("-o %s: not a directory", outDir), hint: "create it first: mkdir " + shellQuote(outDir)}
	}
	for _, a := range args {
		if a == "-" {
			return usageError{errors.New("rekey reads archive files: standard input has no file name to write under")}
		}
	}
	sources, _, err := archiveSources(ctx, args)
	if err != nil {
		return err
	}
	var total int64
	for _, s := range sources {
		total += s.Size
	}
	p := startProgress("rekey "+plural(len(sources), "archive", "archives"), total)
	found, err := repo.Rekey(ctx, sources, repo.RekeyOptions{OldKeys: oldKeys, NewKey: newKey, OutDir: outDir, Force: force, Jobs: jobs,
		Done: func(i int) {
			if p != nil {
				p.n.Add(sources[i].Size)
			}
		}})
	p.finish()
	if errors.Is(err, repo.ErrOutDirIsSource) {
		return &exitError{code: exitUsage, err: err, hint: "the sources are never changed: write the new archives elsewhere, check them, then replace the old ones"}
	}
	if err != nil {
		return err
	}
	rows := make([]rekeyJSON, 0, len(found))
	code, failed := exitOK, 0
	for _, r := range found {
		if isIndexObject(r.Err) {
			// Under a prefix, as in a DIR: skipped with a note.
			fmt.Fprintf(os.Stderr, "cbfs: note: %s\n", errors.Unwrap(r.Err))
			continue
		}
		row := rekeyJSON{Archive: r.Source.Location(), Output: r.Out, Status: "rekeyed", NewKeyID: r.NewKeyID, OldKeyID: r.OldKeyID,
			Members: r.Members, Size: r.Size}
		if r.Old != nil {
			seq := r.Old.Sequence
			row.Sequence = &seq
			row.OldID = fmt.Sprintf("%x", r.Old.ID)
		}
		if r.Err != nil {
			row.Status, row.Error, row.OldID, row.OldKeyID, row.Members, row.Size = "failed", errorText(r.Source.Location(), r.Err), "", "", 0, 0
			row.errStatus, _ = classify(r.Err)
			code = worse(code, row.errStatus)
			failed++
		} else {
			row.NewID = fmt.Sprintf("%x", r.New.ID)
		}
		rows = append(rows, row)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if asJSON {
		if err := printJSON(w, rows); err != nil {
			return err
		}
	} else {
		for _, r := range rows {
			if r.Error != "" {
				// The error names the archive already, for --json.
				fmt.Fprintf(w, "FAILED   %s: %s\n", r.Archive, strings.TrimPrefix(r.Error, r.Archive+": "))
				continue
			}
			fmt.Fprintf(w, "rekeyed  %s -> %s: sequence %d, %s, key %s -> %s, archive id %s -> %s, verified with the new key\n",
				r.Archive, r.Output, *r.Sequence, plural(int(r.Members), "member", "members"), r.OldKeyID, r.NewKeyID, r.OldID, r.NewID)
		}
	}
	if failed > 0 {
		w.Flush()
		return &exitError{code: code, err: fmt.Errorf("rekey: %d of %s not rekeyed (named above); nothing was written for them",
			failed, plural(len(rows), "archive", "archives"))}
	}
	return nil
}
