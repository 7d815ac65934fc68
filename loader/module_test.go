package loader

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/modfile"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// helperSymtab lists the helper's own vmlinux symbols.
const helperSymtab = `ffffffff81000000 T text_poke
ffffffff81000020 T stop_machine_cpuslocked
ffffffff81000030 T find_module
ffffffff81000100 T __fentry__
ffffffff81300100 T simple_read_from_buffer
ffffffff82000000 D text_mutex
ffffffff82000040 D module_mutex
ffffffff82000300 d enabled
`

var helperSyms = vmlinuxSymbols("text_poke", "text_mutex", "stop_machine_cpuslocked", "module_mutex", "find_module")

// A loaded binfmt_misc with two statics called enabled (two objects) and
// two called dup; kallsyms lists a module's symbols in its symbol table's
// order, which is not the order of their addresses.
const moduleSymtab = helperSymtab + `ffffffffc0100000 t bm_status_read	[binfmt_misc]
ffffffffc0100500 d enabled	[binfmt_misc]
ffffffffc0100400 d enabled	[binfmt_misc]
ffffffffc0100600 d entries	[binfmt_misc]
ffffffffc0100700 d dup	[binfmt_misc]
ffffffffc0100800 d dup	[binfmt_misc]
`

// bmStatusRead is a function of binfmt_misc whose patch site holds a
// relocation field: call __fentry__; mov enabled(%rip),%eax; jmp
// simple_read_from_buffer.
var bmStatusRead = pack.Function{
	Name: "bm_status_read", Object: "binfmt_misc", Size: 15, NewSize: 32, SiteOffset: 5,
	PreCode: []byte{0xe8, 0, 0, 0, 0, 0x8b, 0x05, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0},
	PreRelocs: []pack.Reloc{
		{Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: "__fentry__", Addend: -4},
		{Offset: 7, Type: elf.R_X86_64_PC32, Symbol: "enabled", Addend: -4},
		{Offset: 12, Type: elf.R_X86_64_PLT32, Symbol: "simple_read_from_buffer", Addend: -4},
	},
}

func init() { bmStatusRead.Size = len(bmStatusRead.PreCode) }

// runningBmStatusRead is bm_status_read at 0xffffffffc0100000 reading
// the enabled at 0xffffffffc0100400.
func runningBmStatusRead() []byte {
	var at, enabled, read uint64 = 0xffffffffc0100000, 0xffffffffc0100400, 0xffffffff81300100
	b := append([]byte(nil), bmStatusRead.PreCode...)
	copy(b, []byte{0x0f, 0x1f, 0x44, 0x00, 0x00})
	binary.LittleEndian.PutUint32(b[7:], uint32(enabled-(at+11)))
	binary.LittleEndian.PutUint32(b[12:], uint32(read-(at+16)))
	return b
}

func moduleManifest(extra ...pack.Symbol) *pack.Manifest {
	syms := append(append([]pack.Symbol(nil), helperSyms...),
		pack.Symbol{Name: "bm_status_read", Object: "binfmt_misc"},
		pack.Symbol{Name: "enabled", Object: "binfmt_misc"},
		pack.Symbol{Name: "entries", Object: "binfmt_misc"},
		pack.Symbol{Name: "jbd2_journal_start", Object: "jbd2"},
		pack.Symbol{Name: "simple_read_from_buffer", Object: pack.Vmlinux},
		pack.Symbol{Name: "enabled", Object: pack.Vmlinux},
	)
	return &pack.Manifest{ID: "bm", ModuleName: "livesplice_bm", Functions: []pack.Function{bmStatusRead}, Symbols: append(syms, extra...)}
}

// TestMakePlanModule: a loaded module's symbols are passed by their
// position among the module's symbols of their name, found through the
// running code where the name is not unique in the module; another
// module's export by name (0); vmlinux's by address, even when a module
// has a symbol of the same name. The relocation field in the patch site
// is left to any value.
func TestMakePlanModule(t *testing.T) {
	syms, err := kallsyms.Parse(strings.NewReader(moduleSymtab))
	if err != nil {
		t.Fatal(err)
	}
	sp := &Space{Object: "binfmt_misc", Syms: syms.In("binfmt_misc"), Loaded: true}
	spaces := map[string]*Space{pack.Vmlinux: vmlinuxSpaces(syms)[pack.Vmlinux], "binfmt_misc": sp}
	mt, err := runpre.MatchAt(&bmStatusRead, 0xffffffffc0100000, runningBmStatusRead(), sp.Syms, runpre.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := moduleManifest()
	plan, err := MakePlan(m, spaces, []*runpre.Match{mt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0xffffffff81000000, 0xffffffff82000000, 0xffffffff81000020, 0xffffffff82000040, 0xffffffff81000030,
		0, 1, 0, 0, 0xffffffff81300100, 0xffffffff82000300}
	if !slices.Equal(plan.Addrs, want) {
		t.Errorf("Addrs = %x, want %x", plan.Addrs, want)
	}
	if got := plan.Expect[0].String(); got != "8b05xxxxxx" {
		t.Errorf("Expect = %s, want 8b05xxxxxx", got)
	}
	if p := plan.Params(Policy{Retries: -1}); !strings.HasSuffix(p, " expect=8b05xxxxxx") {
		t.Errorf("Params = %s", p)
	}

	tests := []struct {
		name string
		sym  pack.Symbol
		want string
	}{
		{"ambiguous in the module", pack.Symbol{Name: "dup", Object: "binfmt_misc"},
			"symbol dup is ambiguous: 2 symbols of that name in module binfmt_misc's symbols, and no replaced function's code refers to it"},
		{"missing in the module", pack.Symbol{Name: "nosuch", Object: "binfmt_misc"}, "symbol nosuch is not in module binfmt_misc's symbols"},
		{"vmlinux's, not the module's", pack.Symbol{Name: "bm_status_read", Object: pack.Vmlinux}, "symbol bm_status_read is not in the running kernel's kallsyms"},
	}
	for _, tt := range tests {
		_, err := MakePlan(moduleManifest(tt.sym), spaces, []*runpre.Match{mt}, nil)
		var le *Error
		if !errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want a symbol refusal containing %q", tt.name, err, tt.want)
		}
	}
}

// koFunction is a function of a module file as a pack carries it: its
// code with relocation fields zero (as in the file) and its relocations,
// a section-relative one named by the data symbol it points into (for
// PC-relative ones, past the field), others by the section.
func koFunction(t *testing.T, path, name string) pack.Function {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(syms, func(s elf.Symbol) bool { return s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC })
	if i < 0 {
		t.Fatalf("%s has no function %s", path, name)
	}
	fn := syms[i]
	text := f.Sections[fn.Section]
	data, err := text.Data()
	if err != nil {
		t.Fatal(err)
	}
	pf := pack.Function{Name: name, Object: "binfmt_misc", Source: "fs/binfmt_misc.o", Size: int(fn.Size), NewSize: 64, SiteOffset: 5,
		PreCode: append([]byte(nil), data[fn.Value:fn.Value+fn.Size]...)}
	rela := f.Section(".rela" + text.Name)
	rd, err := rela.Data()
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off+24 <= len(rd); off += 24 {
		at := binary.LittleEndian.Uint64(rd[off:])
		if at < fn.Value || at >= fn.Value+fn.Size {
			continue
		}
		info := binary.LittleEndian.Uint64(rd[off+8:])
		r := pack.Reloc{Offset: at - fn.Value, Type: elf.R_X86_64(info & 0xffffffff), Addend: int64(binary.LittleEndian.Uint64(rd[off+16:]))}
		s := syms[info>>32-1]
		r.Symbol = s.Name
		if elf.ST_TYPE(s.Info) == elf.STT_SECTION {
			sec := f.Sections[s.Section]
			r.Symbol = sec.Name
			target := r.Addend
			if pack.PCRelative(r.Type) {
				target += int64(pack.FieldSize(r.Type))
			}
			for _, d := range syms {
				if d.Section == s.Section && elf.ST_TYPE(d.Info) == elf.STT_OBJECT && int64(d.Value) <= target && target < int64(d.Value+d.Size) {
					r.Symbol, r.Addend = d.Name, r.Addend-int64(d.Value)
				}
			}
		}
		pf.PreRelocs = append(pf.PreRelocs, r)
	}
	return pf
}

// moduleKallsyms writes a kallsyms file with the helper's symbols, every
// symbol the module file links against, and lines.
func moduleKallsyms(t *testing.T, ko string, lines ...string) string {
	t.Helper()
	f, err := elf.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.Symbols()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(helperSymtab)
	for i, s := range syms {
		if s.Section == elf.SHN_UNDEF && s.Name != "" && !strings.Contains(helperSymtab, " "+s.Name+"\n") {
			fmt.Fprintf(&b, "%x T %s\n", 0xffffffff81400000+uint64(i)*0x40, s.Name)
		}
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(t.TempDir(), "kallsyms")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestModuleFile matches a function of a module that is not loaded in
// the module's file (Debian's binfmt_misc.ko) and plans its update: the
// function and the static its code reads are passed by position, the
// relocation field in the patch site left to any value. The same file
// serves a loaded module whose code cannot be read once its build-id
// proves it is what was loaded.
func TestModuleFile(t *testing.T) {
	const modules = "/lib/modules/6.1.0-56-amd64"
	ko, err := modfile.Find(modules, "binfmt_misc")
	if err != nil {
		t.Fatalf("%v (run `make kernel-inputs`: it installs linux-image-6.1.0-56-amd64)", err)
	}
	fn := koFunction(t, ko, "bm_status_read")
	if !slices.ContainsFunc(fn.PreRelocs, func(r pack.Reloc) bool { return r.Symbol == "enabled" && r.Offset == 7 }) {
		t.Fatalf("bm_status_read's relocations %+v do not name enabled at +7", fn.PreRelocs)
	}
	m := &pack.Manifest{ID: "bm", Functions: []pack.Function{fn},
		Symbols: append(append([]pack.Symbol(nil), helperSyms...), pack.Symbol{Name: "bm_status_read", Object: "binfmt_misc"},
			pack.Symbol{Name: "enabled", Object: "binfmt_misc"})}
	sysModule := t.TempDir()
	l := &Loader{Kallsyms: moduleKallsyms(t, ko), SysModule: sysModule, Modules: modules,
		Kcore: filepath.Join(t.TempDir(), "no-kcore"), BootImage: filepath.Join(t.TempDir(), "no-vmlinuz")}
	plan := func(l *Loader) (*Space, *Plan, error) {
		syms, err := kallsyms.ReadFile(l.Kallsyms)
		if err != nil {
			t.Fatal(err)
		}
		spaces, done, err := l.openSpaces(m, syms)
		if err != nil {
			return nil, nil, err
		}
		defer done()
		sp := spaces["binfmt_misc"]
		mt, err := find(&m.Functions[0], sp, runpre.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := MakePlan(m, spaces, []*runpre.Match{mt}, nil)
		return sp, p, err
	}
	sp, p, err := plan(l)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Loaded || !strings.Contains(sp.Source, ko+" (module binfmt_misc, not loaded") {
		t.Errorf("space: loaded %v, source %q", sp.Loaded, sp.Source)
	}
	if n := len(helperSyms); !slices.Equal(p.Addrs[n:], []uint64{0, 0}) {
		t.Errorf("positions = %v, want 0 0", p.Addrs[n:])
	}
	if got := p.Expect[0].String(); got != "8b05xxxxxx" {
		t.Errorf("Expect = %s, want 8b05xxxxxx", got)
	}

	// Loaded, /proc/kcore closed: the file serves once its build-id is
	// the loaded module's.
	f, err := modfile.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.BuildID()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(sysModule, "binfmt_misc", "notes")
	if err := os.MkdirAll(notes, 0o755); err != nil {
		t.Fatal(err)
	}
	writeNote := func(id []byte) {
		note := make([]byte, 12, 16+len(id))
		binary.LittleEndian.PutUint32(note, 4)
		binary.LittleEndian.PutUint32(note[4:], uint32(len(id)))
		binary.LittleEndian.PutUint32(note[8:], 3)
		if err := os.WriteFile(filepath.Join(notes, ".note.gnu.build-id"), append(append(note, "GNU\x00"...), id...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeNote(id)
	loaded := *l
	loaded.Kallsyms = moduleKallsyms(t, ko, "ffffffffc0200000 t bm_status_read\t[binfmt_misc]")
	if sp, _, err := plan(&loaded); err != nil || !sp.Loaded || !strings.Contains(sp.Source, "build-id checked") {
		t.Errorf("loaded, same build-id: %v, %+v", err, sp)
	}
	writeNote(make([]byte, len(id)))
	var le *Error
	if _, _, err := plan(&loaded); !errors.As(err, &le) || le.Kind != KindMismatch || !strings.Contains(err.Error(), "build-id") {
		t.Errorf("loaded, other build-id: %v, want a mismatch refusal", err)
	}
	if err := os.WriteFile(filepath.Join(sysModule, "binfmt_misc", "initstate"), []byte("coming\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := plan(&loaded); !errors.As(err, &le) || le.Kind != KindState || !strings.Contains(err.Error(), "module binfmt_misc is coming") {
		t.Errorf("while loading: %v, want a state refusal", err)
	}
	none := *l
	none.Modules, none.SysModule = t.TempDir(), t.TempDir()
	if _, _, err := plan(&none); !errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), "not loaded, and its file cannot be found") {
		t.Errorf("no file: %v, want a symbol refusal", err)
	}
}
