package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/store"
	"github.com/spf13/cobra"
)

func init() { register(newVerifyCmd) }

// verifyResult is one archive's verdict, as --json prints it.
type verifyResult struct {
	Archive  string  `json:"archive"`
	Status   string  `json:"status"` // ok, damaged, wrong-key, unreadable
	Keyed    bool    `json:"keyed"`
	Members  int     `json:"members"`
	Damaged  int     `json:"damaged_members"`
	Sequence *uint64 `json:"sequence"`
	// SequenceAuthenticated is false without the key: the header's MAC
	// cannot be checked, so the sequence is what the bytes say, not a fact.
	SequenceAuthenticated bool `json:"sequence_authenticated"`
	// Verdict says in words what the status proves.
	Verdict  string          `json:"verdict"`
	Error    string          `json:"error"`
	Problems []verifyProblem `json:"problems"`
	// IsIndex: the file is a master index, checked as one; Note says
	// what it holds.
	IsIndex bool   `json:"is_index,omitempty"`
	Note    string `json:"note,omitempty"`
	// KeyID is the id of the key the archive was opened with.
	KeyID  string `json:"key_id,omitempty"`
	keys   int    // how many keys were given
	code   int
	id     [crypt.IDSize]byte
	seq    uint64
	intact map[uint32]repo.IntactMember
	paths  map[string]bool
}

type verifyProblem struct {
	Class  string `json:"class"`
	Offset int64  `json:"offset"`
	Member *int64 `json:"member"`
	Path   string `json:"path"`
	What   string `json:"what"`
}

type verifyOptions struct {
	keyPath []string
	index   string
	json    bool
	jobs    int
}

func newVerifyCmd() *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify [-k KEY] [--json] ARCHIVE|DIR...",
		Short: "Check archives for damage and tampering, with or without the key",
		Long: `verify reads every byte of each archive and reports every problem it finds,
not just the first: the member (by path with the key, by number without),
the byte offset, and what failed.

Without the key it checks the tar framing, that every outer header is
canonical and every padding zero, each frame's CRC-32C, the layout against
the footer, and the footer's SHA-256 digest of every frame's header, CRC and
tag: any accidental change or truncation is found (a frame's ciphertext
through its CRC-32C, which misses damage beyond 32-bit bursts with
probability 2^-32), and a keyless "ok" says no more than that ("no
accidental damage found"): anyone can recompute checksums and a digest, so
a deliberate change is not detectable without the key, and header fields
such as the sequence number are marked unauthenticated in --json. With the key it also opens every seal (metadata,
content, summary), checks the key check value, the header and footer MACs,
the order and end of every stream, and the summary against the members: any
change at all is found.

A DIR stands for the regular files directly in it (names not starting with
'.'). Archives are checked in parallel.

With --index (and the key), it also checks that every live entry of the master
index points at an intact member of the archives given, at the offset the
index says, and lists the entries that point nowhere.

Exit status, the first that applies: 3 damage found; 4 wrong key; 1 a file
could not be read; 5 a file is not a CBFS archive (or of a newer version);
0 all intact; 2 usage.`,
		Example: `  cbfs verify archives/
  cbfs verify -k fs1.key --json archives/ > report.json
  cbfs verify -k fs1.key --index fs1.index archives/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runVerify(c.Context(), &o, args) },
	}
	c.Flags().StringArrayVarP(&o.keyPath, "key", "k", nil, keyFlagHelp+"; without a key only keyless checks run")
	c.Flags().BoolVar(&o.json, "json", false, "print one JSON document with an \"archives\" array")
	c.Flags().StringVar(&o.index, "index", "", "also check the master index INDEX against the archives (needs the key)")
	jobsFlag(c, &o.jobs)
	return c
}

func runVerify(ctx context.Context, o *verifyOptions, args []string) error {
	var keys []*crypt.Key
	if keysGiven(o.keyPath) {
		var err error
		if keys, err = loadKeys(o.keyPath); err != nil {
			return err
		}
	}
	if o.index != "" && keys == nil {
		return usageError{errors.New("--index needs the key: give -k FILE or set CBFS_KEY_FILE")}
	}
	sources, remote, err := archiveSources(ctx, args)
	if err != nil {
		return err
	}
	var x *index.Index
	if o.index != "" {
		if x, err = repo.ReadIndexFile(o.index, keys...); err != nil {
			return inputErr(o.index, err)
		}
	}
	sizes := make([]int64, len(sources))
	var total int64
	for i, s := range sources {
		sizes[i] = s.Size
		total += s.Size
	}
	p := startProgress("verify "+plural(len(sources), "archive", "archives"), total)
	found, err := repo.Verify(ctx, sources, repo.VerifyOptions{Keys: keys, Jobs: jobsFor(o.jobs, remote), Members: x != nil, Paths: x != nil,
		Done: func(i int) {
			if p != nil {
				p.n.Add(sizes[i])
			}
		}})
	p.finish()
	if err != nil {
		return err
	}
	results := make([]verifyResult, 0, len(found))
	for i := range found {
		if isIndexObject(found[i].Err) {
			// Under a prefix, as in a DIR: skipped with a note.
			fmt.Fprintln(os.Stderr, indexObjectNote(found[i].Err))
			continue
		}
		r := fromRepo(&found[i])
		if found[i].Keyed && found[i].Status != repo.StatusWrongKey && !found[i].IsIndex {
			r.KeyID = keyIDOf(found[i].Header, keys)
		}
		r.keys = len(keys)
		results = append(results, r)
	}

	var check repo.IndexCheck
	if x != nil {
		given := map[string]*repo.GivenArchive{}
		for _, r := range results {
			if r.IsIndex {
				continue
			}
			// intact is nil when not even the header could be read.
			given[filepath.Base(r.Archive)] = &repo.GivenArchive{ID: r.id, Seq: r.seq, Intact: r.intact, Paths: r.paths}
		}
		check = repo.CheckIndex(x, given)
		for i, p := range check.Problems {
			if g := given[p.Archive]; g != nil && g.Intact == nil {
				check.Problems[i].What = "its archive could not be read (see above)"
			}
		}
	}
	indexProblems := check.Problems

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if o.json {
		doc := struct {
			Archives []verifyResult `json:"archives"`
			Index    *struct {
				Path string `json:"path"`
				repo.IndexCheck
			} `json:"index,omitempty"`
			Requests *store.RequestStats `json:"requests,omitempty"`
		}{Archives: results}
		if remote || anyURL(o.index) {
			r := store.Requests()
			doc.Requests = &r
		}
		if x != nil {
			doc.Index = &struct {
				Path string `json:"path"`
				repo.IndexCheck
			}{o.index, check}
		}
		if err := printJSON(w, doc); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			printVerify(w, &r)
		}
		if x != nil {
			notChecked := ""
			if check.NotChecked > 0 {
				notChecked = fmt.Sprintf(" (%d not checked: their archives were not given)", check.NotChecked)
			}
			if len(indexProblems) == 0 {
				fmt.Fprintf(w, "ok       %s: every entry checked points at an intact member%s\n", o.index, notChecked)
			} else {
				fmt.Fprintf(w, "DAMAGED  %s: %s nowhere%s\n", o.index, plural(len(indexProblems), "entry points", "entries point"), notChecked)
				for _, p := range indexProblems {
					fmt.Fprintf(w, "  %q -> %s member %d: %s\n", p.Path, p.Archive, p.Member, p.What)
				}
			}
			for _, n := range check.Retired {
				fmt.Fprintf(w, "  %s: retired: a compacted archive replaces it (it may be removed)\n", n)
			}
			for _, n := range check.Unknown {
				fmt.Fprintf(w, "  %s: not in the index: stale or rolled-back index? (or written without --index)\n", n)
			}
		}
	}
	code := exitOK
	for _, r := range results {
		code = worse(code, r.code)
	}
	if len(indexProblems) > 0 {
		code = worse(code, exitDamaged)
	}
	if code != exitOK {
		w.Flush()
		return &exitError{code: code, err: fmt.Errorf("%s", verifySummary(results))}
	}
	return nil
}

// worse orders exit statuses by what an operator must act on first.
func worse(a, b int) int {
	rank := map[int]int{exitOK: 0, exitBadInput: 1, exitFailure: 2, exitUsage: 2, exitWrongKey: 3, exitDamaged: 4}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func verifySummary(rs []verifyResult) string {
	counts := map[string]int{}
	for _, r := range rs {
		counts[r.Status]++
	}
	return fmt.Sprintf("verify: %s: %d ok, %d damaged, %d wrong key, %d unreadable",
		plural(len(rs), "archive", "archives"), counts["ok"], counts["damaged"], counts["wrong-key"], counts["unreadable"])
}

// fromRepo is what verify prints of one object's result, with the exit
// status it calls for.
func fromRepo(f *repo.VerifyResult) verifyResult {
	r := verifyResult{Archive: f.Source.Location(), Status: string(f.Status), Keyed: f.Keyed,
		Members: f.Members, Damaged: f.Damaged, Problems: []verifyProblem{}, IsIndex: f.IsIndex,
		intact: f.Intact, paths: f.Paths}
	if h := f.Header; h != nil {
		r.id, r.seq = h.ID, h.Sequence
		seq := h.Sequence
		r.Sequence = &seq
		r.SequenceAuthenticated = f.HeaderAuthenticated
	}
	for _, p := range f.Problems {
		vp := verifyProblem{Class: string(p.Class), Offset: p.Offset, Path: p.Path, What: p.What}
		if p.Err != nil {
			vp.What += ": " + p.Err.Error()
		}
		if p.Member >= 0 {
			m := p.Member
			vp.Member = &m
		}
		r.Problems = append(r.Problems, vp)
	}
	if f.Err != nil {
		r.Error = errorText(f.Source.Location(), f.Err)
		r.code, _ = classify(f.Err)
	} else if f.Status == repo.StatusDamaged {
		r.code = exitDamaged
	}
	if f.IsIndex {
		r.Note = indexNote(f)
		if f.Status == repo.StatusDamaged {
			r.Error = "a master index: " + r.Error
		}
	}
	r.Verdict = verdict(r.Status, f.Keyed)
	return r
}

// errorText is an error's message without the name of the object it is
// about, which the report line gives already.
func errorText(name string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if errors.Is(err, store.ErrNotRegular) {
		return store.ErrNotRegular.Error() + ": an archive is read by seeking through it"
	}
	return err.Error()
}

// indexNote says what a master index given to verify holds.
func indexNote(f *repo.VerifyResult) string {
	if f.Status != repo.StatusOK || f.Index == nil {
		return "a master index, not an archive"
	}
	if x := f.Index.Index; x != nil {
		st := x.Stats()
		return fmt.Sprintf("a master index, not an archive: %s, %s, %s, %s, highest sequence %d",
			plural(len(x.Archives), "archive", "archives"), plural(st.Live, "live path", "live paths"),
			plural(st.Tombstones, "tombstone", "tombstones"), plural(st.Conflicts, "conflict", "conflicts"), x.HighSeq)
	}
	return fmt.Sprintf("a master index, not an archive: %s intact (its content needs the key)", plural(f.Index.Frames, "frame", "frames"))
}

// Without the key, verify checks checksums and a digest anyone can
// recompute: it finds accidents, not a forger.
const keylessOK = "no accidental damage found (without the key a deliberate change is not detectable)"

func verdict(status string, keyed bool) string {
	switch {
	case status == "ok" && keyed:
		return "intact and authentic: every byte checked with the key"
	case status == "ok":
		return keylessOK
	case status == "damaged":
		return "damaged"
	case status == "wrong-key":
		return "not opened: the key does not match"
	}
	return "not checked: unreadable"
}

func printVerify(w *bufio.Writer, r *verifyResult) {
	mode := "keyless"
	if r.Keyed {
		mode = "keyed"
	}
	switch {
	case r.IsIndex && r.Status == "ok" && r.Keyed:
		fmt.Fprintf(w, "ok       %s: %s (keyed)\n", r.Archive, r.Note)
		return
	case r.IsIndex && r.Status == "ok":
		// An index's header fields and trailer are covered by its seals
		// only, not by a checksum: say what was checked.
		fmt.Fprintf(w, "ok       %s: %s; no accidental damage found in its frames (its header's key check and its trailer are checked with the key)\n", r.Archive, r.Note)
		return
	case r.IsIndex && r.Status == "damaged":
		fmt.Fprintf(w, "DAMAGED  %s: %s (%s)\n", r.Archive, r.Error, mode)
		return
	}
	switch r.Status {
	case "ok":
		if r.Keyed {
			fmt.Fprintf(w, "ok       %s: %s intact and authentic (keyed%s)\n", r.Archive, plural(r.Members, "member", "members"), keyNote(r))
		} else {
			fmt.Fprintf(w, "ok       %s: %s, %s\n", r.Archive, plural(r.Members, "member", "members"), keylessOK)
		}
		return
	case "damaged":
		fmt.Fprintf(w, "DAMAGED  %s: %s, %s intact, %d damaged (%s)\n", r.Archive, plural(len(r.Problems)+btoi(r.Error != ""), "problem", "problems"), plural(r.Members, "member", "members"), r.Damaged, mode)
	default:
		fmt.Fprintf(w, "%-8s %s: %s\n", map[string]string{"wrong-key": "WRONGKEY", "unreadable": "UNREAD"}[r.Status], r.Archive, r.Error)
		return
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  %s\n", r.Error)
	}
	for _, p := range r.Problems {
		where := p.Class
		if p.Member != nil {
			where = fmt.Sprintf("member %d", *p.Member)
			if p.Path != "" {
				where += fmt.Sprintf(" (%q)", p.Path)
			}
		}
		if p.Offset >= 0 {
			where += fmt.Sprintf(" at offset %d", p.Offset)
		}
		fmt.Fprintf(w, "  %s: %s\n", where, p.What)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// keyNote names the key an archive was opened with, when several were
// given.
func keyNote(r *verifyResult) string {
	if r.keys < 2 || r.KeyID == "" {
		return ""
	}
	return ", key " + r.KeyID
}
