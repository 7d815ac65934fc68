// Package cache says where livesplice keeps what it builds once and
// reuses: prepared source trees, entry sizes measured from headers, the
// corpus' object pairs. It is $LIVESPLICE_CACHE, else livesplice in the
// user's cache directory; it is never inside the repository.
package cache

import (
	"os"
	"path/filepath"
)

// Dir returns the cache directory.
func Dir() string {
	if d := os.Getenv("LIVESPLICE_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "livesplice")
}

// Tree returns where the source tree prepared for release lives in the
// cache directory dir.
func Tree(dir, release string) string {
	return filepath.Join(dir, "trees", release)
}
