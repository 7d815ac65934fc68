package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livesplice/livesplice/corpus"
	"github.com/livesplice/livesplice/coverage"
	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/internal/cache"
)

// coverageSample are 20 real patches of the corpus delta (the copies in
// testdata/corpus), small ones, 13 built into vmlinux and 7 into modules:
// what `make coverage` does to the whole corpus, done to them.
var coverageSample = []string{
	// vmlinux
	"net__ipv4__arp.c.patch",
	"net__unix__garbage.c.patch",
	"io_uring__io-wq.c.patch",
	"kernel__time__timer.c.patch",
	"net__core__sock_map.c.patch",
	"lib__ucs2_string.c.patch",
	"block__blk-stat.c.patch",
	"drivers__tty__pty.c.patch",
	"net__ipv6__xfrm6_input.c.patch",
	"kernel__time__itimer.c.patch",
	"drivers__base__swnode.c.patch",
	"kernel__sys.c.patch",
	"init__main.c.patch",
	// modules
	"drivers__bluetooth__hci_bcm.c.patch",
	"drivers__hwmon__w83791d.c.patch",
	"drivers__i2c__i2c-mux.c.patch",
	"drivers__iio__proximity__srf04.c.patch",
	"drivers__net__usb__cx82310_eth.c.patch",
	"block__kyber-iosched.c.patch",
	"sound__core__seq__seq_clientmgr.c.patch",
}

var firstLineRE = regexp.MustCompile(`^shipped: \d+ of \d+ code-only patches \(\d+\.\d%\)$`)

// TestCoverageSample runs the coverage harness on coverageSample for
// 6.1.0-53-amd64: each patch built with builder.Build and classified,
// every pack built checked, applied, exercised and undone in one guest
// boot with the guest alive. It asserts how the harness behaves, not a
// coverage figure. A second run finds everything done and builds nothing.
func TestCoverageSample(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := coverage.Options{
		Repo: repo, Corpus: corpus.DeltaDir(), Cache: cache.Dir(), Kernel: demo.Kernel53,
		Patches: coverageSample, Batch: len(coverageSample), Dir: dir,
		Report: filepath.Join(dir, "coverage.md"), Log: logWriter{t},
	}
	r, err := coverage.New(o)
	if err != nil {
		t.Fatal(err)
	}
	vm, mod := 0, 0
	for _, e := range r.Selection().Planned {
		if e.Module() {
			mod++
		} else {
			vm++
		}
	}
	if vm == 0 || mod == 0 || vm+mod != 20 {
		t.Fatalf("sample: %d vmlinux, %d module patches; want both, 20 in all", vm, mod)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	recs, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 patches in %s", time.Since(start).Round(time.Second))
	if len(recs) != len(coverageSample) {
		t.Fatalf("%d results, want %d", len(recs), len(coverageSample))
	}
	inGuest := 0
	for _, p := range coverageSample {
		rec := recs[p]
		if rec == nil {
			t.Errorf("%s: no result", p)
			continue
		}
		o := rec.Outcome()
		t.Logf("%s: %s: %s", p, o.Category, o.Reason)
		if o.Category == coverage.Built {
			t.Errorf("%s: built, but never ran in the guest", p)
		}
		if !o.Category.Known() {
			t.Errorf("%s: outcome %q is not a known category", p, o.Category)
		}
		if o.Category == coverage.GuestCrashed {
			t.Errorf("%s: the guest crashed or hung: %s", p, o.Reason)
		}
		if rec.Build.Category != coverage.Built {
			continue
		}
		inGuest++
		if o.Category != coverage.Shipped && o.Category != coverage.ShippedWaited {
			t.Errorf("%s: the pack built but did not apply and undo with the guest alive: %s: %s", p, o.Category, o.Reason)
		}
		if rec.Guest == nil || rec.Guest.Step("exercise") == nil || rec.Guest.Step("undo") == nil {
			t.Errorf("%s: the guest run lacks the exercise or the undo: %s", p, stepList(rec.Guest))
		}
	}
	if inGuest == 0 {
		t.Error("no pack built: the guest part of the harness did not run")
	}
	report, err := os.ReadFile(o.Report)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(report), "\n")
	if !firstLineRE.MatchString(first) {
		t.Errorf("report's first line %q does not match %s", first, firstLineRE)
	}
	if want := coverage.Count(recs).FirstLine(); first != want {
		t.Errorf("report's first line %q, want %q", first, want)
	}
	for _, p := range coverageSample {
		if !strings.Contains(string(report), "`"+p+"`") {
			t.Errorf("report does not list %s", p)
		}
	}
	t.Log(first)

	// Resumed: nothing left to do, nothing appended.
	results := filepath.Join(dir, "results.jsonl")
	before, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := coverage.New(o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := r2.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(recs) || string(after) != string(before) {
		t.Errorf("a second run redid work: %d results, results file %d -> %d bytes", len(again), len(before), len(after))
	}
}

// stepList names a guest run's steps and their exit codes.
func stepList(g *coverage.GuestRun) string {
	if g == nil {
		return "no guest run"
	}
	var parts []string
	for _, s := range g.Steps {
		parts = append(parts, fmt.Sprintf("%s %d", s.Name, s.RC))
	}
	return strings.Join(parts, ", ")
}

// logWriter sends the harness's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
