package differ

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/module"
	"github.com/livesplice/livesplice/pack"
)

// checkSpecialExtraction extracts the fixture's functions with special
// entries, with the entry sizes and exports of the target kernel.
func checkSpecialExtraction(t *testing.T, cs *Changeset, pre, post *elfobj.File) {
	ctx := context.Background()
	sizes, err := module.EntrySizes(ctx, kbuildHeaders)
	if err != nil {
		t.Fatal(err)
	}
	exported, err := module.Exported(kbuildHeaders)
	if err != nil {
		t.Fatal(err)
	}
	// As if the running kernel exported the fixture's key, as vmlinux
	// exports bpf_stats_enabled_key.
	exported["lsfixture_key_exported"] = true
	opts := ExtractOptions{Prefix: "ls0_", EntrySizes: sizes, Exported: exported}

	var re *RefusedError
	_, err = Extract(cs.only(cs.Changed), opts, &bytes.Buffer{})
	const keyReason = "jump label key lsfixture_key_static is not exported: the module loader cannot resolve it before the update's init runs"
	if !errors.As(err, &re) || len(re.Refused) != 1 || re.Refused[0].Symbol != "lsfixture_static_branch" || re.Refused[0].Reason != keyReason {
		t.Fatalf("ExtractWith(static key) = %v, want one refusal of lsfixture_static_branch: %s", err, keyReason)
	}

	var keep []Function
	for _, fn := range cs.Changed {
		if fn.Name != "lsfixture_static_branch" {
			keep = append(keep, fn)
		}
	}
	var buf bytes.Buffer
	x, err := Extract(cs.only(keep), opts, &buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entries carried: %v", x.Entries)
	for sec, min := range map[string]int{"__ex_table": 1, "__bug_table": 1, "__jump_table": 2, ".altinstructions": 2,
		".orc_unwind_ip": 9, ".return_sites": 8} {
		if x.Entries[sec] < min {
			t.Errorf("%d %s entries carried, want at least %d", x.Entries[sec], sec, min)
		}
	}
	if x.Entries["__bug_table"] != 1 || x.Entries["__jump_table"] != 2 {
		t.Errorf("carried %d bug entries and %d jump entries, want 1 and 2 (the fixture's)", x.Entries["__bug_table"], x.Entries["__jump_table"])
	}
	for _, fx := range x.Fixups {
		if exported[fx.Target] {
			t.Errorf("fix-up to exported %s: want an ELF relocation", fx.Target)
		}
	}
	for _, want := range []string{"_copy_from_user", "__x86_return_thunk", "_printk", "kstrtoint"} {
		if !slices.ContainsFunc(x.Linked, func(f pack.Fixup) bool { return f.Target == want }) {
			t.Errorf("no ELF relocation to %s in %+v", want, x.Linked)
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "special.o")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ld", "-r", "-o", filepath.Join(dir, "linked.o"), path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("ld -r: %v\n%s", err, out)
	}
	relocs, err := exec.Command("readelf", "-rW", path).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf -rW: %v\n%s", err, relocs)
	}
	for _, re := range []string{
		`(?s)'.rela__jump_table'.*R_X86_64_PC64 +0+ lsfixture_key_exported`,
		`(?s)'.rela__jump_table'.*R_X86_64_PC64 +0+ bpf_stats_enabled_key`,
		`(?s)'.rela__ex_table'.*R_X86_64_PC32 +0+ \.text\.ls0_lsfixture_copy`,
		`(?s)'.rela.altinstructions'.*R_X86_64_PC32 +0+ \.altinstr_replacement`,
		`(?s)'.rela.text.ls0_lsfixture_copy'.*R_X86_64_PLT32 +0+ _copy_from_user - 4`,
	} {
		if !regexp.MustCompile(re).Match(relocs) {
			t.Errorf("readelf -r lacks %s", re)
		}
	}
	if t.Failed() {
		t.Logf("readelf -rW:\n%s", relocs)
	}

	obj, err := elfobj.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range obj.Symbols {
		if s != nil && s.Name != "" && s.Section == nil && !exported[s.Name] {
			t.Errorf("undefined symbol %s is not exported: modpost and the module loader would refuse it", s.Name)
		}
	}
	checkEntries(t, obj, post, sizes)
}

// checkEntries checks the written entries field by field against the
// post object's.
func checkEntries(t *testing.T, obj, post *elfobj.File, sizes map[string]int) {
	t.Helper()
	target := func(sec *elfobj.Section, off uint64) (string, int64) {
		for _, r := range sec.Relocs {
			if r.Offset == off && r.Sym != nil {
				name := r.Sym.Name
				if r.Sym.Section != nil && r.Sym.IsSection() {
					name = r.Sym.Section.Name
				}
				return name, r.Addend
			}
		}
		return "", 0
	}
	// The bug entry: the ud2 of lsfixture_check, the file name and the
	// line of the post build.
	bug := obj.Section("__bug_table")
	if bug == nil || len(bug.Data) != sizes["__bug_table"] {
		t.Fatalf("__bug_table = %v, want one entry of %d bytes", bug, sizes["__bug_table"])
	}
	if name, _ := target(bug, 0); name != ".text.ls0_lsfixture_check" {
		t.Errorf("bug entry points at %s, want .text.ls0_lsfixture_check", name)
	}
	name, add := target(bug, 4)
	file := obj.Section(name)
	if file == nil || !bytes.HasPrefix(file.Data[add+4:], []byte(post.Name[strings.LastIndex(post.Name, "/")+1:]+"\x00")) &&
		!bytes.Contains(file.Data, []byte("lsfixture.c\x00")) {
		t.Errorf("bug entry file points at %s%+d, want a copy of the file name", name, add)
	}
	pb := post.Section("__bug_table")
	if pb == nil || !bytes.Equal(pb.Data[8:sizes["__bug_table"]], bug.Data[8:]) {
		t.Errorf("bug entry line/flags %x, want the post build's %x", bug.Data[8:], pb.Data[8:sizes["__bug_table"]])
	}
	// Jump entries: code and target in lsfixture_branch, the key by name.
	jt := obj.Section("__jump_table")
	es := uint64(sizes["__jump_table"])
	var keys []string
	for at := uint64(0); jt != nil && at < uint64(len(jt.Data)); at += es {
		for _, f := range []uint64{0, 4} {
			if name, _ := target(jt, at+f); name != ".text.ls0_lsfixture_branch" {
				t.Errorf("jump entry %d field %d points at %s", at/es, f, name)
			}
		}
		k, _ := target(jt, at+8)
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "bpf_stats_enabled_key,lsfixture_key_exported" {
		t.Errorf("jump entry keys = %v", keys)
	}
	// Alternatives: instruction in extracted code, replacement copied with
	// its lengths.
	alt, repl := obj.Section(".altinstructions"), obj.Section(".altinstr_replacement")
	if alt == nil || repl == nil {
		t.Fatalf(".altinstructions %v .altinstr_replacement %v", alt, repl)
	}
	as, rl := uint64(sizes[".altinstructions"]), uint64(sizes["alt_instr.replacementlen"])
	for at := uint64(0); at < uint64(len(alt.Data)); at += as {
		if name, _ := target(alt, at); !strings.HasPrefix(name, ".text.ls0_") {
			t.Errorf("alternative %d points at %s", at/as, name)
		}
		name, add := target(alt, at+4)
		if name != ".altinstr_replacement" || add+int64(alt.Data[at+rl]) > int64(len(repl.Data)) {
			t.Errorf("alternative %d replacement %s%+d len %d, outside the copied replacement (%d bytes)", at/as, name, add, alt.Data[at+rl], len(repl.Data))
		}
	}
	if ex := obj.Section("__ex_table"); ex != nil {
		for at := uint64(0); at < uint64(len(ex.Data)); at += uint64(sizes["__ex_table"]) {
			for _, f := range []uint64{0, 4} {
				if name, _ := target(ex, at+f); name != ".text.ls0_lsfixture_copy" {
					t.Errorf("exception entry field %d points at %s", f, name)
				}
			}
		}
	}
	if sec := obj.Section(".orc_unwind"); sec == nil || len(sec.Data)/sizes[".orc_unwind"] != len(obj.Section(".orc_unwind_ip").Data)/sizes[".orc_unwind_ip"] {
		t.Errorf(".orc_unwind and .orc_unwind_ip differ in entries")
	}
	_ = elf.R_X86_64_PC64
}
