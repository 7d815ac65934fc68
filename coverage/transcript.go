package coverage

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/internal/tail"
)

// outputLines is how much of a step's output a record keeps.
const outputLines = 12

// PackRun is one pack's part of a guest transcript.
type PackRun struct {
	ID    string
	Steps []Step
	// Ended: the scenario printed @@end (or @@dirty) for the pack.
	Ended bool
	// Dirty: an update or module stayed loaded after it; the boot ended.
	Dirty bool
	// Open is the step that had started but not finished when the
	// transcript ends, "" if none; OpenOutput the end of what it printed
	// (with the kernel's last words, if it crashed).
	Open, OpenOutput string
	// log is the whole kernel log the pack's dmesg step printed; after
	// what the console printed after its last step, until the next
	// marker (a crash's last words, if it never ended).
	log   string
	after []string
}

// Transcript is a coverage scenario's output, split by pack.
type Transcript struct {
	// Packs in the order they ran.
	Packs []*PackRun
	// Boot and Alive are the steps before the first pack and after the
	// last ("-" in the markers).
	Boot, Alive *Step
}

var markerRE = regexp.MustCompile(`^@@(begin|cov|rc|end|dirty) (\S+)(?: (\S+))?(?: (-?\d+) ([0-9.]+) ([0-9.]+))?$`)

// ParseTranscript splits the coverage scenario's output at its markers
// (see demo/scenarios/coverage.sh).
func ParseTranscript(out string) *Transcript {
	t := &Transcript{}
	byID := map[string]*PackRun{}
	var open *Step
	var openPack, last *PackRun
	var buf []string
	pack := func(id string) *PackRun {
		p, ok := byID[id]
		if !ok {
			p = &PackRun{ID: id}
			byID[id] = p
			t.Packs = append(t.Packs, p)
		}
		return p
	}
	for _, line := range strings.Split(out, "\n") {
		m := markerRE.FindStringSubmatch(line)
		if m == nil {
			switch {
			case open != nil:
				buf = append(buf, line)
			case last != nil && !last.Ended:
				last.after = append(last.after, line)
			}
			continue
		}
		kind, id, step := m[1], m[2], m[3]
		switch kind {
		case "begin":
			last = pack(id)
		case "cov":
			open = &Step{Name: step}
			buf = nil
			openPack = nil
			if id != "-" {
				openPack = pack(id)
				openPack.Open = step
			}
		case "rc":
			if open == nil || open.Name != step {
				continue
			}
			open.RC, _ = strconv.Atoi(m[4])
			t0, _ := strconv.ParseFloat(m[5], 64)
			t1, _ := strconv.ParseFloat(m[6], 64)
			open.Seconds = t1 - t0
			full := strings.Trim(strings.Join(buf, "\n"), "\n")
			open.Output = tail.Lines(full, outputLines)
			switch {
			case openPack != nil:
				if step == stepLog {
					openPack.log = full
				}
				openPack.Steps = append(openPack.Steps, *open)
				openPack.Open = ""
			case step == "boot":
				s := *open
				t.Boot = &s
			default:
				s := *open
				t.Alive = &s
			}
			open, openPack = nil, nil
		case "end", "dirty":
			p := pack(id)
			p.Ended = true
			p.Dirty = kind == "dirty"
		}
	}
	if openPack != nil {
		openPack.OpenOutput = tail.Lines(strings.Trim(strings.Join(buf, "\n"), "\n"), outputLines)
	}
	return t
}

// GuestRun returns the record of a pack's run; a run that did not end
// crashed in its open step (or between steps).
func (p *PackRun) GuestRun() *GuestRun {
	g := &GuestRun{Steps: append([]Step(nil), p.Steps...)}
	if !p.Ended {
		g.Crashed = p.Open
		if g.Crashed != "" {
			g.Steps = append(g.Steps, Step{Name: p.Open, RC: -1, Output: p.OpenOutput})
		} else {
			g.Crashed = "between steps"
			if n := len(p.Steps); n > 0 {
				g.Crashed = "after " + p.Steps[n-1].Name
			}
			if out := strings.Trim(strings.Join(p.after, "\n"), "\n"); out != "" {
				p.OpenOutput = tail.Lines(out, outputLines)
				g.Steps = append(g.Steps, Step{Name: g.Crashed, RC: -1, Output: p.OpenOutput})
			}
		}
	}
	g.Problems = demo.KernelProblems(p.log + "\n" + p.OpenOutput)
	g.ApplyStopUS, _ = g.applyStop()
	return g
}

// applyStop returns the stop time apply reported and its ratio to an
// empty stop_machine of the same boot (0 if it gave none).
func (g *GuestRun) applyStop() (us int, ratio float64) {
	s := g.Step(stepApply)
	if s == nil || s.RC != 0 {
		return 0, 0
	}
	m := stopRE.FindStringSubmatch(s.Output)
	if m == nil {
		return 0, 0
	}
	us, _ = strconv.Atoi(m[1])
	ratio, _ = strconv.ParseFloat(m[2], 64)
	return us, ratio
}

// stopRE finds the stop time in apply's output ("stop 1234 us (2.00x
// empty stop_machine 617 us)").
var stopRE = regexp.MustCompile(`stop (\d+) us(?: \(([0-9.]+)x empty)?`)
