package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/keys"
	"github.com/spf13/cobra"
)

// keyFlagHelp is the help text of -k/--key.
const keyFlagHelp = "key file, or keyring:NAME for the kernel keyring (default $CBFS_KEY_FILE); repeatable: an archive opens with the key it was written under, and what is written uses the first"

// keyFlag adds -k/--key to a command: repeatable, each a key source.
func keyFlag(c *cobra.Command, p *[]string) {
	c.Flags().StringArrayVarP(p, "key", "k", nil, keyFlagHelp)
}

// keysGiven says whether any key was given, by -k or CBFS_KEY_FILE.
func keysGiven(srcs []string) bool { return len(srcs) > 0 || os.Getenv("CBFS_KEY_FILE") != "" }

// loadKeys reads every key source given with -k, in order (a key given
// twice counts once), or the key file CBFS_KEY_FILE names when none is,
// printing any warning about them. A source is a key file, or
// keyring:NAME for a "user" key in the kernel keyring.
func loadKeys(srcs []string) ([]*crypt.Key, error) {
	if len(srcs) == 0 {
		if env := os.Getenv("CBFS_KEY_FILE"); env != "" {
			srcs = []string{env}
		}
	}
	if len(srcs) == 0 {
		return nil, &exitError{code: exitUsage, err: errors.New("no key: give -k FILE (or -k keyring:NAME), or set CBFS_KEY_FILE"),
			hint: "create one with 'cbfs keygen -o FILE'"}
	}
	var out []*crypt.Key
	seen := map[string]bool{}
	for _, src := range srcs {
		k, err := loadKeySource(src)
		if err != nil {
			return nil, err
		}
		if !seen[k.ID()] {
			seen[k.ID()] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// loadKey is loadKeys for a command that uses one key: the first.
func loadKey(srcs []string) (*crypt.Key, error) {
	ks, err := loadKeys(srcs)
	if err != nil {
		return nil, err
	}
	return ks[0], nil
}

func loadKeySource(src string) (*crypt.Key, error) {
	if name, ok := keys.KeyringName(src); ok {
		k, err := keys.ReadKeyring(name)
		var ke *keys.KeyringError
		if errors.As(err, &ke) {
			return nil, keyringErr(err)
		}
		return k, err
	}
	k, warns, err := keys.ReadFile(src)
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "cbfs: warning: %s\n", w)
	}
	return k, nil
}

// keyringStatus is the exit status of a key the keyring cannot give:
// one of the wrong size is a usage error, as a key file of the wrong
// size is; the others are failures (status 1), as a key file that
// cannot be read is.
func keyringStatus(e *keys.KeyringError) int {
	switch e.Kind {
	case keys.KeyringSize, keys.KeyringBadName:
		return exitUsage
	}
	return exitFailure
}

// keyIDOf names the key of keys that an archive with header h was
// written under, "" when none is.
func keyIDOf(h *format.Header, ks []*crypt.Key) string {
	if h == nil {
		return ""
	}
	if k := h.KeyOf(ks...); k != nil {
		return k.ID()
	}
	return ""
}

// noteKey says, when several keys were given, which one opened an
// archive: the key ids in use.
func noteKey(name string, h *format.Header, ks []*crypt.Key) {
	if len(ks) < 2 || h == nil {
		return
	}
	if id := keyIDOf(h, ks); id != "" {
		fmt.Fprintf(os.Stderr, "cbfs: note: %s: opened with key %s\n", displayName(name), id)
	}
}

// loadRekeyKeys loads the old keys (-k) and the new one (--new-key) of a
// rekey, refusing a new key that is one of the old.
func loadRekeyKeys(oldSrcs []string, newSrc string) ([]*crypt.Key, *crypt.Key, error) {
	oldKeys, err := loadKeys(oldSrcs)
	if err != nil {
		return nil, nil, err
	}
	newKey, err := loadKeySource(newSrc)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range oldKeys {
		if k.ID() == newKey.ID() {
			return nil, nil, &exitError{code: exitUsage, err: fmt.Errorf("--new-key %s is key %s, which -k gives as an old key", newSrc, k.ID()),
				hint: "make the new key with 'cbfs keygen -o FILE'"}
		}
	}
	return oldKeys, newKey, nil
}
