package coverage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/corpus"
	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/guest"
)

// Options configure a coverage run.
type Options struct {
	// Repo is the livesplice repository (the guest's binary is built
	// from it); Corpus the delta's folder (manifest.tsv, the patches);
	// Cache the cache directory (prepared trees).
	Repo, Corpus, Cache string
	// Dir keeps the results file, the packs, the builds' work and the
	// guest's files; default CACHE/coverage/RELEASE.
	Dir string
	// Kernel is the pre release the patches are built for and applied
	// on; default demo.Kernel53.
	Kernel demo.Kernel
	// Seed orders the candidates (see Order); Limit runs the first Limit
	// of them (0: all). Patches, when set, runs exactly those instead.
	Seed    uint64
	Limit   int
	Patches []string
	// Batch is how many patches have their pre objects compiled in one
	// make and their packs run in one guest boot (default 25); PerBoot
	// caps the packs per boot (default 40).
	Batch, PerBoot int
	// Fresh moves the results file aside and starts over; Redo runs
	// again the patches whose outcome is one of these (after the code
	// that decided them changed).
	Fresh bool
	Redo  []Category
	// Results is the results file (default DIR/results.jsonl).
	Results string
	// Report, when set, is rewritten from the results file after every
	// batch (docs/coverage.md).
	Report string
	// Log receives progress, one line per patch; nil discards it.
	Log io.Writer
	// Stall is how long a guest may print nothing before it counts as
	// hung (default 6 minutes).
	Stall time.Duration
}

func (o Options) withDefaults() Options {
	if o.Kernel.Release == "" {
		o.Kernel = demo.Kernel53
	}
	if o.Batch <= 0 {
		o.Batch = 25
	}
	if o.PerBoot <= 0 {
		o.PerBoot = 40
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Stall <= 0 {
		o.Stall = 6 * time.Minute
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(o.Cache, "coverage", o.Kernel.Release)
	}
	if o.Results == "" {
		o.Results = filepath.Join(o.Dir, "results.jsonl")
	}
	return o
}

// Runner runs one coverage run.
type Runner struct {
	o       Options
	setup   demo.Setup
	store   Store
	sel     Selection
	version string
	deps    *ModuleDeps
	binary  string // the guest's livesplice
	boots   int
}

// New checks the inputs and plans the run.
func New(o Options) (*Runner, error) {
	o = o.withDefaults()
	r := &Runner{o: o, store: Store{Path: o.Results}}
	r.setup = demo.SetupFor(o.Repo, o.Cache, filepath.Join(o.Dir, "guest"), o.Kernel)
	for _, p := range []string{r.setup.Config, r.setup.Kernel, r.setup.Headers} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel input missing (run `make kernel-inputs`): %w", err)
		}
	}
	if err := r.setup.Tree.Check(r.setup.Config); err != nil {
		return nil, fmt.Errorf("%w (run `make kernel-inputs`)", err)
	}
	var err error
	if r.deps, err = ReadModuleDeps(filepath.Join("/lib/modules", o.Kernel.Release)); err != nil {
		return nil, fmt.Errorf("%w (run `make kernel-inputs`)", err)
	}
	if r.sel, err = Select(o.Corpus, o.Seed, o.Limit, o.Patches); err != nil {
		return nil, err
	}
	r.sel.Kernel = o.Kernel
	if r.version, err = SourceVersion(o.Repo); err != nil {
		return nil, err
	}
	return r, nil
}

// Selection says which patches a run takes, and how they were chosen.
type Selection struct {
	// Corpus is the delta's folder; Rows its manifest's rows.
	Corpus string
	Rows   int
	// Candidates counts the manifest's .c patches built into vmlinux and
	// into modules, by stratum.
	Candidates map[string]int
	// Seed ordered the candidates; Limit took the first Limit (0: all).
	// Explicit is set when a fixed list was run instead.
	Seed     uint64
	Limit    int
	Explicit bool
	// Planned are the patches to run, in order.
	Planned []*corpus.Entry
	// Kernel is the pre release.
	Kernel demo.Kernel
}

// Select reads the corpus manifest and plans a run: the named patches,
// or the first limit of the candidates in the seed's order.
func Select(dir string, seed uint64, limit int, patches []string) (Selection, error) {
	m, err := corpus.ReadManifest(filepath.Join(dir, "manifest.tsv"))
	if err != nil {
		return Selection{}, fmt.Errorf("corpus %s: %w", dir, err)
	}
	sel := Selection{Corpus: dir, Rows: len(m), Candidates: map[string]int{}, Seed: seed, Limit: limit}
	cands := Candidates(m)
	for _, e := range cands {
		sel.Candidates[Stratum(e)]++
	}
	if len(patches) > 0 {
		sel.Explicit = true
		sel.Planned, err = Pick(m, patches)
		return sel, err
	}
	sel.Planned = Order(cands, seed)
	if limit > 0 && limit < len(sel.Planned) {
		sel.Planned = sel.Planned[:limit]
	}
	return sel, nil
}

// Selection returns the run's plan.
func (r *Runner) Selection() Selection { return r.sel }

// Run builds every planned patch that has no result yet, runs the packs in
// the guest, and rewrites the report after every batch. It returns the
// last record of every planned patch that has one. Interrupted (ctx), it
// keeps what is done: the next run continues from there.
func (r *Runner) Run(ctx context.Context) (map[string]*Record, error) {
	if r.o.Fresh {
		if err := r.store.Restart(); err != nil {
			return nil, err
		}
	}
	have, err := r.store.Load()
	if err != nil {
		return nil, err
	}
	todo, waiting := plan(r.sel.Planned, have, r.version, r.o.Redo, func(rec *Record) bool { return exists(r.packPath(rec)) })
	fmt.Fprintf(r.o.Log, "coverage: %d patches planned, %d done, %d to build, %d packs waiting for the guest (source %s)\n",
		len(r.sel.Planned), len(r.sel.Planned)-len(todo)-len(waiting), len(todo), len(waiting), r.version)
	if len(todo)+len(waiting) > 0 {
		// The guest's livesplice comes from the same sources as the
		// builder linked into this run: built now, not when the first
		// pack is ready.
		if r.binary, err = r.setup.Binary(ctx); err != nil {
			return nil, err
		}
	}
	if err := r.runGuest(ctx, waiting); err != nil {
		return nil, err
	}
	for len(todo) > 0 {
		n := min(r.o.Batch, len(todo))
		built, err := r.buildBatch(ctx, todo[:n])
		if err != nil {
			return nil, err
		}
		if err := r.runGuest(ctx, built); err != nil {
			return nil, err
		}
		if err := r.WriteReport(); err != nil {
			return nil, err
		}
		todo = todo[n:]
	}
	if err := r.WriteReport(); err != nil {
		return nil, err
	}
	return r.records()
}

// plan splits the planned patches into those to build and the packs that
// wait for the guest: a patch without a result, one whose outcome is in
// redo, and a waiting pack built from other sources or gone, are built
// (again).
func plan(planned []*corpus.Entry, have map[string]*Record, version string, redo []Category, packExists func(*Record) bool) (todo []*corpus.Entry, waiting []*Record) {
	again := map[Category]bool{}
	for _, c := range redo {
		again[c] = true
	}
	for _, e := range planned {
		rec := have[e.Patch]
		switch {
		case rec == nil, again[rec.Outcome().Category]:
			todo = append(todo, e)
		case rec.Pending() && (rec.Version != version || !packExists(rec)):
			todo = append(todo, e)
		case rec.Pending():
			waiting = append(waiting, rec)
		}
	}
	return todo, waiting
}

// records returns the last record of every planned patch.
func (r *Runner) records() (map[string]*Record, error) {
	have, err := r.store.Load()
	if err != nil {
		return nil, err
	}
	out := map[string]*Record{}
	for _, e := range r.sel.Planned {
		if rec, ok := have[e.Patch]; ok {
			out[e.Patch] = rec
		}
	}
	return out, nil
}

// WriteReport rewrites the report (if the options name one) from the
// results file.
func (r *Runner) WriteReport() error {
	if r.o.Report == "" {
		return nil
	}
	recs, err := r.records()
	if err != nil {
		return err
	}
	return WriteReportFile(r.o.Report, r.sel, recs)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// PackID is the update id of a patch's pack: the end of its name as
// a-z0-9- and a hash of the whole name (ids are at most 44 characters).
func PackID(patch string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(patch, ".patch"), ".c")
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(base) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		switch {
		case ok:
			b.WriteRune(c)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	slug := strings.Trim(b.String(), "-")
	if len(slug) > 30 {
		slug = strings.TrimLeft(slug[len(slug)-30:], "-")
	}
	sum := sha256.Sum256([]byte(patch))
	return "c-" + slug + "-" + hex.EncodeToString(sum[:3])
}

func (r *Runner) packPath(rec *Record) string {
	return filepath.Join(r.o.Dir, "packs", rec.Build.Pack)
}

// buildBatch compiles the batch's pre objects in one make, then builds
// each patch with builder.Build (whose pre build then finds its object up
// to date) and records it. It returns the records of the packs built.
func (r *Runner) buildBatch(ctx context.Context, batch []*corpus.Entry) ([]*Record, error) {
	preSeconds, err := r.preCompile(ctx, batch)
	if err != nil {
		return nil, err
	}
	var built []*Record
	for _, e := range batch {
		rec, err := r.build(ctx, e)
		if err != nil {
			return nil, err
		}
		rec.Build.PreSeconds = preSeconds / float64(len(batch))
		rec.Build.PreBatch = len(batch)
		if err := r.store.Append(rec); err != nil {
			return nil, err
		}
		o := rec.Outcome()
		fmt.Fprintf(r.o.Log, "  %s: %s %.1fs %s\n", e.Patch, o.Category, rec.Build.Seconds, o.Reason)
		if rec.Pending() {
			built = append(built, rec)
		}
	}
	return built, nil
}

// preCompile builds the pre objects of a batch from the pristine tree in
// one make -k -j2 (a patch whose object does not build pays for it in its
// own build, which reports it).
func (r *Runner) preCompile(ctx context.Context, batch []*corpus.Entry) (float64, error) {
	t := r.setup.Tree
	unlock, err := t.Lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	args := []string{"-k", "-j2"}
	seen := map[string]bool{}
	for _, e := range batch {
		if obj := e.Object(); !seen[obj] {
			seen[obj] = true
			args = append(args, obj)
		}
	}
	start := time.Now()
	err = t.Make(ctx, args...)
	secs := time.Since(start).Seconds()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		fmt.Fprintf(r.o.Log, "coverage: pre objects of %d patches: some did not build (%s)\n", len(batch), firstLine(err.Error()))
	}
	fmt.Fprintf(r.o.Log, "coverage: pre objects of %d patches compiled in %.1fs\n", len(batch), secs)
	return secs, nil
}

// buildTimeout bounds one patch's build.
const buildTimeout = 20 * time.Minute

// build builds one patch as `livesplice build` does and classifies the
// outcome. Only an interrupted run (ctx) is an error.
func (r *Runner) build(ctx context.Context, e *corpus.Entry) (*Record, error) {
	id := PackID(e.Patch)
	rec := &Record{Patch: e.Patch, Location: e.Location, DataChange: e.DataChange, Version: r.version}
	packs := filepath.Join(r.o.Dir, "packs")
	work := filepath.Join(r.o.Dir, "work", id)
	if err := os.Remove(filepath.Join(packs, id+".tar.xz")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	for _, d := range []string{packs, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	defer os.RemoveAll(work)
	patch := filepath.Join(r.o.Corpus, e.Patch)
	bctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	start := time.Now()
	m, err := builder.Build(bctx, builder.Options{
		Tree:        r.setup.Tree,
		Config:      r.setup.Config,
		Patch:       patch,
		ID:          id,
		Description: e.Patch,
		Headers:     r.setup.Headers,
		Source:      r.o.Kernel.Source,
		Out:         filepath.Join(packs, id+".tar.xz"),
		WorkDir:     work,
	})
	rec.Build.Seconds = time.Since(start).Seconds()
	rec.Build.Load = loadAverage()
	rec.When = time.Now().UTC()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	abs, _ := filepath.Abs(patch)
	rec.Build.BuildOutcome = ClassifyBuild(err, Names{Tree: r.setup.Tree.Dir, Patch: abs, Object: e.Object(), Work: work})
	if err == nil {
		rec.Build.ID, rec.Build.Pack = m.ID, id+".tar.xz"
		for _, f := range m.Functions {
			rec.Build.Functions = append(rec.Build.Functions, f.Name)
		}
	}
	return rec, nil
}

// loadAverage is the host's 1-minute load average, 0 if unknown.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(data), &l)
	return l
}

// errStalled cancels a guest that printed nothing for too long.
var errStalled = errors.New("the guest printed nothing for too long")

// runGuest runs the packs of recs in the guest, at most PerBoot per boot;
// after a pack that crashed the guest, hung it or left something loaded,
// it boots a fresh guest for the packs after it.
func (r *Runner) runGuest(ctx context.Context, recs []*Record) error {
	if len(recs) == 0 {
		return nil
	}
	for len(recs) > 0 {
		n := min(r.o.PerBoot, len(recs))
		done, err := r.boot(ctx, recs[:n])
		if err != nil {
			return err
		}
		recs = recs[done:]
	}
	return nil
}

// boot runs packs in one guest boot and records each pack that ran; it
// returns how many did.
func (r *Runner) boot(ctx context.Context, recs []*Record) (int, error) {
	if err := os.MkdirAll(r.setup.Work, 0o755); err != nil {
		return 0, err
	}
	packs := map[string]string{}
	var list strings.Builder
	var extra []guest.File
	var mods []string
	haveFile := map[string]bool{}
	for _, rec := range recs {
		packs[rec.Build.Pack] = r.packPath(rec)
		var kos []string
		if e := (&corpus.Entry{Location: rec.Location}); e.Module() {
			order, err := r.deps.LoadOrder(e.Modules())
			if err != nil {
				return 0, fmt.Errorf("%s: %w", rec.Patch, err)
			}
			for _, l := range order {
				gp := filepath.Join("/lib/modules", r.o.Kernel.Release, l.Path)
				if l.Optional {
					kos = append(kos, "?"+gp)
				} else {
					kos = append(kos, gp)
				}
				if !haveFile[gp] {
					haveFile[gp] = true
					mods = append(mods, l.Path)
					extra = append(extra, guest.File{Path: gp, Mode: 0o644, Source: filepath.Join(r.deps.Dir, l.Path)})
				}
			}
		}
		funcs := strings.Join(rec.Build.Functions, ",")
		if funcs == "" {
			funcs = "-"
		}
		fmt.Fprintf(&list, "%s %s %s %s\n", rec.Build.ID, rec.Build.Pack, funcs, strings.Join(kos, " "))
	}
	extra = append(extra, guest.File{Path: "/packs/list", Mode: 0o644, Data: []byte(list.String())})
	if len(mods) > 0 {
		extra = append(extra, guest.File{Path: filepath.Join("/lib/modules", r.o.Kernel.Release, "modules.dep"), Mode: 0o644, Data: r.deps.DepFile(mods)})
	}

	r.boots++
	bootName := fmt.Sprintf("%s#%d", time.Now().UTC().Format(time.RFC3339), r.boots)
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-bctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, last.Load())) > r.o.Stall {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	cfg := guest.Config{
		MemoryMB: 1536,
		Timeout:  5*time.Minute + time.Duration(len(recs))*3*time.Minute,
		Log:      writerFunc(func(p []byte) { last.Store(time.Now().UnixNano()) }),
	}
	res, err := r.setup.Boot(bctx, r.binary, packs, "coverage", cfg, extra...)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if res == nil {
		return 0, err
	}
	console := fmt.Sprintf("boot-%s-%d.log", time.Now().UTC().Format("20060102T150405"), r.boots)
	if err := os.WriteFile(filepath.Join(r.setup.Work, console), []byte(res.Transcript), 0o644); err != nil {
		return 0, err
	}
	t := ParseTranscript(res.ScenarioOutput())
	if t.Boot != nil {
		if bad := demo.KernelProblems(t.Boot.Output); len(bad) > 0 {
			fmt.Fprintf(r.o.Log, "coverage: boot %s: the kernel log has problems before any pack: %s\n", bootName, strings.Join(bad, "; "))
		}
	}
	byID := map[string]*PackRun{}
	for _, p := range t.Packs {
		byID[p.ID] = p
	}
	done := 0
	var out []*Record
	for _, rec := range recs {
		p, ok := byID[rec.Build.ID]
		if !ok {
			break
		}
		g := p.GuestRun()
		g.Boot, g.BootSeconds, g.Transcript = bootName, res.Duration.Seconds(), console
		if g.Crashed != "" && err != nil && len(g.Steps) > 0 {
			why := firstLine(err.Error())
			if cause := context.Cause(bctx); errors.Is(cause, errStalled) {
				why = cause.Error()
			}
			g.Steps[len(g.Steps)-1].Output += "\n(" + why + ")"
		}
		next := *rec
		next.Guest, next.When = g, time.Now().UTC()
		out = append(out, &next)
		done++
		if !p.Ended || p.Dirty {
			break
		}
	}
	if done == 0 {
		if err == nil {
			err = errors.New("no pack ran")
		}
		return 0, fmt.Errorf("guest boot %s with %d packs: %w", bootName, len(recs), err)
	}
	for _, rec := range out {
		rec.Guest.BootPacks = done
		o := rec.Outcome()
		fmt.Fprintf(r.o.Log, "  %s: %s %s\n", rec.Patch, o.Category, o.Reason)
	}
	return done, r.store.Append(out...)
}

// writerFunc is an io.Writer that calls f and accepts everything.
type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}
