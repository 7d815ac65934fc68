package corpus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/livesplice/livesplice/internal/cache"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/livesplice/livesplice/builder"
)

// CacheDir is where built object pairs are kept: corpus in the cache
// directory (package internal/cache).
func CacheDir() string {
	return filepath.Join(cache.Dir(), "corpus")
}

// Pair is the pre and post build of the object one patch changes.
type Pair struct {
	Patch  string // the patch file
	Object string // relative to the tree, e.g. fs/ext4/inode.o
	// Pre is built with the patch reversed (the corpus' old version),
	// Post from the pristine tree (its new version).
	Pre, Post string
	// Source is the pristine (post) source file, copied during the build.
	Source string
	// Cached is true when the pair came from the cache.
	Cached bool
	dir    string // the pair's cache folder
}

const doneName = "done"

// pairDir is where the pair of patch is cached: by the patch's sha256,
// under a folder named for the builder's sources (how pairs are built
// changes with them, e.g. line-number keeping).
func pairDir(cache, release string, patch []byte) string {
	sum := sha256.Sum256(patch)
	return filepath.Join(cache, release, "builder-"+builderVersion(), hex.EncodeToString(sum[:]))
}

// builderVersion is a short hash of the builder package's Go sources next
// to this package, "unknown" when they are not there.
func builderVersion() string {
	_, file, _, _ := runtime.Caller(0)
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(file), "..", "builder", "*.go"))
	h := sha256.New()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
		n++
	}
	if n == 0 {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// CachedPair returns the pair of a patch from the cache, if it is complete.
func CachedPair(cache, release, patchFile, object, source string) (*Pair, bool, error) {
	data, err := os.ReadFile(patchFile)
	if err != nil {
		return nil, false, err
	}
	dir := pairDir(cache, release, data)
	p := &Pair{
		Patch: patchFile, Object: object, Cached: true, dir: dir,
		Pre:    filepath.Join(dir, "pre", object),
		Post:   filepath.Join(dir, "post", object),
		Source: filepath.Join(dir, "src", source),
	}
	if got, err := os.ReadFile(filepath.Join(dir, doneName)); err != nil || string(got) != object+"\n" {
		return p, false, nil
	}
	for _, f := range []string{p.Pre, p.Post, p.Source} {
		if _, err := os.Stat(f); err != nil {
			return p, false, nil
		}
	}
	return p, true, nil
}

// BuildPair returns the pre/post pair of object for a patch that the tree
// already contains: it builds it with the patch reversed through
// Tree.BuildWithPatch (pre = reversed, post = pristine) unless the cache
// holds it. source is the patched .c file, relative to the tree.
func BuildPair(ctx context.Context, t *builder.Tree, cache, patchFile, object, source string) (*Pair, error) {
	p, ok, err := CachedPair(cache, t.Release, patchFile, object, source)
	if err != nil || ok {
		return p, err
	}
	p.Cached = false
	dir := p.dir
	tmp := dir + fmt.Sprintf(".tmp%d", os.Getpid())
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// check runs after the pristine build, with the tree locked and
	// pristine: the moment to copy the source the post object came from.
	copySource := func() error {
		data, err := os.ReadFile(filepath.Join(t.Dir, source))
		if err != nil {
			return err
		}
		out := filepath.Join(tmp, "src", source)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	}
	if err := t.BuildWithPatch(ctx, patchFile, true, []string{object}, filepath.Join(tmp, "post"), filepath.Join(tmp, "pre"), copySource); err != nil {
		return nil, fmt.Errorf("%s: building %s: %w", filepath.Base(patchFile), object, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, doneName), []byte(object+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return p, nil
}
