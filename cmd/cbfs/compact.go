package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newCompactCmd) }

func newCompactCmd() *cobra.Command {
	var keyPath []string
	var indexPath, outDir, minDead, maxSize string
	var asJSON, remove, dryRun bool
	var lockWait time.Duration
	c := &cobra.Command{
		Use:   "compact -k KEY --index INDEX [--min-dead PCT] [--max-size SIZE] [-o OUTDIR] [--remove] [--dry-run] [--json] ARCHIVE|DIR...",
		Short: "Copy what the index still serves out of mostly dead archives, and retire them",
		Long: `compact picks the archives given whose dead share (the bytes the master index
no longer serves, as gc reports them) is at least --min-dead percent, copies the
members the index still serves out of them (current versions, and deletions
that still hide older versions) into new archives, and adds those to the
index. Members are copied as they are stored: metadata (imported tar headers
included) and content frames are re-sealed under the new archive's keys, never
decompressed or compressed again.

A new archive keeps its sources' sequence number (compaction takes no new
one, so an archive written later always wins over a copy) and records the
archives it replaces. From then on the index, and every rebuild, leaves those
out: they are retired, whether they are still there or not, and a rebuild with
or without them gives the same index byte for byte. compact lists them;
--remove deletes them once the index update is on disk.

The index is locked for the whole run. Killed at any point, the index and a
rebuild still serve the same content; running compact again finishes the job
(a new archive written but not yet in the index is added first). New archives
are named after their first source, with ".c" and 8 hex digits of their id.
Archives that hold a conflicted path are left alone until the conflict is
settled.`,
		Example: `  cbfs gc -k fs1.key --index fs1.index archives/
  cbfs compact -k fs1.key --index fs1.index --dry-run archives/
  cbfs compact -k fs1.key --index fs1.index --remove archives/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if indexPath == "" {
				return usageError{fmt.Errorf("compact needs --index INDEX")}
			}
			pct, err := strconv.ParseFloat(strings.TrimSuffix(minDead, "%"), 64)
			if err != nil || pct < 0 || pct > 100 {
				return usageError{fmt.Errorf("--min-dead %q: want a percentage from 0 to 100", minDead)}
			}
			var maxBytes int64
			if maxSize != "" {
				n, err := parseSize(maxSize)
				if maxBytes = int64(n); err != nil || maxBytes <= 0 {
					return usageError{fmt.Errorf("--max-size %q: want a size such as 512M or 4G", maxSize)}
				}
			}
			if lockWait < 0 {
				return usageError{fmt.Errorf("--lock-timeout %v: want 0 or more", lockWait)}
			}
			if store.IsURL(indexPath) || store.IsURL(outDir) {
				return usageError{fmt.Errorf("compact works on a local index and local archives")}
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
			if err != nil {
				return err
			}
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			if asJSON {
				return printJSON(w, res)
			}
			for _, s := range res.Skipped {
				fmt.Fprintf(os.Stderr, "cbfs: %s: skipped: %s\n", s.Archive, s.Skipped)
			}
			verb := "wrote"
			if dryRun {
				verb = "would write"
			}
			for _, o := range res.Outputs {
				what := verb
				if o.Archive == "" {
					o.Archive = "a new archive"
				}
				if o.Adopted {
					what = "added (left by an earlier run)"
				}
				fmt.Fprintf(w, "%s %s: sequence %d, %s, %d bytes, replacing %s\n", what, o.Archive, o.Seq,
					plural(o.Members, "member", "members"), o.Size, strings.Join(o.Replaces, ", "))
			}
			for _, r := range res.Retired {
				fmt.Fprintf(w, "retired %s\n", r)
			}
			for _, r := range res.Removed {
				fmt.Fprintf(w, "removed %s\n", r)
			}
			if dryRun {
				fmt.Fprintf(w, "would compact %s (at least %g%% dead), copying %d live bytes and reclaiming about %d bytes\n",
					plural(len(res.Picked), "archive", "archives"), pct, res.Copied, res.Reclaimed)
				return nil
			}
			fmt.Fprintf(w, "compacted %s: copied %d live bytes, reclaimed %d bytes", plural(len(res.Picked), "archive", "archives"), res.Copied, res.Reclaimed)
			if n := len(res.Retired) - len(res.Removed); n > 0 {
				fmt.Fprintf(w, " once the %s retired %s removed (--remove)", plural(n, "archive", "archives"), map[bool]string{true: "is", false: "are"}[n == 1])
			}
			fmt.Fprintln(w)
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
