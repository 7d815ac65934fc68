package cache

import (
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	t.Setenv("LIVESPLICE_CACHE", "/x/cache")
	if got := Dir(); got != "/x/cache" {
		t.Errorf("Dir() = %q with LIVESPLICE_CACHE set", got)
	}
	t.Setenv("LIVESPLICE_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/y")
	if got := Dir(); got != filepath.Join("/y", "livesplice") {
		t.Errorf("Dir() = %q, want /y/livesplice", got)
	}
	if got := Tree("/c", "6.1.0-56-amd64"); got != "/c/trees/6.1.0-56-amd64" {
		t.Errorf("Tree = %q", got)
	}
}
