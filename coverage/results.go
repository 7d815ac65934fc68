package coverage

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Record is what the results file holds for one patch: appended after its
// build, and again, complete, after its guest run. The last record of a
// patch is the one that counts.
type Record struct {
	Patch      string `json:"patch"`
	Location   string `json:"location"`
	DataChange string `json:"data_change"`
	// Version is the livesplice source the patch was built with
	// (SourceVersion).
	Version string    `json:"version"`
	When    time.Time `json:"when"`
	Build   Build     `json:"build"`
	// Guest is the guest run of a built pack; nil until it ran.
	Guest *GuestRun `json:"guest,omitempty"`
}

// Build is one patch's build.
type Build struct {
	BuildOutcome
	// Seconds is builder.Build's wall time; PreSeconds this patch's share
	// of the batched pre compile.
	Seconds    float64 `json:"seconds"`
	PreSeconds float64 `json:"pre_seconds"`
	// PreBatch is how many pre objects were compiled in that one make.
	PreBatch int `json:"pre_batch,omitempty"`
	// Load is the host's 1-minute load average when the build ended:
	// the times are only comparable at similar loads.
	Load float64 `json:"load,omitempty"`
	// ID and Pack (a file name in the packs folder) of a built pack, and
	// the functions it replaces.
	ID        string   `json:"id,omitempty"`
	Pack      string   `json:"pack,omitempty"`
	Functions []string `json:"functions,omitempty"`
}

// GuestRun is one pack's run in the guest.
type GuestRun struct {
	// Boot names the guest boot that ran the pack (when it started);
	// BootPacks is how many packs ran in it, BootSeconds how long it took
	// from starting qemu to its end.
	Boot        string  `json:"boot"`
	BootPacks   int     `json:"boot_packs"`
	BootSeconds float64 `json:"boot_seconds"`
	Steps       []Step  `json:"steps"`
	// Problems are kernel log lines that report a warning, BUG or oops.
	Problems []string `json:"problems,omitempty"`
	// Crashed names the step during which the guest stopped (crash,
	// hang or timeout), "" when the pack's run ended.
	Crashed string `json:"crashed,omitempty"`
	// Transcript is the file (in the guest folder) that holds the boot's
	// whole console output.
	Transcript string `json:"transcript,omitempty"`
	// ApplyStopUS is the stop time apply reported, 0 if none.
	ApplyStopUS int `json:"apply_stop_us,omitempty"`
}

// Step is one step of a pack in the guest.
type Step struct {
	Name    string  `json:"name"`
	RC      int     `json:"rc"`
	Seconds float64 `json:"seconds"`
	// Output is the step's output, cut to its last lines.
	Output string `json:"output,omitempty"`
}

// Step returns the named step, or nil.
func (g *GuestRun) Step(name string) *Step {
	for i := range g.Steps {
		if g.Steps[i].Name == name {
			return &g.Steps[i]
		}
	}
	return nil
}

// Pending reports whether the record still waits for its guest run.
func (r *Record) Pending() bool { return r.Build.Category == Built && r.Guest == nil }

// Store is a results file: JSON lines, one Record each, appended.
type Store struct {
	Path string
}

// Load returns the last record of every patch in the file (none if it
// does not exist yet). A line that does not parse is the remains of a
// write cut short by a kill: it is skipped, and its patch redone.
func (s Store) Load() (map[string]*Record, error) {
	f, err := os.Open(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*Record{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]*Record{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Patch == "" {
			continue
		}
		out[r.Patch] = &r
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	return out, nil
}

// Append adds records to the file, each on its own line, synced.
func (s Store) Append(recs ...*Record) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.Path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// After a write cut short, start on a line of our own.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return err
			}
		}
	}
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			f.Close()
			return fmt.Errorf("record of %s: %w", r.Patch, err)
		}
		if _, err := f.Write(append(data, '\n')); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", s.Path, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Restart moves the file aside (to PATH.old), for a fresh run.
func (s Store) Restart() error {
	err := os.Rename(s.Path, s.Path+".old")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
