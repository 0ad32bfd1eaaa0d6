package main

import (
	"bufio"
	"os"

	"github.com/cbfs/cbfs/convert"
	"github.com/spf13/cobra"
)

func init() {
	register(newCatCmd)
}

func newCatCmd() *cobra.Command {
	var keyPath string
	c := &cobra.Command{
		Use:   "cat -k KEY ARCHIVE PATH...",
		Short: "Write members' content to standard output",
		Long: `cat finds each PATH in the archive's summary and reads just that member's
bytes: it seeks, it does not scan the archive. When a path occurs more than
once (an archive appended to), the last one wins, as on extraction.`,
		Example: `  cbfs cat -k fs1.key backup.cbfs etc/hosts
  cbfs cat -k fs1.key backup.cbfs a.txt b.txt > both.txt`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			key, err := loadKey(keyPath)
			if err != nil {
				return err
			}
			a, entries, f, err := openSummary(args[0], key)
			if err != nil {
				return err
			}
			defer f.Close()
			w := bufio.NewWriterSize(os.Stdout, 1<<20)
			defer w.Flush()
			for _, p := range args[1:] {
				e, err := convert.Lookup(entries, []byte(p))
				if err != nil {
					return &exitError{code: exitFailure, err: inputErr(args[0], err)}
				}
				if err := convert.WriteContent(a, e, w); err != nil {
					return inputErr(args[0], err)
				}
			}
			return nil
		},
	}
	keyFlag(c, &keyPath)
	return c
}
