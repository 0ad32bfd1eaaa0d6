package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/repo"
	"github.com/cbfs/cbfs/tree"
	"github.com/spf13/cobra"
)

func init() {
	register(newExtractCmd)
}

func newExtractCmd() *cobra.Command {
	var keyPath []string
	var dest string
	var noSameOwner, numericOwner, overwrite, salvage, noDevices, noSetID, verbose bool
	var to treeOptions
	c := &cobra.Command{
		Use:   "extract -k KEY [-C DEST] ARCHIVE [PATH...] | extract -k KEY --index INDEX [-C DEST] ARCHIVES [PATH...]",
		Short: "Extract an archive's files into a directory, safely",
		Long: `extract writes the members of ARCHIVE under DEST (default: the current
directory; created if missing). With PATH arguments it extracts only those
members and what lies under them as directories, reading only their bytes:
it seeks through the archive's summary, so ARCHIVE must be a file.

It restores what 'cbfs pack' stores: types, modes with set-id and sticky
bits, nanosecond times (directories' last, deepest first), extended
attributes (user.* always; POSIX ACLs, capabilities, SELinux labels and
trusted.* as root only, and --no-setid leaves capabilities out), hard links, sparse files as sparse, and owners when run as root
(names mapped to local ids as tar does; --numeric-owner uses the archived
ids; --no-same-owner keeps the extracting user). Set-id bits are dropped when
the file does not get its archived owner. Members imported from a plain tar
extract the same way.

Run as root, extract does what GNU tar does as root: it restores owners,
keeps set-id bits on files that get their archived owner, and creates
device nodes. For an archive from a source you do not trust, add
--no-same-owner --no-setid --no-devices. Every attribute is set through a
descriptor of the very file extract created, never by a name that someone
who can write into DEST could swap for a link to another file; a node that
was swapped is reported and left alone.

Nothing is written outside DEST: a member with a '..' component, a member
whose path goes through a symlink (whether extracted or already there), and
a hard link whose target is outside DEST or through a symlink are not
extracted. An absolute member name goes below DEST with its leading '/'
removed, as GNU tar does. A file whose bytes fail authentication is
removed, and one that replaces an existing file is renamed over it only once
complete: a damaged member leaves nothing behind.
An existing file is not replaced without --overwrite; an existing directory
is used as it is. When a path occurs more than once, the last member wins.

` + treeUse + `

Every member not extracted is named on standard error, the rest is still
extracted, and the exit status tells the worst: 3 if a member was damaged,
else 1 if one was rejected or not extracted.

An archive whose footer or summary is damaged or missing (a copy cut short)
is refused with status 3. With --salvage, extract then scans the archive
for the members that are still intact, each authenticated whole, extracts
those, and exits with status 3: which members were lost cannot be known
without the summary.`,
		Example: `  cbfs extract -k fs1.key -C /restore backup.cbfs
  cbfs extract -k fs1.key backup.cbfs src/main.go docs
  cbfs extract -k fs1.key --salvage -C /restore cut-short.cbfs
  cbfs extract -k fs1.key --index fs1.index -C /restore archives/ srv/data`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			opt := tree.ExtractOptions{
				SameOwner:    os.Geteuid() == 0 && !noSameOwner,
				NumericOwner: numericOwner,
				Overwrite:    overwrite,
				NoDevices:    noDevices,
				NoSetID:      noSetID,
				OnMember: func(path string) {
					if verbose {
						fmt.Fprintln(stdout, quote([]byte(path)))
					}
				},
			}
			if to.index != "" {
				if salvage {
					return usageError{errors.New("--salvage reads one damaged archive; it does not go with --index")}
				}
				return runExtractTree(c, &to, keys, dest, opt, args)
			}
			name := displayName(args[0])
			f, err := openArchiveObject(c.Context(), args[0])
			if err != nil {
				return inputErr(name, err)
			}
			defer f.Close()
			size := f.Size()
			// Members are read in order, each in several small reads: a
			// block cache makes them a few large ones.
			pr := startProgress("extract "+name, size)
			defer pr.finish()
			src := format.CachedSource(format.NewSource(pr.readerAt(f), size))
			op, err := repo.OpenOrSalvage(src, salvage, keys...)
			if err != nil && salvage {
				return inputErr(name, err)
			}
			if err != nil {
				return damageHint(inputErr(name, err), "extract")
			}
			a, entries, salvaged := op.Archive, op.Entries, op.Salvaged
			noteKey(args[0], a.Header, keys)
			if salvaged {
				if len(op.Problems) == 0 {
					pr.say("cbfs: %s: %s\n", name, oneLine(op.OpenErr.Error()))
				}
				for _, p := range op.Problems {
					pr.say("cbfs: %s: %s\n", name, oneLine(p.Error()))
				}
				pr.say("cbfs: %s: salvaging %s found intact by a scan; members lost with the damage cannot be listed\n",
					name, plural(len(entries), "member", "members"))
			}
			opt.Paths, opt.Entries = args[1:], entries
			opt.Report = problemPrinter(pr)
			st, err := tree.Extract(c.Context(), a, dest, opt)
			var de *tree.DestError
			if errors.As(err, &de) {
				return &exitError{code: exitFailure, err: de, hint: "-C names the directory to extract into; it is created if missing"}
			}
			if err != nil {
				return inputErr(name, err)
			}
			return extractStatus(name, st, salvaged)
		},
	}
	keyFlag(c, &keyPath)
	c.Flags().StringVarP(&dest, "directory", "C", ".", "directory to extract into (created if missing)")
	c.Flags().BoolVar(&noSameOwner, "no-same-owner", false, "do not restore owners (the default when not root)")
	c.Flags().BoolVar(&numericOwner, "numeric-owner", false, "restore the archived uid and gid, not the ids of the archived names")
	c.Flags().BoolVar(&overwrite, "overwrite", false, "replace files that exist in DEST")
	c.Flags().BoolVar(&noDevices, "no-devices", false, "skip character and block device members (each named on standard error)")
	c.Flags().BoolVar(&noSetID, "no-setid", false, "clear set-user-id and set-group-id bits of the files extracted")
	verboseFlag(c, &verbose)
	c.Flags().BoolVar(&salvage, "salvage", false, "when the archive's footer or summary is damaged, extract the members a scan finds intact")
	to.flags(c)
	return c
}

// problemPrinter says each problem extract reports on standard error.
func problemPrinter(pr *progress) func(tree.Problem) {
	return func(p tree.Problem) {
		if p.Path == "" {
			pr.say("cbfs: %s\n", p.What)
			return
		}
		pr.say("cbfs: %s: %s\n", quote([]byte(p.Path)), p.What)
	}
}

// extractStatus is what extract ends with: nil, or the counts of what
// went wrong with the exit status they call for.
func extractStatus(name string, st tree.ExtractStats, salvaged bool) error {
	var parts []string
	if st.Damaged > 0 {
		parts = append(parts, plural(st.Damaged, "member damaged", "members damaged"))
	}
	if st.Rejected > 0 {
		parts = append(parts, plural(st.Rejected, "member rejected as unsafe", "members rejected as unsafe"))
	}
	if st.Failed > 0 {
		parts = append(parts, plural(st.Failed, "problem", "problems"))
	}
	if salvaged {
		parts = append([]string{"archive damaged, members salvaged by a scan"}, parts...)
	}
	if len(parts) == 0 {
		return nil
	}
	err := fmt.Errorf("%s: %s (named above); %s extracted", name, strings.Join(parts, ", "), plural(st.Members, "member", "members"))
	if st.Damaged > 0 || salvaged {
		return &exitError{code: exitDamaged, err: err}
	}
	return &exitError{code: exitFailure, err: err}
}
