package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cbfs/cbfs/repo"
	"github.com/spf13/cobra"
)

// indexRekeyRow is one archive of index rekey --json.
type indexRekeyRow struct {
	Archive string `json:"archive"`
	Where   string `json:"where"`
	Seq     uint64 `json:"seq"`
	OldID   string `json:"old_archive_id"`
	NewID   string `json:"new_archive_id,omitempty"`
	Error   string `json:"error,omitempty"`
}

func newIndexRekeyCmd() *cobra.Command {
	var o indexBuildOptions
	var newKey string
	c := &cobra.Command{
		Use:   "rekey -k OLD --new-key NEW -o OUT [--json] INDEX ARCHIVES",
		Short: "The index under a new key, over the archives 'cbfs rekey' wrote",
		Long: `rekey writes the master index INDEX (sealed with OLD) again under NEW, for the
archives 'cbfs rekey' wrote into ARCHIVES (the directory, or s3:// prefix, it
wrote them to). A rekeyed archive keeps its file name, sequence number,
members and offsets, and gets a new archive id; the index records ids, so
each archive of INDEX is looked up by its name in ARCHIVES and opened with
NEW by its footer alone (one small read at its end; no summary is read).
It must carry the sequence number and member count INDEX holds for that
name. Then the records are copied as they are and the table takes the new
ids: the result is byte for byte what 'cbfs index rebuild -k NEW' writes
over the rekeyed archives, without reading their summaries.

Every archive of INDEX must be found: one that is missing, still under the
old key, or not the rekeyed copy (another sequence number or member count)
is named and nothing is written. Archives in ARCHIVES that INDEX does not
hold are not added ('cbfs index add' adds them). -k may be given more than
once (the index opens with the one it is sealed with).

Exit status: 0 done; 1 an archive is missing or the index could not be
written; 4 an archive (or INDEX) is not under the keys given; 3 an archive
is not the rekeyed copy of the one the index holds; 5 INDEX is not an
index; 2 usage.`,
		Example: `  cbfs rekey -k fs1.key --new-key fs1-2027.key -o archives-2027/ archives/
  cbfs index rekey -k fs1.key --new-key fs1-2027.key -o fs1-2027.index fs1.index archives-2027/
  cbfs index rebuild -k fs1-2027.key -o rebuilt.index archives-2027/ && cmp fs1-2027.index rebuilt.index`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error { return runIndexRekey(&o, newKey, args[0], args[1]) },
	}
	o.flags(c)
	c.Flags().StringVar(&newKey, "new-key", "", "the new key: a key file or keyring:NAME")
	jobsFlag(c, &o.jobs)
	return c
}

func runIndexRekey(o *indexBuildOptions, newSrc, indexPath, dir string) error {
	if err := needOutput(o); err != nil {
		return err
	}
	if newSrc == "" {
		return usageError{errors.New("index rekey needs --new-key FILE (or keyring:NAME)")}
	}
	oldKeys, newKey, err := loadRekeyKeys(o.keyPath, newSrc)
	if err != nil {
		return err
	}
	ctx := o.cmd.Context()
	open, remote, err := archivesIn(ctx, dir)
	if err != nil {
		return err
	}
	start := time.Now()
	// Locked before the index is read: OUT may be INDEX itself.
	lock, err := lockOutput(o)
	if err != nil {
		return err
	}
	if lock != nil {
		defer lock.Unlock()
	}
	x, closeIndex, err := openIndex(indexPath, oldKeys...)
	if err != nil {
		return err
	}
	defer closeIndex()
	out, err := createIndexOutput(o, lock)
	if err != nil {
		return err
	}
	rows, c, err := repo.RekeyIndex(ctx, x, open, repo.IndexRekeyOptions{NewKey: newKey, OldKeys: oldKeys, Jobs: jobsFor(o.jobs, remote)}, out)
	if err != nil {
		out.abort()
	}
	report := make([]indexRekeyRow, len(rows))
	code := exitOK
	for i, r := range rows {
		report[i] = indexRekeyRow{Archive: r.Index.Name, Where: r.Where, Seq: r.Index.Seq, OldID: fmt.Sprintf("%x", r.Index.ID)}
		if r.Err != nil {
			report[i].Error = r.Err.Error()
			fmt.Fprintf(os.Stderr, "cbfs: %s (sequence %d in the index): %s\n", r.Index.Name, r.Index.Seq, oneLine(r.Err.Error()))
			st, _ := classify(r.Err)
			code = worse(code, st)
		} else {
			report[i].NewID = fmt.Sprintf("%x", r.NewID)
		}
	}
	if errors.Is(err, repo.ErrIncomplete) {
		if o.json {
			printJSON(stdout, struct {
				Index    string          `json:"index"`
				Written  bool            `json:"written"`
				Archives []indexRekeyRow `json:"archives"`
			}{o.out, false, report})
		}
		return &exitError{code: code, err: fmt.Errorf("no rekeyed copy found for some archives of %s (named above): %s was not written", indexPath, o.out),
			hint: "ARCHIVES is where 'cbfs rekey' wrote the new archives; rekey the ones missing there first"}
	}
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if err := out.commit(); err != nil {
		return indexWriteErr(o.out, err)
	}
	rep := indexReport{Index: o.out, Archives: len(c.Archives), Seconds: time.Since(start).Seconds(), written: true, Rekeyed: report}
	for _, a := range c.Archives {
		rep.Members += int64(a.Members)
	}
	rep.fill(c, c.Copies)
	if !o.json {
		fmt.Fprintf(os.Stderr, "cbfs: %s sealed with key %s: %s, each with the archive id of its rekeyed copy in %s\n",
			o.out, newKey.ID(), plural(len(rows), "archive", "archives"), dir)
	}
	noteOthers(ctx, dir, rows)
	return rep.finish(o.json)
}

// noteOthers names the archives in dir that the index does not hold: a
// rebuild over dir would take them (a new archive to add, or one a
// compaction retired, whose rekeyed copy no replaces list names).
func noteOthers(ctx context.Context, dir string, rows []repo.IndexRekeyArchive) {
	srcs, _, err := repo.ArchiveSourcesContext(ctx, []string{dir})
	if err != nil {
		return
	}
	held := map[string]bool{}
	for _, r := range rows {
		held[r.Index.Name] = true
	}
	var others []string
	for _, s := range srcs {
		if !held[s.Name] {
			others = append(others, s.Name)
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(os.Stderr, "cbfs: note: %s in %s not in the index, not in the new one either (a rebuild over %s would take them: 'cbfs index add' adds them; an archive a compaction retired is removed instead): %s\n",
			plural(len(others), "archive", "archives"), dir, dir, strings.Join(others, ", "))
	}
}
