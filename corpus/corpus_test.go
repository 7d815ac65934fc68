package corpus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/elfobj"
)

// selection reads the manifest and returns the selected entries, checking
// the mix the corpus test promises.
func selection(tb testing.TB) []*Entry {
	tb.Helper()
	dir := DeltaDir()
	m, err := ReadManifest(filepath.Join(dir, "manifest.tsv"))
	if err != nil {
		tb.Fatalf("corpus %s: %v", dir, err)
	}
	var out []*Entry
	vmlinux, module, ext4 := 0, 0, false
	for _, p := range Selected {
		e, ok := m[p]
		if !ok {
			tb.Fatalf("corpus %s: no manifest row for %s", dir, p)
		}
		if e.Kind != "c" || e.Status != "modified" {
			tb.Fatalf("%s: want a modified .c file, manifest says %s/%s", p, e.Kind, e.Status)
		}
		switch {
		case e.Location == "vmlinux":
			vmlinux++
		case e.Module():
			module++
		default:
			tb.Fatalf("%s: location %s is neither vmlinux nor a module", p, e.Location)
		}
		ext4 = ext4 || p == "fs__ext4__inode.c.patch"
		e.NoCodeChange = NoCodeChange[p]
		out = append(out, e)
	}
	if vmlinux < 15 || module < 8 || !ext4 || len(out) < 25 {
		tb.Fatalf("selection: %d vmlinux, %d module patches, ext4 inode.c %v: want >= 15, >= 8, true, 25 in all", vmlinux, module, ext4)
	}
	return out
}

// pairs builds (or takes from the cache) the object pairs of entries.
func pairs(tb testing.TB, ctx context.Context, entries []*Entry) []*Pair {
	tb.Helper()
	dir, cache := DeltaDir(), CacheDir()
	var out []*Pair
	t0 := time.Now()
	for _, e := range entries {
		patch := filepath.Join(dir, e.Patch)
		p, ok, err := CachedPair(cache, Release, patch, e.Object(), e.Path)
		if err != nil {
			tb.Fatalf("%s: %v", e.Patch, err)
		}
		if !ok {
			t, err := Tree()
			if err != nil {
				tb.Fatalf("building %s: %v", e.Patch, err)
			}
			start := time.Now()
			if p, err = BuildPair(ctx, t, cache, patch, e.Object(), e.Path); err != nil {
				// One patch that does not build must not hide the others.
				tb.Errorf("%s: %v", e.Patch, err)
				out = append(out, nil)
				continue
			}
			tb.Logf("%s: built %s pre and post in %.1fs", e.Patch, e.Object(), time.Since(start).Seconds())
		}
		out = append(out, p)
	}
	tb.Logf("%d object pairs ready in %.1fs (cache %s)", len(out), time.Since(t0).Seconds(), cache)
	return out
}

func TestCorpus(t *testing.T) {
	entries := selection(t)
	// The tree and config must be there even when every pair is cached:
	// the test is about this tree.
	if _, err := Tree(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	ps := pairs(t, ctx, entries)
	type tally struct{ ok, bad, reported int }
	cats := map[string]*tally{"vmlinux": {}, "module": {}}
	var summary []string
	for i, e := range entries {
		p := ps[i]
		cat := "vmlinux"
		if e.Module() {
			cat = "module"
		}
		t.Run(strings.TrimSuffix(e.Patch, ".patch"), func(t *testing.T) {
			if p == nil {
				cats[cat].bad++
				summary = append(summary, fmt.Sprintf("%-55s %-7s BUILD FAILED", e.Patch, cat))
				t.Fatalf("%s: no object pair (build failed above)", e.Patch)
			}
			pre, err := elfobj.Open(p.Pre)
			if err != nil {
				t.Fatalf("%s pre: %v", e.Patch, err)
			}
			post, err := elfobj.Open(p.Post)
			if err != nil {
				t.Fatalf("%s post: %v", e.Patch, err)
			}
			start := time.Now()
			cs, err := differ.Diff(pre, post)
			if err != nil {
				cats[cat].bad++
				summary = append(summary, fmt.Sprintf("%-55s %-7s ERROR %v", e.Patch, cat, err))
				t.Fatalf("%s: %v", e.Patch, err)
			}
			took := time.Since(start)
			inl, err := ReadInlining(p.Pre)
			if err != nil {
				t.Fatal(err)
			}
			postInl, err := ReadInlining(p.Post)
			if err != nil {
				t.Fatal(err)
			}
			inl.merge(postInl)
			res := Check(e, cs, pre, post, inl)
			for _, r := range res.Reported {
				why := r.Why
				if why == "" {
					why = "UNEXPLAINED"
				}
				t.Logf("  %s: %s [%s]", r.Symbol, r.How, why)
			}
			cats[cat].reported += len(res.Reported)
			status := "ok"
			if e.NoCodeChange != "" {
				status = "ok (no code change expected: " + e.NoCodeChange + ")"
			}
			if len(res.Mismatches) > 0 {
				cats[cat].bad++
				status = fmt.Sprintf("MISMATCH %d", len(res.Mismatches))
				for _, m := range res.Mismatches {
					t.Errorf("%s (%s): %s", e.Patch, e.Object(), m)
				}
			} else {
				cats[cat].ok++
			}
			summary = append(summary, fmt.Sprintf("%-55s %-7s %3d reported (%d changed, %d added, %d refused), diff %v: %s",
				e.Patch, cat, len(res.Reported), len(cs.Changed), len(cs.Added), len(cs.Refused), took.Round(time.Millisecond), status))
		})
	}
	for _, s := range summary {
		t.Log(s)
	}
	for _, c := range []string{"vmlinux", "module"} {
		t.Logf("%s: %d patches ok, %d with mismatches, %d symbols reported", c, cats[c].ok, cats[c].bad, cats[c].reported)
	}
}

// BenchmarkDiff measures the differ as a build runs it, one object at a
// time, on the real object pairs of the selected patches (from the cache;
// built first if missing): per object, read the pre and post .o from disk
// (the page cache, after the first pass), elfobj.Parse both, differ.Diff,
// and drop them, as kpatch's create-diff-object does per invocation.
// objects/s counts pairs compared; peak-heap-B is the highest heap seen
// (runtime/metrics /memory/classes/heap/objects:bytes, live and not yet
// swept, sampled every 200us and after every object), which holds only
// the pair in hand: the benchmark keeps file names, not bytes.
// objects/cpu-s counts pairs per second of the process's CPU time (user
// and system, every thread): what a loaded host does not change much.
func BenchmarkDiff(b *testing.B) {
	entries := selection(b)
	var objs []*Pair
	for _, p := range pairs(b, context.Background(), entries) {
		if p != nil { // a build failure is reported by pairs; measure the others
			objs = append(objs, p)
		}
	}
	b.Logf("%d object pairs", len(objs))
	diffOne := func(p *Pair) error {
		read := func(path string) (*elfobj.File, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			return elfobj.Parse(path, data)
		}
		pre, err := read(p.Pre)
		if err != nil {
			return err
		}
		post, err := read(p.Post)
		if err != nil {
			return err
		}
		_, err = differ.Diff(pre, post)
		return err
	}
	for _, p := range objs { // warm the page cache
		if err := diffOne(p); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	var peak atomic.Uint64
	observe := func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		v := s[0].Value.Uint64()
		for {
			old := peak.Load()
			if v <= old || peak.CompareAndSwap(old, v) {
				return
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				observe()
			}
		}
	}()
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for _, p := range objs {
			if err := diffOne(p); err != nil {
				b.Fatal(err)
			}
			observe()
			n++
		}
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(float64(peak.Load()), "peak-heap-B")
	b.ReportMetric(float64(n)/cpu.Seconds(), "objects/cpu-s")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU time the process used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
