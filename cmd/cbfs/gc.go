package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newGCCmd) }

func newGCCmd() *cobra.Command {
	var keyPath []string
	var indexPath string
	var asJSON bool
	var jobs int
	c := &cobra.Command{
		Use:   "gc -k KEY --index INDEX [--json] ARCHIVE|DIR...",
		Short: "Report each archive's live and dead data against the master index",
		Long: `gc reads each archive's summary (not its data) and counts, per archive, its
members, the live ones (those the master index holds for their paths: current
versions, and deletions that still hide older versions) with their bytes, and
the dead bytes (members superseded by a later member or archive, or deleted).
Archives with mostly dead bytes are the ones worth compacting. Members that
hold no file system path (an imported tar's trailer, pax globals) count as
live. An archive the index does not list (renamed since, or written without
--index) counts as all live, since it may hold the only copy of a path, and
is named on standard error. It changes nothing.`,
		Example: `  cbfs gc -k fs1.key --index fs1.index archives/
  cbfs gc -k fs1.key --index fs1.index --json archives/ | jq 'sort_by(-.dead_bytes)[0]'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if indexPath == "" {
				return usageError{fmt.Errorf("gc needs --index INDEX")}
			}
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			x, err := repo.ReadIndexFile(indexPath, keys...)
			if err != nil {
				return inputErr(indexPath, err)
			}
			sources, remote, err := archiveSources(c.Context(), args)
			if err != nil {
				return err
			}
			// Each archive's object is kept to say how many requests it
			// took.
			objs := make([]store.Object, len(sources))
			for i := range sources {
				open := sources[i].Open
				sources[i].Open = func() (store.Object, error) {
					o, err := open()
					objs[i] = o
					return o, err
				}
			}
			found, err := repo.GC(c.Context(), x, sources, keys, jobsFor(jobs, remote))
			if err != nil {
				return err
			}
			// An archive that cannot be read is named, and left out of
			// the report on the others; the status tells the worst.
			code, failed := exitOK, 0
			good := []repo.ArchiveUsage{}
			js := []gcJSON{}
			for i, r := range found {
				if isIndexObject(r.Err) {
					fmt.Fprintln(os.Stderr, indexObjectNote(r.Err))
					continue
				}
				if r.Err != nil {
					fmt.Fprintf(os.Stderr, "cbfs: %s\n", oneLine(r.Err.Error()))
					c, _ := classify(r.Err)
					code = worse(code, c)
					failed++
					// In --json too, as verify lists what it could not read.
					where := sources[i].Location()
					js = append(js, gcJSON{ArchiveUsage: repo.ArchiveUsage{Archive: where}, Error: strings.TrimPrefix(oneLine(r.Err.Error()), where+": ")})
					continue
				}
				good = append(good, r.Usage)
				j := gcJSON{ArchiveUsage: r.Usage}
				if t := r.Usage.LiveBytes + r.Usage.DeadBytes; r.Usage.InIndex && t > 0 && 2*r.Usage.DeadBytes >= t {
					j.Compactable = true
				}
				if objs[i] != nil {
					j.Requests = store.RequestsOf(objs[i])
				}
				js = append(js, j)
				if !r.Usage.InIndex && !r.Usage.Retired {
					fmt.Fprintf(os.Stderr, "cbfs: %s: not in the index (renamed, or written without --index): counted as all live\n", r.Usage.Archive)
				}
			}
			var status error
			if failed > 0 {
				status = &exitError{code: code, err: fmt.Errorf("gc: %s not read (named above)", plural(failed, "archive", "archives"))}
			}
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			if asJSON {
				if err := printJSON(w, js); err != nil {
					return err
				}
				return status
			}
			fmt.Fprintf(w, "%-40s %8s %8s %14s %14s %6s\n", "ARCHIVE", "MEMBERS", "LIVE", "LIVE BYTES", "DEAD BYTES", "DEAD%")
			var compactN, retiredN int
			var compactBytes, retiredBytes int64
			for _, u := range good {
				pct := 0.0
				if t := u.LiveBytes + u.DeadBytes; t > 0 {
					pct = 100 * float64(u.DeadBytes) / float64(t)
				}
				note := ""
				switch {
				case u.Retired:
					note = "  (retired: replaced by a compacted archive; may be removed)"
					retiredN++
					retiredBytes += u.DeadBytes
				case !u.InIndex:
					note = "  (not in the index)"
				case pct >= 50:
					compactN++
					compactBytes += u.DeadBytes
				}
				fmt.Fprintf(w, "%-40s %8d %8d %14d %14d %5.1f%%%s\n", u.Archive, u.Members, u.LiveMembers, u.LiveBytes, u.DeadBytes, pct, note)
			}
			fmt.Fprintf(w, "compact (at least 50%% dead) would reclaim %d bytes from %s\n", compactBytes, plural(compactN, "archive", "archives"))
			if retiredN > 0 {
				fmt.Fprintf(w, "%s retired by compaction (%d bytes): compact --remove removes %s\n", plural(retiredN, "archive is", "archives are"), retiredBytes, map[bool]string{true: "it", false: "them"}[retiredN == 1])
			}
			return status
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().StringVar(&indexPath, "index", "", "master index file")
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of objects: archive, members, live_members, live_bytes, dead_bytes, in_index, retired, compactable\n(and requests: the GET requests an archive in an object store took)")
	jobsFlag(c, &jobs)
	return c
}

// gcJSON is one archive's line of --json: its usage, and the GET requests
// reading it from an object store took (omitted for a local file).
type gcJSON struct {
	repo.ArchiveUsage
	// Compactable: compact with its default --min-dead (50%) would
	// pick it.
	Compactable bool  `json:"compactable"`
	Requests    int64 `json:"requests,omitempty"`
	// Error: the archive could not be read (the counts are zero).
	Error string `json:"error,omitempty"`
}
