package differ

import (
	"encoding/binary"
	"fmt"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
	"golang.org/x/arch/x86/x86asm"
)

// PreFunction describes function name of the pre object f the way the
// loader needs it to match the running kernel against: its code with
// relocation fields zero, its named relocations and its runtime-rewritten
// sites, and the same of its cold parts. sizes are the target kernel's
// special-section entry sizes (module.EntrySizes); without the size of a
// section the function has entries in, it is an error.
func PreFunction(f *elfobj.File, name string, sizes map[string]int) (pack.Function, error) {
	o := newObject(f)
	fn := single(o.funcs[name])
	if fn == nil {
		return pack.Function{}, fmt.Errorf("%s: %s is not a single STT_FUNC symbol (%d)", f.Name, name, len(o.funcs[name]))
	}
	pf, err := preFunction(o, fn, sizes)
	if err == nil {
		pf.Cold, err = preCold(o, fn, sizes)
	}
	return pf, err
}

func preFunction(o *object, fn *elfobj.Symbol, sizes map[string]int) (pack.Function, error) {
	code, relocs, err := o.maskedCode(fn)
	if err != nil {
		return pack.Function{}, err
	}
	sites, err := preSites(o, fn, sizes)
	if err != nil {
		return pack.Function{}, err
	}
	return pack.Function{
		Name: fn.Name, Size: int(fn.Size), PreCode: code,
		PreRelocs: namedRelocs(o, fn.Section, fn.Value, relocs), PreSites: sites,
	}, nil
}

// preSites returns fn's alternatives and jump labels, in entry order.
func preSites(o *object, fn *elfobj.Symbol, sizes map[string]int) ([]pack.Site, error) {
	var sites []pack.Site
	err := o.entriesOf(fn, ".altinstructions", sizes, func(off, at uint64, e []byte, relocs []elfobj.Reloc) error {
		if len(e) < 12 {
			return fmt.Errorf("%s: .altinstructions entry of %d bytes is too short", o.f.Name, len(e))
		}
		lenAt, replLenAt := len(e)-2, len(e)-1
		if v, ok := sizes["alt_instr.instrlen"]; ok && v < len(e) {
			lenAt = v
		}
		if v, ok := sizes["alt_instr.replacementlen"]; ok && v < len(e) {
			replLenAt = v
		}
		s := pack.Site{Kind: pack.SiteAlternative, Offset: int(off), Len: int(e[lenAt]), Feature: binary.LittleEndian.Uint16(e[8:])}
		repl, start, ok := o.entryPointer(relocs, at+4)
		if !ok {
			return fmt.Errorf("%s: alternative at %s+%#x has no replacement relocation", o.f.Name, fn.Name, off)
		}
		n := uint64(e[replLenAt])
		b, ok := repl.Bytes(start, n)
		if !ok {
			return fmt.Errorf("%s: alternative at %s+%#x: replacement [%#x, +%d) lies outside %s", o.f.Name, fn.Name, off, start, n, repl.Name)
		}
		s.Code = append([]byte(nil), b...)
		rs := repl.RelocsIn(start, start+n)
		for _, r := range rs {
			zeroField(s.Code, r.Offset-start, r.Type)
		}
		s.Relocs = namedRelocs(o, repl, start, rs)
		sites = append(sites, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = o.entriesOf(fn, "__jump_table", sizes, func(off, at uint64, _ []byte, relocs []elfobj.Reloc) error {
		code, _ := fn.Section.Bytes(fn.Value, fn.Size)
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return fmt.Errorf("%s: jump label at %s+%#x: %w", o.f.Name, fn.Name, off, err)
		}
		s := pack.Site{Kind: pack.SiteJumpLabel, Offset: int(off), Len: in.Len}
		sec, target, ok := o.entryPointer(relocs, at+4)
		switch {
		case !ok:
			return fmt.Errorf("%s: jump label at %s+%#x has no target relocation", o.f.Name, fn.Name, off)
		case sec == fn.Section && target >= fn.Value && target <= fn.Value+fn.Size:
			s.Target = int(target - fn.Value)
		default:
			// Into another section (a .cold part): named like a relocation.
			for _, r := range relocs {
				if r.Offset == at+4 {
					t := namedRelocs(o, o.f.Section("__jump_table"), at, []elfobj.Reloc{r})[0]
					s.TargetSymbol, s.Target = t.Symbol, int(t.Addend)
				}
			}
		}
		sites = append(sites, s)
		return nil
	})
	return sites, err
}

// entriesOf calls visit for every entry of section name whose first field
// points into fn, with the offset it points at within fn.
func (o *object) entriesOf(fn *elfobj.Symbol, name string, sizes map[string]int, visit func(off, start uint64, entry []byte, relocs []elfobj.Reloc) error) error {
	sec := o.f.Section(name)
	if sec == nil {
		return nil
	}
	size := uint64(sizes[name])
	for _, r := range sec.Relocs {
		s, at, ok := o.entryPointer([]elfobj.Reloc{r}, r.Offset)
		if !ok || s != fn.Section || at < fn.Value || at >= fn.Value+fn.Size {
			continue
		}
		if size == 0 || len(sec.Data)%int(size) != 0 {
			return fmt.Errorf("%s: %s has entries in %s, but the target's entry size for %s is unknown or does not divide it", o.f.Name, fn.Name, name, name)
		}
		if r.Offset%size != 0 {
			continue // not an entry's first field
		}
		e, _ := sec.Bytes(r.Offset, size)
		if err := visit(at-fn.Value, r.Offset, e, sec.RelocsIn(r.Offset, r.Offset+size)); err != nil {
			return err
		}
	}
	return nil
}

// entryPointer returns where the PC-relative field at section offset off
// (a relocation among relocs) points: a section and an offset in it.
func (o *object) entryPointer(relocs []elfobj.Reloc, off uint64) (*elfobj.Section, uint64, bool) {
	for _, r := range relocs {
		if r.Offset == off && r.Sym != nil && r.Sym.Section != nil {
			v := int64(r.Sym.Value) + r.Addend
			if v < 0 {
				return nil, 0, false
			}
			return r.Sym.Section, uint64(v), true
		}
	}
	return nil, 0, false
}
