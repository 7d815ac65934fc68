package module

import (
	"debug/elf"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/livesplice/livesplice/pack"
)

//go:embed c/livesplice.h c/livesplice-helper.c
var helperFS embed.FS

// Names of the files Generate writes. The module name cannot contain '-', so
// none of these can clash with NAME.o.
const (
	kbuildFile = "Kbuild"
	headerFile = "livesplice.h"
	helperFile = "livesplice-helper.c"
	metaFile   = "livesplice-meta.c"
)

func patchObject(i int) string { return fmt.Sprintf("livesplice-patch%d.o", i) }

// objSymbol is a GLOBAL symbol defined in one of the objects.
type objSymbol struct {
	object string
	size   uint64
}

// readObjects checks that every object is an x86-64 relocatable ELF and
// returns the GLOBAL (and WEAK) symbols they define.
func readObjects(paths []string) (map[string]objSymbol, error) {
	syms := make(map[string]objSymbol)
	for i, p := range paths {
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("Objects[%d] %s: %w", i, p, err)
		}
		if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_REL {
			f.Close()
			return nil, invalid("Objects[%d] %s: not an x86-64 ELF64 relocatable object (%v %v %v)",
				i, p, f.Class, f.Machine, f.Type)
		}
		list, err := f.Symbols()
		f.Close()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return nil, fmt.Errorf("Objects[%d] %s: symbols: %w", i, p, err)
		}
		for _, s := range list {
			bind := elf.ST_BIND(s.Info)
			if (bind != elf.STB_GLOBAL && bind != elf.STB_WEAK) || s.Section == elf.SHN_UNDEF {
				continue
			}
			if strings.HasPrefix(s.Name, reservedPrefix) {
				return nil, invalid("Objects[%d] %s: symbol %s uses the reserved prefix %s",
					i, p, s.Name, reservedPrefix)
			}
			if prev, ok := syms[s.Name]; ok {
				return nil, invalid("Objects[%d] %s: symbol %s is also defined in %s", i, p, s.Name, prev.object)
			}
			syms[s.Name] = objSymbol{object: p, size: s.Size}
		}
	}
	return syms, nil
}

// checkObjects checks the spec's references into the objects and returns,
// per fix-up, its owner: the kernel object whose functions the fix-up's
// object replaces ("" when it replaces none).
func checkObjects(spec Spec, syms map[string]objSymbol) ([]string, error) {
	kernelObject := map[string]string{} // object file -> kernel object
	for i, f := range spec.Functions {
		s, ok := syms[f.NewSymbol]
		if !ok {
			return nil, invalid("Functions[%d] (%s).NewSymbol %q: not defined as a global symbol in Objects", i, f.Name, f.NewSymbol)
		}
		if s.size > 0 && uint64(f.NewSize) < s.size {
			return nil, invalid("Functions[%d] (%s).NewSize %d: smaller than %s's size %d in %s",
				i, f.Name, f.NewSize, f.NewSymbol, s.size, s.object)
		}
		if o, ok := kernelObject[s.object]; ok && o != f.Object {
			return nil, invalid("Functions[%d] (%s).Object %s: %s also replaces functions of %s", i, f.Name, f.Object, s.object, o)
		}
		kernelObject[s.object] = f.Object
	}
	owners := make([]string, len(spec.Fixups))
	for i, r := range spec.Fixups {
		s, ok := syms[r.Symbol]
		if !ok {
			return nil, invalid("Fixups[%d].Symbol %q: not defined as a global symbol in Objects", i, r.Symbol)
		}
		k, _ := kindOf(r.Type)
		if s.size > 0 && (r.Offset > s.size || s.size-r.Offset < k.width) {
			return nil, invalid("Fixups[%d] (%s+%#x %v).Offset: %d bytes do not fit in %s (size %d)",
				i, r.Symbol, r.Offset, r.Type, k.width, r.Symbol, s.size)
		}
		owners[i] = kernelObject[s.object]
		if r.Object != pack.Vmlinux && (owners[i] == "" || owners[i] == pack.Vmlinux) {
			return nil, invalid("Fixups[%d] (%s+%#x) to %s of module %s: the code of %s replaces no function of a module that could link against it",
				i, r.Symbol, r.Offset, r.Target, r.Object, s.object)
		}
	}
	return owners, nil
}

// Generate writes a Kbuild directory for spec into dir and returns the
// ordered list of kernel symbols the loader must resolve for the module's
// addrs parameter: first the helper's own needs (text_poke,
// text_mutex, stop_machine_cpuslocked, module_mutex,
// find_module, idle_task, total_forks, nr_context_switches), then each function replaced, then their cold parts, then
// each Fixup.Target, without duplicates, each with its object.
//
// dir is created if needed and must not already hold files. It receives
// Kbuild, livesplice.h, livesplice-helper.c, livesplice-meta.c and one
// livesplice-patchN.o_shipped per object.
func Generate(spec Spec, dir string) (symbols []pack.Symbol, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	syms, err := readObjects(spec.Objects)
	if err != nil {
		return nil, err
	}
	owners, err := checkObjects(spec, syms)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("module: %s: %w", dir, os.ErrExist)
	}

	files := map[string][]byte{
		kbuildFile: []byte(kbuild(spec)),
		metaFile:   []byte(meta(spec, owners)),
	}
	for name, src := range map[string]string{headerFile: "c/livesplice.h", helperFile: "c/livesplice-helper.c"} {
		if files[name], err = helperFS.ReadFile(src); err != nil {
			return nil, fmt.Errorf("module: embedded %s: %w", src, err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
	}
	for i, p := range spec.Objects {
		if err := copyFile(p, filepath.Join(dir, patchObject(i)+"_shipped")); err != nil {
			return nil, fmt.Errorf("module: Objects[%d]: %w", i, err)
		}
	}
	return spec.Symbols(), nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}

// kbuild returns the Kbuild file: one composite module. Each prebuilt object
// is copied from its _shipped file with if_changed, so that Kbuild writes the
// .cmd file modpost reads for every object of a module.
func kbuild(spec Spec) string {
	var b strings.Builder
	objs := []string{"livesplice-helper.o", "livesplice-meta.o"}
	for i := range spec.Objects {
		objs = append(objs, patchObject(i))
	}
	fmt.Fprintf(&b, "# Generated by livesplice for update %s; do not edit.\n", spec.ID)
	fmt.Fprintf(&b, "obj-m := %s.o\n%s-y := %s\n", spec.Name, spec.Name, strings.Join(objs, " "))
	for i := range spec.Objects {
		o := patchObject(i)
		fmt.Fprintf(&b, "\ntargets += %s\n$(obj)/%s: $(src)/%s_shipped FORCE\n\t$(call if_changed,copy)\n", o, o, o)
	}
	return b.String()
}

// cstring returns s as a C string literal.
func cstring(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f || c == '?':
			// Octal escapes take at most three digits, so they never
			// swallow the next character; '?' avoids trigraphs.
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func clong(v int64) string {
	if v == math.MinInt64 {
		return "(-0x7fffffffffffffffL - 1)"
	}
	return fmt.Sprintf("%dL", v)
}

// meta returns the generated C file with the update's metadata. spec must be
// valid.
func meta(spec Spec, owners []string) string {
	syms, index := spec.symbolIndex()
	objs, objIndex := spec.objects()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("// SPDX-License-Identifier: GPL-2.0\n")
	w("/* Generated by livesplice for update %s; do not edit. */\n", spec.ID)
	w("#include <linux/kernel.h>\n#include <linux/module.h>\n#include <linux/moduleparam.h>\n\n")
	w("#include \"livesplice.h\"\n\n")
	if len(spec.Livepatch) > 0 {
		w("MODULE_INFO(livepatch, \"Y\");\n")
	}
	for _, ns := range spec.ImportNS {
		w("MODULE_IMPORT_NS(%s);\n", ns)
	}
	if len(spec.ImportNS) > 0 {
		w("\n")
	}

	// Symbols of the replacement objects, under C names that cannot clash
	// with anything the kernel headers declare.
	objIdent := make(map[string]string)
	ref := func(sym string) string {
		id, ok := objIdent[sym]
		if !ok {
			id = fmt.Sprintf("%sobj_%d", reservedPrefix, len(objIdent))
			objIdent[sym] = id
			w("extern char %s[] __asm__(%s);\n", id, cstring(sym))
		}
		return id
	}
	for _, f := range spec.Functions {
		ref(f.NewSymbol)
	}
	for _, r := range spec.Fixups {
		ref(r.Symbol)
	}
	w("\n")

	w("const char %sid[] = %s;\n", reservedPrefix, cstring(spec.ID))
	w("const char %sdescription[] = %s;\n\n", reservedPrefix, cstring(spec.Description))

	w("const struct ls_object %sobjects[] = {\n", reservedPrefix)
	for i, o := range objs {
		w("\t{ .name = %s },\t/* %d */\n", cstring(o), i)
	}
	w("};\n")
	w("const unsigned int %snr_objects = %d;\n\n", reservedPrefix, len(objs))

	names := make([]string, len(syms))
	w("const char * const %ssymbols[] = {\n", reservedPrefix)
	for i, s := range syms {
		names[i] = s.String()
		w("\t%s,\t/* %d */\n", cstring(s.Name), i)
	}
	w("};\n")
	w("const unsigned int %ssymbol_objects[] = {\n", reservedPrefix)
	for i, s := range syms {
		w("\t%d,\t/* %d: %s */\n", objIndex[s.Object], i, s.Object)
	}
	w("};\n")
	w("const unsigned int %snr_symbols = %d;\n\n", reservedPrefix, len(syms))

	w("unsigned long %saddrs[%d];\n", reservedPrefix, len(syms))
	w("unsigned int %snr_addrs;\n", reservedPrefix)
	w("module_param_array_named(addrs, %saddrs, ulong, &%snr_addrs, 0400);\n", reservedPrefix, reservedPrefix)
	w("MODULE_PARM_DESC(addrs, %s);\n\n", cstring("addresses of (vmlinux) or positions among their module's symbols of that name (0 for another module's export): "+strings.Join(names, ",")))

	w("const struct ls_func %sfuncs[] = {\n", reservedPrefix)
	for _, f := range spec.Functions {
		w("\t{\n\t\t.name = %s,\n\t\t.object = %d,\n\t\t.old_index = %d,\n", cstring(f.Name), objIndex[f.Object], index[pack.Symbol{Name: f.Name, Object: f.Object}])
		w("\t\t.new_name = %s,\n\t\t.new_addr = %s,\n", cstring(f.NewSymbol), objIdent[f.NewSymbol])
		w("\t\t.new_size = %d,\n\t\t.site_offset = %d,\n\t},\n", f.NewSize, f.SiteOffset)
	}
	w("};\n")
	w("const unsigned int %snr_funcs = %d;\n\n", reservedPrefix, len(spec.Functions))

	nparts := 0
	w("const struct ls_part %sparts[] = {\n", reservedPrefix)
	for i, f := range spec.Functions {
		for _, c := range f.Cold {
			w("\t{ .name = %s, .func = %d, .old_index = %d },\n", cstring(c.Name), i, index[pack.Symbol{Name: c.Name, Object: f.Object}])
			nparts++
		}
	}
	w("};\n")
	w("const unsigned int %snr_parts = %d;\n\n", reservedPrefix, nparts)

	w("const struct ls_reloc %srelocs[] = {\n", reservedPrefix)
	for i, r := range spec.Fixups {
		k, _ := kindOf(r.Type)
		w("\t{\n\t\t.symbol = %s,\n\t\t.base = %s,\n\t\t.offset = %#xUL,\n", cstring(r.Symbol), objIdent[r.Symbol], r.Offset)
		w("\t\t.kind = %s,\n\t\t.type = %s,\n", k.cname, cstring(r.Type.String()))
		w("\t\t.target = %s,\n\t\t.target_index = %d,\n\t\t.addend = %s,\n", cstring(r.Target), index[pack.Symbol{Name: r.Target, Object: r.Object}], clong(r.Addend))
		w("\t\t.owner = %d,\n\t},\n", objIndex[owners[i]])
	}
	w("};\n")
	w("const unsigned int %snr_relocs = %d;\n\n", reservedPrefix, len(spec.Fixups))

	w("MODULE_DESCRIPTION(%s);\n", cstring(spec.Description))
	w("MODULE_INFO(livesplice_id, %s);\n", cstring(spec.ID))
	return b.String()
}
