package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { register(newManCmd) }

// newManCmd writes the man pages, one per command, generated from the
// commands' own help: 'make man' runs it. Hidden: it is for packagers.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := c.Root()
			root.DisableAutoGenTag = true // the pages do not change with the date they were made
			hdr := &doc.GenManHeader{Title: "CBFS", Section: "1", Source: "cbfs", Manual: "CBFS archive tool"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			fmt.Fprintf(os.Stderr, "cbfs: man pages written to %s\n", args[0])
			return nil
		},
	}
}
