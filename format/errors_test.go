package format

import (
	"strings"
	"testing"
)

// TestVersionErrorWording: a version above this reader's asks for a
// newer cbfs; one below the first (a damaged byte, since no release wrote
// it) says so instead.
func TestVersionErrorWording(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&VersionError{Major + 1, 0}, "a newer cbfs is needed"},
		{&VersionError{0, 0}, "is the header damaged?"},
	} {
		if got := c.err.Error(); !strings.Contains(got, c.want) {
			t.Errorf("%q does not say %q", got, c.want)
		}
	}
}
