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
		Short: "Inspect keys; load them into the kernel keyring and unload them",
	}
	var keyPath []string
	id := &cobra.Command{
		Use:   "id -k KEY...",
		Short: "Print the key's public fingerprint (one line per -k)",
		Example: `  cbfs key id -k fs1.key
  cbfs key id -k keyring:fs1`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ks, err := loadKeys(keyPath)
			if err != nil {
				return err
			}
			for _, k := range ks {
				fmt.Fprintln(stdout, k.ID())
			}
			return nil
		},
	}
	keyFlag(id, &keyPath)
	c.AddCommand(id, newKeyLoadCmd(), newKeyUnloadCmd())
	return c
}

func newKeyLoadCmd() *cobra.Command {
	var keyFile string
	c := &cobra.Command{
		Use:   "load -k FILE keyring:NAME",
		Short: "Add a key file's key to the kernel's user keyring as keyring:NAME",
		Long: `load reads the key file and adds its key to the Linux kernel's user keyring
as a "user" key named NAME, with permissions for its possessor only (its
owner's other sessions may see that it exists, not read it). Commands then
take -k keyring:NAME. The key goes from the file to the kernel in memory:
never on a command line, never in the environment.

Keyrings do not survive a reboot: the key file stays the durable copy, and
load runs again after each boot. A process possesses the key when its
session keyring links the user keyring, as a login session's does; under
sudo or in a systemd service, run 'keyctl link @u @s' first (a service:
KeyringMode=shared), or give -k FILE there.

Loading the same key again changes nothing; another key under the same name
is refused (unload it first).`,
		Example: `  cbfs key load -k fs1.key keyring:fs1
  cbfs ls -k keyring:fs1 backup.cbfs
  cbfs key unload keyring:fs1`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name, ok := keys.KeyringName(args[0])
			if !ok {
				return usageError{fmt.Errorf("key load: %q: the key is loaded as keyring:NAME", args[0])}
			}
			if keyFile == "" {
				keyFile = os.Getenv("CBFS_KEY_FILE")
			}
			if keyFile == "" {
				return usageError{errors.New("key load needs -k FILE: the key file to load")}
			}
			if _, ok := keys.KeyringName(keyFile); ok {
				return usageError{errors.New("key load reads a key file: -k FILE, not keyring:NAME")}
			}
			res, warns, err := keys.LoadKeyring(keyFile, name)
			for _, w := range warns {
				fmt.Fprintf(os.Stderr, "cbfs: warning: %s\n", w)
			}
			if err != nil {
				return keyringErr(err)
			}
			k, err := loadKeySource(args[0])
			if err != nil {
				return err
			}
			if res.Already {
				fmt.Fprintf(os.Stderr, "cbfs: %s already holds key %s: nothing changed\n", args[0], k.ID())
			} else {
				fmt.Fprintf(os.Stderr, "cbfs: loaded key %s as %s (user keyring, possessor only); keyrings do not survive a reboot: keep %s\n", k.ID(), args[0], keyFile)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&keyFile, "key", "k", "", "the key file to load (default $CBFS_KEY_FILE)")
	return c
}

func newKeyUnloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "unload keyring:NAME",
		Short:   "Remove keyring:NAME from the kernel keyring",
		Example: `  cbfs key unload keyring:fs1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name, ok := keys.KeyringName(args[0])
			if !ok {
				return usageError{fmt.Errorf("key unload: %q: name the key as keyring:NAME", args[0])}
			}
			if err := keys.UnloadKeyring(name); err != nil {
				return keyringErr(err)
			}
			fmt.Fprintf(os.Stderr, "cbfs: unloaded %s\n", args[0])
			return nil
		},
	}
}

// keyringErr gives a keyring error its exit status and hint.
func keyringErr(err error) error {
	var ke *keys.KeyringError
	if errors.As(err, &ke) {
		return &exitError{code: keyringStatus(ke), err: err, hint: ke.Hint()}
	}
	return err
}
