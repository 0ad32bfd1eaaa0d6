//go:build !unix

package repo

import (
	"errors"
	"os"
)

// tryLock: index updates need flock, which only Unix systems have.
func tryLock(*os.File) (bool, error) {
	return false, errors.New("index updates need flock(2), which this system does not have")
}
