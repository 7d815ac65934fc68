package differ

import (
	"bytes"
	"debug/elf"
	"slices"
	"sort"
	"strings"

	"github.com/livesplice/livesplice/elfobj"
)

// Renamed is a post symbol correlated with a pre symbol of another name
// (a gcc clone or static local whose number changed). The running
// kernel knows it by Pre.
type Renamed struct{ Pre, Post string }

// Correlation rules (see correlate):
//
//   - a symbol whose name carries no gcc number (foo, foo.cold, global
//     symbols) is matched by name;
//   - a local symbol whose name carries gcc numbers (foo.isra.3,
//     foo.constprop.1, foo.part.0, counter.7, __func__.12, __warned.4,
//     __already_done.2, __key.9, _rs.5, CSWTCH.31) is never matched by
//     name alone: its stem (the name without the numbers) must agree and
//     - functions (clones) are paired by identical code first, then, when
//       only one candidate is left on each side, with it, then by name;
//     - data is paired through the already paired symbols that refer to
//       it: the i-th distinct reference of a stem in the pre referrer
//       pairs with the i-th of the same stem in the post referrer;
//       read-only data must also have identical content (else it is new
//       data and its users changed), and read-only data nobody paired
//       is paired by unique identical content.
//
// After correlation Diff renames every paired post symbol to its pre name
// (the name in the running kernel), and every unpaired post symbol whose
// name a pre symbol has to NAME.post, so that name-based code (comparison,
// extraction, fix-ups, pre relocations) sees the running kernel's names.

// stem is name without gcc's numbers (every "." followed by digits,
// with the digits): foo.isra.3 -> foo.isra, counter.7 -> counter,
// foo.constprop.0.isra.1 -> foo.constprop.isra. It allocates only when
// there are numbers to take out.
func stem(name string) string {
	var out []byte
	for i := 0; i < len(name); {
		if name[i] == '.' && i+1 < len(name) && isDigit(name[i+1]) {
			if out == nil {
				out = append(make([]byte, 0, len(name)), name[:i]...)
			}
			for i++; i < len(name) && isDigit(name[i]); i++ {
			}
			continue
		}
		if out != nil {
			out = append(out, name[i])
		}
		i++
	}
	if out == nil {
		return name
	}
	return string(out)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// renumberable reports symbols gcc names with a counter that may change
// between builds.
func renumberable(s *elfobj.Symbol) bool {
	return s != nil && s.Bind == elf.STB_LOCAL && s.Section != nil && !s.IsSection() && !isLocalLabel(s) &&
		s.Type != elf.STT_FILE && s.Name != "" && stem(s.Name) != s.Name
}

type correlation struct {
	pre, post *object
	toPre     map[*elfobj.Symbol]*elfobj.Symbol // post -> pre
	toPost    map[*elfobj.Symbol]*elfobj.Symbol // pre -> post
}

func (c *correlation) pair(pre, post *elfobj.Symbol) bool {
	if pre == nil || post == nil || c.toPre[post] != nil || c.toPost[pre] != nil {
		return false
	}
	if (pre.Type == elf.STT_FUNC) != (post.Type == elf.STT_FUNC) {
		return false
	}
	c.toPre[post], c.toPost[pre] = pre, post
	return true
}

// preName is the name a post symbol has in the running kernel.
func (c *correlation) preName(s *elfobj.Symbol) string {
	if p := c.toPre[s]; p != nil {
		return p.Name
	}
	if renumberable(s) {
		return "post-only:" + s.Name
	}
	return s.Name
}

// definedSymbols lists the symbols of o that name code or data.
func definedSymbols(o *object) []*elfobj.Symbol {
	var out []*elfobj.Symbol
	for _, s := range o.f.Symbols {
		if s != nil && s.Section != nil && s.Name != "" && !s.IsSection() && !isLocalLabel(s) && s.Type != elf.STT_FILE {
			out = append(out, s)
		}
	}
	return out
}

func correlate(pre, post *object) *correlation {
	c := &correlation{pre: pre, post: post, toPre: map[*elfobj.Symbol]*elfobj.Symbol{}, toPost: map[*elfobj.Symbol]*elfobj.Symbol{}}
	preSyms, postSyms := definedSymbols(pre), definedSymbols(post)
	byName := func(syms []*elfobj.Symbol) map[string][]*elfobj.Symbol {
		m := map[string][]*elfobj.Symbol{}
		for _, s := range syms {
			if !renumberable(s) {
				m[s.Name] = append(m[s.Name], s)
			}
		}
		return m
	}
	preNames, postNames := byName(preSyms), byName(postSyms)
	for name, ps := range postNames {
		if qs := preNames[name]; len(qs) == 1 && len(ps) == 1 {
			c.pair(qs[0], ps[0])
		}
	}
	for round := 0; round < 20; round++ {
		if c.clonesByCode(preSyms, postSyms) || c.dataByReferrers() {
			continue
		}
		if c.clonesByElimination(preSyms, postSyms) || c.readOnlyByContent(preSyms, postSyms) {
			continue
		}
		break
	}
	return c
}

// unpairedByStem groups the unpaired renumberable symbols of syms by stem.
func unpairedByStem(syms []*elfobj.Symbol, paired map[*elfobj.Symbol]*elfobj.Symbol, funcs bool) map[string][]*elfobj.Symbol {
	m := map[string][]*elfobj.Symbol{}
	for _, s := range syms {
		if renumberable(s) && paired[s] == nil && (s.Type == elf.STT_FUNC) == funcs {
			m[stem(s.Name)] = append(m[stem(s.Name)], s)
		}
	}
	return m
}

// clonesByCode pairs clones of one stem whose code (relocations by
// correlated target) is identical and unique on both sides.
func (c *correlation) clonesByCode(preSyms, postSyms []*elfobj.Symbol) bool {
	progress := false
	preG, postG := unpairedByStem(preSyms, c.toPost, true), unpairedByStem(postSyms, c.toPre, true)
	for st, posts := range postG {
		pres := preG[st]
		for _, p := range posts {
			var match []*elfobj.Symbol
			for _, q := range pres {
				if c.sameSym(q, p) {
					match = append(match, q)
				}
			}
			if len(match) != 1 {
				continue
			}
			others := 0
			for _, p2 := range posts {
				if p2 != p && c.sameSym(match[0], p2) {
					others++
				}
			}
			if others == 0 && c.pair(match[0], p) {
				progress = true
			}
		}
	}
	return progress
}

// clonesByElimination pairs the last unpaired clone of a stem on each
// side, then equal names.
func (c *correlation) clonesByElimination(preSyms, postSyms []*elfobj.Symbol) bool {
	progress := false
	preG, postG := unpairedByStem(preSyms, c.toPost, true), unpairedByStem(postSyms, c.toPre, true)
	for st, posts := range postG {
		pres := preG[st]
		if len(pres) == 1 && len(posts) == 1 {
			progress = c.pair(pres[0], posts[0]) || progress
			continue
		}
		for _, p := range posts {
			for _, q := range pres {
				if q.Name == p.Name && c.pair(q, p) {
					progress = true
				}
			}
		}
	}
	return progress
}

// dataByReferrers pairs renumberable data through paired referrers.
func (c *correlation) dataByReferrers() bool {
	progress := false
	posts := make([]*elfobj.Symbol, 0, len(c.toPre))
	for post := range c.toPre {
		posts = append(posts, post)
	}
	slices.SortFunc(posts, func(a, b *elfobj.Symbol) int { return a.Index - b.Index })
	for _, post := range posts {
		pre := c.toPre[post]
		preRefs, postRefs := c.pre.dataRefs(pre), c.post.dataRefs(post)
		for st, ps := range postRefs {
			qs := preRefs[st]
			for i := 0; i < len(ps) && i < len(qs); i++ {
				p, q := ps[i], qs[i]
				if c.toPre[p] != nil || c.toPost[q] != nil {
					continue
				}
				if !writable(q) && !c.sameSym(q, p) {
					continue
				}
				progress = c.pair(q, p) || progress
			}
		}
	}
	return progress
}

// readOnlyByContent pairs unpaired read-only data of one stem by unique
// identical content.
func (c *correlation) readOnlyByContent(preSyms, postSyms []*elfobj.Symbol) bool {
	progress := false
	preG, postG := unpairedByStem(preSyms, c.toPost, false), unpairedByStem(postSyms, c.toPre, false)
	for st, posts := range postG {
		for _, p := range posts {
			if writable(p) {
				continue
			}
			var match []*elfobj.Symbol
			for _, q := range preG[st] {
				if !writable(q) && c.sameSym(q, p) {
					match = append(match, q)
				}
			}
			if len(match) == 1 && c.pair(match[0], p) {
				progress = true
			}
		}
	}
	return progress
}

func writable(s *elfobj.Symbol) bool { return s.Section.Flags&elf.SHF_WRITE != 0 }

// dataRefs lists, per stem, the distinct renumberable data symbols the
// code or data of s refers to, in the order of the references.
func (o *object) dataRefs(s *elfobj.Symbol) map[string][]*elfobj.Symbol {
	out := map[string][]*elfobj.Symbol{}
	seen := map[*elfobj.Symbol]bool{}
	end := s.Value + max(s.Size, 1)
	for _, r := range s.Section.RelocsIn(s.Value, end) {
		t := o.resolve(s.Section, r)
		if t.kind != tNamed || t.sym.Type == elf.STT_FUNC || !renumberable(t.sym) || seen[t.sym] {
			continue
		}
		seen[t.sym] = true
		out[stem(t.sym.Name)] = append(out[stem(t.sym.Name)], t.sym)
	}
	return out
}

// symBytes returns the bytes of s with relocation fields zeroed and its
// relocations.
func (o *object) symBytes(s *elfobj.Symbol) ([]byte, []elfobj.Reloc, bool) {
	if s.Section.Type == elf.SHT_NOBITS {
		return make([]byte, s.Size), nil, true
	}
	b, ok := s.Section.Bytes(s.Value, s.Size)
	if !ok {
		return nil, nil, false
	}
	out := append([]byte(nil), b...)
	relocs := s.Section.RelocsIn(s.Value, s.Value+s.Size)
	for _, r := range relocs {
		zeroField(out, r.Offset-s.Value, r.Type)
	}
	return out, relocs, true
}

// sameSym compares pre symbol a and post symbol b: size, bytes without
// relocation fields, and relocations by correlated target.
func (c *correlation) sameSym(a, b *elfobj.Symbol) bool {
	if a.Size != b.Size || (a.Section.Type == elf.SHT_NOBITS) != (b.Section.Type == elf.SHT_NOBITS) {
		return false
	}
	ca, ra, ok1 := c.pre.symBytes(a)
	cb, rb, ok2 := c.post.symBytes(b)
	if !ok1 || !ok2 || !bytes.Equal(ca, cb) {
		return false
	}
	return slices.Equal(c.keys(c.pre, a, ra, nil), c.keys(c.post, b, rb, c.preName))
}

// keys describes relocations independently of layout; nameOf, when set,
// names named targets (the post side's pre names).
func (c *correlation) keys(o *object, s *elfobj.Symbol, relocs []elfobj.Reloc, nameOf func(*elfobj.Symbol) string) []string {
	keys := make([]string, len(relocs))
	for i, r := range relocs {
		keys[i] = relocKey(r.Offset-s.Value, r.Type, o.resolve(s.Section, r).key(nameOf))
	}
	sort.Strings(keys)
	return keys
}

// rename gives paired post symbols their pre names and moves unpaired
// post symbols out of the way of pre names. It returns the renames.
func (c *correlation) rename() []Renamed {
	taken := map[string]bool{}
	for _, s := range c.pre.f.Symbols {
		if s != nil && s.Name != "" {
			taken[s.Name] = true
		}
	}
	for _, s := range c.post.f.Symbols {
		if s != nil && s.Name != "" {
			taken[s.Name] = true
		}
	}
	var out []Renamed
	for _, s := range definedSymbols(c.post) {
		pre := c.toPre[s]
		switch {
		case pre != nil && pre.Name != s.Name:
			out = append(out, Renamed{Pre: pre.Name, Post: s.Name})
		case pre == nil && renumberable(s) && definedIn(c.pre, s.Name):
			name := s.Name + ".post"
			for taken[name] {
				name += ".post"
			}
			taken[name] = true
			defer func(s *elfobj.Symbol, name string) { s.Name = name }(s, name)
		}
	}
	for _, s := range definedSymbols(c.post) {
		if pre := c.toPre[s]; pre != nil {
			s.Name = pre.Name
		}
	}
	slices.SortFunc(out, func(a, b Renamed) int { return strings.Compare(a.Post, b.Post) })
	return out
}
