package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cbfs/cbfs/keys"
	"github.com/spf13/cobra"
)

func init() {
	register(newKeygenCmd)
	register(newKeyCmd)
}

func newKeygenCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen -o FILE",
		Short: "Write a new key file: 32 random bytes, mode 0600",
		Example: `  cbfs keygen -o fs1.key
  cbfs key id -k fs1.key`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" || out == "-" {
				return usageError{errors.New("keygen needs -o FILE: a key is never written to standard output")}
			}
			k, err := keys.GenerateFile(out)
			if err != nil {
				if errors.Is(err, keys.ErrExists) {
					return &exitError{code: exitFailure, err: err, hint: "keygen never replaces a key file: choose another name"}
				}
				return err
			}
			fmt.Fprintf(os.Stderr, "cbfs: wrote key %s to %s (mode 0600); keep a copy: without it the archives cannot be read\n", k.ID(), out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "key file to create (must not exist)")
	return c
}

func newKeyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "key",
		Short: "Inspect key files",
	}
	var keyPath string
	id := &cobra.Command{
		Use:     "id -k FILE",
		Short:   "Print the key's public fingerprint",
		Example: `  cbfs key id -k fs1.key`,
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			k, err := loadKey(keyPath)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, k.ID())
			return nil
		},
	}
	keyFlag(id, &keyPath)
	c.AddCommand(id)
	return c
}
