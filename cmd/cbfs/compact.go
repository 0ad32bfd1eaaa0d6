package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newCompactCmd) }

var percent = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]+(\.[0-9]+)?%?$`) })

func newCompactCmd() *cobra.Command {
	var keyPath []string
	var indexPath, outDir, minDead, maxSize string
	var asJSON, remove, dryRun bool
	var lockWait time.Duration
	c := &cobra.Command{
		Use:   "compact -k KEY --index INDEX [--min-dead PCT] [--max-size SIZE] [-o OUTDIR] [--remove] [--dry-run] [--json] ARCHIVE|DIR...",
		Short: "Copy what the index still serves out of mostly dead archives, and retire them",
		Long: `compact picks the archives given whose dead share (the bytes of members the
master index no longer serves, of all their members' bytes) is at least
--min-dead percent (an archive with nothing dead is never rewritten), copies
the members the index still serves out of them (current versions, deletions,
and the file a served hard link points at) into new archives, verifies each
with the key, and adds them to the index in one update. Members are copied as
they are stored: metadata (imported tar headers included) and content frames
are re-sealed under the new archive's keys, never decompressed or compressed
again.

A new archive keeps its sources' sequence number (compaction takes no new
one, so an archive written later always wins over a copy) and records the
archives it replaces. From then on the index, and every rebuild, leaves those
out: they are retired, whether they are still there or not, and a rebuild with
or without them gives the same index byte for byte. compact lists them;
--remove deletes each once the index update is on disk and only while an
archive that replaces it is among those given and verifies.

The index is locked for the whole run. Killed at any point, the index and a
rebuild still serve the same content; running compact again finishes the job
(new archives written but not yet in the index, named in a journal beside the
index, are added first; temporary files left are removed). New archives are
named after their first source, with ".c" and 8 hex digits of their id, beside
it unless -o says where; keep them with the others, since export --index and
extract --index read one directory. Archives that hold a conflicted path are
left alone until the conflict is settled; archives that cannot be read are
named, the others compacted, and the status is the worst problem's.`,
		Example: `  cbfs gc -k fs1.key --index fs1.index archives/
  cbfs compact -k fs1.key --index fs1.index --dry-run archives/
  cbfs compact -k fs1.key --index fs1.index --remove archives/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if indexPath == "" {
				return usageError{fmt.Errorf("compact needs --index INDEX")}
			}
			pct, err := strconv.ParseFloat(strings.TrimSuffix(minDead, "%"), 64)
			if !percent().MatchString(minDead) || err != nil || pct < 0 || pct > 100 {
				return usageError{fmt.Errorf("--min-dead %q: want a percentage from 0 to 100", minDead)}
			}
			var maxBytes int64
			if maxSize != "" {
				var err error
				if maxBytes, err = store.ParseSize(maxSize); err != nil {
					return usageError{fmt.Errorf("--max-size %q: want a size such as 512M or 4G", maxSize)}
				}
			}
			if lockWait < 0 {
				return usageError{fmt.Errorf("--lock-timeout %v: want 0 or more", lockWait)}
			}
			if store.IsURL(indexPath) || store.IsURL(outDir) {
				return usageError{fmt.Errorf("compact works on a local index and local archives")}
			}
			for _, a := range args {
				if store.IsURL(a) {
					return usageError{fmt.Errorf("%s: compact works on local archives", a)}
				}
			}
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			u, err := openIndexUpdate(indexPath, keys, false, lockWait)
			if err != nil {
				return err
			}
			defer u.Close()
			res, err := repo.Compact(c.Context(), u, args, repo.CompactOptions{
				Keys: keys, MinDead: pct / 100, MaxSize: maxBytes, OutDir: outDir, Remove: remove, DryRun: dryRun})
			if res == nil {
				return compactErr(err)
			}
			// What was done is said also when something failed.
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			if asJSON {
				if perr := printJSON(w, res); perr != nil {
					return perr
				}
			} else {
				printCompact(w, res, dryRun, remove, pct)
			}
			if err != nil {
				return compactErr(err)
			}
			if len(res.Errs) > 0 {
				code := exitOK
				for _, e := range res.Errs {
					if !asJSON {
						fmt.Fprintf(os.Stderr, "cbfs: %s\n", oneLine(e.Error()))
					}
					k, _ := classify(e)
					code = worse(code, k)
				}
				return &exitError{code: code, err: fmt.Errorf("compact: %s not read or not compacted (named above); the rest was done", plural(len(res.Errs), "archive", "archives"))}
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().StringVar(&indexPath, "index", "", "master index file (locked and updated)")
	c.Flags().StringVar(&minDead, "min-dead", "50", "compact archives whose dead share is at least this percentage")
	c.Flags().StringVar(&maxSize, "max-size", "", "largest new archive (live bytes; a source is never split); default the largest source's size")
	c.Flags().StringVarP(&outDir, "output-dir", "o", "", "directory for the new archives (default: their first source's)")
	c.Flags().BoolVar(&remove, "remove", false, "delete the retired archives once the index is updated")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be done, change nothing")
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON object: picked, skipped, outputs, retired, removed, reclaimed_bytes, copied_bytes")
	c.Flags().DurationVar(&lockWait, "lock-timeout", repo.DefaultLockTimeout, "how long to wait for another writer of the index (0: fail at once)")
	return c
}

// compactErr adds a hint where the new archives could not be written.
func compactErr(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return &exitError{code: exitFailure, err: err, hint: "the new archives go beside their sources: give -o DIR for another directory"}
	}
	return err
}

func printCompact(w io.Writer, res *repo.CompactResult, dryRun, remove bool, pct float64) {
	for _, s := range res.Skipped {
		fmt.Fprintf(os.Stderr, "cbfs: %s: skipped: %s\n", s.Archive, s.Skipped)
	}
	would := func(done, dry string) string {
		if dryRun {
			return dry
		}
		return done
	}
	for _, o := range res.Outputs {
		name := o.Archive
		if name == "" {
			name = "a new archive"
		}
		what := would("wrote", "would write")
		if o.Adopted {
			what = would("added (written by a run that was stopped)", "would add (written by a run that was stopped)")
		}
		fmt.Fprintf(w, "%s %s: sequence %d, %s, %d bytes, replacing %s\n", what, name, o.Seq,
			plural(o.Members, "member", "members"), o.Size, strings.Join(o.Replaces, ", "))
	}
	for _, r := range res.Retired {
		if slices.Contains(res.Removed, r) {
			fmt.Fprintf(w, "removed %s (retired)\n", r)
		} else if dryRun && remove && !slices.ContainsFunc(res.Kept, func(k repo.CompactSource) bool { return k.Archive == r }) {
			fmt.Fprintf(w, "would remove %s (retired)\n", r)
		} else {
			fmt.Fprintf(w, "retired %s\n", r)
		}
	}
	for _, k := range res.Kept {
		fmt.Fprintf(w, "kept %s: %s\n", k.Archive, strings.TrimPrefix(k.Skipped, "kept: "))
	}
	fmt.Fprintf(w, "%s %s (at least %g%% dead): %d bytes copied; %d bytes freed once the archives retired are removed",
		would("compacted", "would compact"), plural(len(res.Picked), "archive", "archives"), pct, res.Copied, res.RetiredBytes)
	if len(res.Removed) > 0 {
		fmt.Fprintf(w, "; %d bytes freed by removing %s", res.RemovedBytes, plural(len(res.Removed), "archive", "archives"))
	} else if n := len(res.Retired) - len(res.Kept); n > 0 && !remove {
		fmt.Fprintf(w, "; %s retired (--remove removes %s)", plural(n, "archive is", "archives are"), map[bool]string{true: "it", false: "them"}[n == 1])
	}
	fmt.Fprintln(w)
}
