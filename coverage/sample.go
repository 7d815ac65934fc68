package coverage

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/livesplice/livesplice/corpus"
)

// DefaultSeed is the seed of the order in which `make coverage` runs the
// corpus.
const DefaultSeed = 20261201

// Strata are the two groups a sample keeps in proportion.
const (
	StratumVmlinux = "vmlinux"
	StratumModule  = "module"
)

// Stratum returns the group of a candidate patch.
func Stratum(e *corpus.Entry) string {
	if e.Module() {
		return StratumModule
	}
	return StratumVmlinux
}

// Candidates returns the manifest's patches a coverage run measures: the
// .c files built into vmlinux or into a module (not-built ones skipped),
// sorted by name.
func Candidates(m map[string]*corpus.Entry) []*corpus.Entry {
	var out []*corpus.Entry
	for _, e := range m {
		if e.Built() {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Patch < out[j].Patch })
	return out
}

// Order returns the candidates in the order a run takes them: each
// stratum shuffled with seed, then interleaved so that every prefix keeps
// the strata's proportions (within one patch each). A run of the first k
// is therefore a random sample of k drawn in proportion to vmlinux and
// modules, and a run that stops early, or is resumed, stays one.
func Order(cands []*corpus.Entry, seed uint64) []*corpus.Entry {
	groups := map[string][]*corpus.Entry{}
	for _, e := range cands {
		s := Stratum(e)
		groups[s] = append(groups[s], e)
	}
	names := []string{StratumVmlinux, StratumModule}
	for i, s := range names {
		g := groups[s]
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		r.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
	}
	out := make([]*corpus.Entry, 0, len(cands))
	taken := make([]int, len(names))
	for len(out) < len(cands) {
		// Take from the stratum furthest behind its share: the smallest
		// (taken+1)/size, compared without division.
		best := -1
		for i, s := range names {
			size := len(groups[s])
			if taken[i] == size {
				continue
			}
			if best < 0 || (taken[i]+1)*len(groups[names[best]]) < (taken[best]+1)*size {
				best = i
			}
		}
		out = append(out, groups[names[best]][taken[best]])
		taken[best]++
	}
	return out
}

// Pick returns the entries of the named patches, in the given order.
func Pick(m map[string]*corpus.Entry, patches []string) ([]*corpus.Entry, error) {
	var out []*corpus.Entry
	for _, p := range patches {
		e, ok := m[p]
		if !ok {
			return nil, fmt.Errorf("patch %s: no row in the corpus manifest", p)
		}
		if !e.Built() {
			return nil, fmt.Errorf("patch %s: a %s file located %s, not a .c file built into vmlinux or a module", p, e.Kind, e.Location)
		}
		out = append(out, e)
	}
	return out, nil
}
