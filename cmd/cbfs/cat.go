package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tarconv"
	"github.com/spf13/cobra"
)

func init() {
	register(newCatCmd)
}

func newCatCmd() *cobra.Command {
	var keyPath []string
	c := &cobra.Command{
		Use:   "cat -k KEY ARCHIVE PATH...",
		Short: "Write members' content to standard output",
		Long: `cat finds each PATH in the archive's summary and reads just that member's
bytes: it seeks, it does not scan the archive. When a path occurs more than
once (an archive appended to), the last one wins, as on extraction. Paths
match in their canonical form, as the master index keys them: "a", "./a",
"/a" and "a/" name the same member.

A PATH that is not a file in the archive is named on standard error, the
other paths are still written, and the exit status is 1.`,
		Example: `  cbfs cat -k fs1.key backup.cbfs etc/hosts
  cbfs cat -k fs1.key backup.cbfs a.txt b.txt > both.txt`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			keys, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			a, entries, f, err := openSummary(c.Context(), args[0], keys)
			if err != nil {
				return err
			}
			defer f.Close()
			w := bufio.NewWriterSize(stdout, 1<<20)
			defer w.Flush()
			missing := 0
			for _, p := range args[1:] {
				e, err := tarconv.Lookup(entries, []byte(p))
				if err == nil && e.Meta.Type != format.TypeRegular {
					err = fmt.Errorf("%q is a %s, not a file", p, e.Meta.Type)
				}
				if err != nil {
					// Named in order with what was written before it, and
					// the other paths are still written.
					w.Flush()
					fmt.Fprintf(os.Stderr, "cbfs: %s: %s\n", args[0], err)
					missing++
					continue
				}
				if err := tarconv.WriteContent(a, e, w); err != nil {
					return inputErr(args[0], err)
				}
			}
			if missing > 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("%s: %d of %s not written (named above)", args[0], missing,
					plural(len(args)-1, "path", "paths"))}
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	return c
}
