package differ

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
	"github.com/livesplice/livesplice/pack"
)

// The kernel whose headers the Kbuild tests build against; `make
// kernel-inputs` installs them.
const (
	kbuildRelease = "6.1.0-56-amd64"
	kbuildHeaders = "/usr/src/linux-headers-" + kbuildRelease
)

// kfixture is an external module written like kernel code. Functions with a
// "pre:"/"post:" pair differ between the two builds.
const kfixture = `// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/bug.h>
#include <linux/uaccess.h>
#include <linux/jump_label.h>
#include <linux/filter.h>

int lsfixture_level = 3;
EXPORT_SYMBOL_GPL(lsfixture_level);
static char lsfixture_name[16];

/* fentry site, then pr_info (printk) with a string */
noinline int lsfixture_report(int x)
{
	pr_info("REPORT_FMT", x);
	return x + 1;
}
EXPORT_SYMBOL_GPL(lsfixture_report);

/* calls an exported helper */
noinline int lsfixture_parse(const char *s)
{
	int v;

	if (kstrtoint(s, PARSE_BASE, &v))
		return -EINVAL;
	return v;
}
EXPORT_SYMBOL_GPL(lsfixture_parse);

/* a static helper called by another function */
static noinline int lsfixture_scale(int x)
{
	return x * 3 + lsfixture_level;
}

noinline int lsfixture_compute(int x)
{
	return lsfixture_scale(x) - COMPUTE_DELTA;
}
EXPORT_SYMBOL_GPL(lsfixture_compute);

/* reads a global variable */
noinline int lsfixture_level_get(void)
{
	return READ_ONCE(lsfixture_level) * LEVEL_FACTOR;
}
EXPORT_SYMBOL_GPL(lsfixture_level_get);

/* mov $lsfixture_name+N, %rax: an R_X86_64_32S to a named (static)
 * object, through the .bss section symbol, inside the patch site */
noinline void *lsfixture_name_addr(void)
{
	return lsfixture_name + NAME_OFFSET;
}
EXPORT_SYMBOL_GPL(lsfixture_name_addr);

/* mov $.LC0, %rdi: an R_X86_64_32S to a string inside the patch site */
noinline void lsfixture_hello(void)
{
	pr_info("HELLO_MSG");
}
EXPORT_SYMBOL_GPL(lsfixture_hello);

/* WARN_ON: a __bug_table entry */
noinline int lsfixture_check(int x)
{
	WARN_ON(x < CHECK_MIN);
	return x;
}
EXPORT_SYMBOL_GPL(lsfixture_check);

/* copy_from_user (a call to the exported _copy_from_user) and a user
 * access block: __ex_table, .altinstructions (stac/clac, barrier_nospec) */
noinline int lsfixture_copy(const int __user *up, int *out)
{
	int a, b;

	if (copy_from_user(&a, up, sizeof(a)))
		return -EFAULT;
	if (!user_access_begin(up + 1, sizeof(b)))
		return -EFAULT;
	unsafe_get_user(b, up + 1, efault);
	user_access_end();
	*out = a + b * COPY_FACTOR;
	return 0;
efault:
	user_access_end();
	return -EFAULT;
}
EXPORT_SYMBOL_GPL(lsfixture_copy);

/* static branches: __jump_table, keys the kernel exports */
DEFINE_STATIC_KEY_FALSE(lsfixture_key_exported);
EXPORT_SYMBOL_GPL(lsfixture_key_exported);

noinline int lsfixture_branch(int x)
{
	/* keeps the jump labels out of the patch site */
	x += READ_ONCE(lsfixture_level);
	if (static_branch_unlikely(&lsfixture_key_exported))
		return x + BRANCH_DELTA;
	if (static_branch_unlikely(&bpf_stats_enabled_key))
		return x * 5;
	return x;
}
EXPORT_SYMBOL_GPL(lsfixture_branch);

/* a static branch on a key nobody exports */
static DEFINE_STATIC_KEY_FALSE(lsfixture_key_static);

noinline int lsfixture_static_branch(int x)
{
	x += READ_ONCE(lsfixture_level);
	if (static_branch_unlikely(&lsfixture_key_static))
		return x + STATIC_DELTA;
	return x;
}
EXPORT_SYMBOL_GPL(lsfixture_static_branch);

MODULE_LICENSE("GPL");
`

// kfixtureVariant fills in the placeholders of kfixture.
func kfixtureVariant(post bool) string {
	vals := [][3]string{
		{"REPORT_FMT", `lsfixture: report %d\n`, `lsfixture: patched report %d\n`},
		{"PARSE_BASE", "10", "0"},
		{"COMPUTE_DELTA", "7", "8"},
		{"LEVEL_FACTOR", "1", "2"},
		{"NAME_OFFSET", "1", "2"},
		{"HELLO_MSG", `lsfixture: hello\n`, `lsfixture: hello, world\n`},
		{"CHECK_MIN", "0", "-1"},
		{"COPY_FACTOR", "3", "4"},
		{"BRANCH_DELTA", "1", "2"},
		{"STATIC_DELTA", "1", "2"},
	}
	src := kfixture
	for _, v := range vals {
		val := v[1]
		if post {
			val = v[2]
		}
		src = strings.ReplaceAll(src, v[0], val)
	}
	return src
}

// kbuild builds each source as the external module lsfixture against the
// kernel headers, all in parallel, with the flags the differ needs, and
// returns the objects Kbuild produced (objtool has run on them).
func kbuild(t *testing.T, srcs ...string) []string {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(kbuildHeaders, "Makefile")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("kernel headers %s are missing (%v): run `make kernel-inputs` to install linux-headers-%s",
			kbuildHeaders, err, kbuildRelease)
	}
	objs := make([]string, len(srcs))
	errs := make([]error, len(srcs))
	var wg sync.WaitGroup
	for i, src := range srcs {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("v%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string]string{"lsfixture.c": src, "Kbuild": "obj-m := lsfixture.o\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		objs[i] = filepath.Join(dir, "lsfixture.o")
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("make", "-C", kbuildHeaders, "M="+dir, "CC=gcc-12",
				"KCFLAGS=-ffunction-sections -fdata-sections", "modules")
			cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MFLAGS=")
			out, err := cmd.CombinedOutput()
			if err == nil && bytes.Contains(out, []byte("warning:")) {
				err = errors.New("the build warned")
			}
			if err != nil {
				errs[i] = fmt.Errorf("make -C %s M=%s modules: %v\n%s", kbuildHeaders, dir, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

func open(t *testing.T, path string) *elfobj.File {
	t.Helper()
	f, err := elfobj.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestKernelObject diffs and extracts real Kbuild objects: an external
// module built twice against the kernel headers, with objtool's sections
// (.orc_unwind, .return_sites, __mcount_loc, ...), exports and __bug_table.
func TestKernelObject(t *testing.T) {
	paths := kbuild(t, kfixtureVariant(false), kfixtureVariant(true))
	pre, post := open(t, paths[0]), open(t, paths[1])
	for _, sec := range []string{".orc_unwind", ".orc_unwind_ip", ".return_sites", "__mcount_loc", "__bug_table"} {
		if pre.Section(sec) == nil {
			t.Fatalf("the Kbuild object has no %s: not the object this test is about", sec)
		}
	}

	t.Run("self", func(t *testing.T) {
		cs, err := Diff(pre, open(t, paths[0]))
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Changed)+len(cs.Added)+len(cs.Refused) != 0 {
			t.Errorf("self-diff = %+v, want empty", cs)
		}
	})

	cs, err := Diff(pre, post)
	if err != nil {
		t.Fatal(err)
	}
	const shippable = "lsfixture_branch,lsfixture_check,lsfixture_compute,lsfixture_copy,lsfixture_level_get," +
		"lsfixture_name_addr,lsfixture_parse,lsfixture_report,lsfixture_static_branch"
	if got := names(cs.Changed); got != shippable || len(cs.Added) != 0 {
		t.Errorf("Changed = %q, Added = %q; want Changed %q, nothing added", got, names(cs.Added), shippable)
	}
	wantRefused := []Refusal{
		{Kind: RefuseSite, Symbol: "lsfixture_hello", Section: ".text.unlikely.lsfixture_hello",
			Reason: "the loader cannot compute the bytes at the patch site: they reference a string"},
	}
	if len(cs.Refused) != len(wantRefused) {
		t.Errorf("Refused = %+v, want %+v", cs.Refused, wantRefused)
	}
	for i := 0; i < len(cs.Refused) && i < len(wantRefused); i++ {
		got, want := cs.Refused[i], wantRefused[i]
		if got.Kind != want.Kind || got.Symbol != want.Symbol || got.Section != want.Section || !strings.Contains(got.Reason, want.Reason) {
			t.Errorf("Refused[%d] = %+v, want %+v", i, got, want)
		}
	}
	var re *RefusedError
	if _, err := Extract(cs, ExtractOptions{Prefix: "ls0_"}, &bytes.Buffer{}); !errors.As(err, &re) || len(re.Refused) != 1 {
		t.Errorf("Extract(changeset with refusals) = %v, want a RefusedError with the Diff refusal", err)
	}

	// Without the target's entry sizes, functions with entries that must
	// be carried are refused.
	_, err = Extract(cs.only(cs.Changed), ExtractOptions{Prefix: "ls0_"}, &bytes.Buffer{})
	refusedSyms := map[string]bool{}
	if errors.As(err, &re) {
		for _, r := range re.Refused {
			if strings.Contains(r.Reason, "not supported without the target kernel's entry sizes") {
				refusedSyms[r.Symbol] = true
			}
		}
	}
	if len(refusedSyms) != 4 || !refusedSyms["lsfixture_check"] || !refusedSyms["lsfixture_copy"] || !refusedSyms["lsfixture_branch"] {
		t.Errorf("Extract(special entries, no sizes) = %v, want check, copy, branch, static_branch refused", err)
	}
	var plain []Function
	for _, fn := range cs.Changed {
		switch fn.Name {
		case "lsfixture_check", "lsfixture_copy", "lsfixture_branch", "lsfixture_static_branch":
		default:
			plain = append(plain, fn)
		}
	}
	x, obj := extractChangeset(t, cs.only(plain))
	checkKernelExtraction(t, x, obj)

	t.Run("special", func(t *testing.T) { checkSpecialExtraction(t, cs, pre, post) })
}

// checkKernelExtraction checks the extraction of the shippable changes.
func checkKernelExtraction(t *testing.T, x *Extraction, obj *elfobj.File) {
	t.Helper()
	var got []string
	for _, r := range x.Functions {
		got = append(got, r.Name)
		if r.SiteOffset != 5 || r.NewSymbol != "ls0_"+r.Name || len(r.PreCode) != r.Size || r.Size < 10 {
			t.Errorf("%s: SiteOffset %d NewSymbol %s PreCode %d bytes PreSize %d; want 5, ls0_%s, PreCode of PreSize",
				r.Name, r.SiteOffset, r.NewSymbol, len(r.PreCode), r.Size, r.Name)
		}
		if len(r.PreRelocs) == 0 || r.PreRelocs[0] != (pack.Reloc{Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: "__fentry__", Addend: -4}) {
			t.Errorf("%s: PreRelocs = %+v, want the fentry call first", r.Name, r.PreRelocs)
		}
		text := obj.Section(".text.ls0_" + r.Name)
		if text == nil || !bytes.HasPrefix(text.Data, nopFentry[:]) {
			t.Errorf("%s: no .text.ls0_%s starting with the 5-byte NOP", r.Name, r.Name)
		}
		if r.Name == "lsfixture_name_addr" && !slices.Contains(r.PreRelocs,
			pack.Reloc{Offset: 8, Type: elf.R_X86_64_32S, Symbol: "lsfixture_name", Addend: 1}) {
			t.Errorf("lsfixture_name_addr: PreRelocs = %+v, want the 32S in the site named lsfixture_name+1 for kallsyms", r.PreRelocs)
		}
	}
	if strings.Join(got, ",") != "lsfixture_compute,lsfixture_level_get,lsfixture_name_addr,lsfixture_parse,lsfixture_report" {
		t.Errorf("Functions = %v", got)
	}

	wantFixups := []pack.Fixup{
		{Symbol: "ls0_lsfixture_report", Type: elf.R_X86_64_PLT32, Target: "_printk", Addend: -4},
		{Symbol: "ls0_lsfixture_parse", Type: elf.R_X86_64_PLT32, Target: "kstrtoint", Addend: -4},
		{Symbol: "ls0_lsfixture_parse", Type: elf.R_X86_64_PLT32, Target: "__stack_chk_fail", Addend: -4},
		{Symbol: "ls0_lsfixture_compute", Type: elf.R_X86_64_PC32, Target: "lsfixture_scale", Addend: -4},
		{Symbol: "ls0_lsfixture_level_get", Type: elf.R_X86_64_PC32, Target: "lsfixture_level", Addend: -4},
		{Symbol: "ls0_lsfixture_name_addr", Type: elf.R_X86_64_32S, Target: "lsfixture_name", Addend: 2},
	}
	for _, want := range wantFixups {
		if !slices.ContainsFunc(x.Fixups, func(f pack.Fixup) bool {
			return f.Symbol == want.Symbol && f.Type == want.Type && f.Target == want.Target && f.Addend == want.Addend
		}) {
			t.Errorf("no fixup %+v in %+v", want, x.Fixups)
		}
	}
	thunks := map[string]bool{}
	for _, fx := range x.Fixups {
		switch fx.Target {
		case "__fentry__":
			t.Errorf("fentry call kept as a fixup: %+v", fx)
		case "__x86_return_thunk":
			thunks[fx.Symbol] = true
		}
	}
	if len(thunks) != len(x.Functions) {
		t.Errorf("return thunk fixups for %v, want every function", thunks)
	}

	// The patched string is copied; the report code refers to it.
	text := obj.Section(".text.ls0_lsfixture_report")
	if text == nil || !slices.ContainsFunc(text.Relocs, func(r elfobj.Reloc) bool {
		return r.Type == elf.R_X86_64_32S && r.Sym.Section != nil &&
			bytes.Contains(r.Sym.Section.Data, []byte("lsfixture: patched report %d\n\x00"))
	}) {
		t.Errorf("report does not refer to a copy of the patched string")
	}

	// ORC: one ip entry (a PC32 to extracted code) per 6-byte unwind entry,
	// for every function.
	ip, unwind := obj.Section(".orc_unwind_ip"), obj.Section(".orc_unwind")
	if ip == nil || unwind == nil || len(ip.Data)/4 != len(unwind.Data)/6 || len(ip.Relocs) != len(ip.Data)/4 {
		t.Fatalf("ORC entries not carried: ip %v unwind %v", ip, unwind)
	}
	covered := map[string]bool{}
	for _, r := range ip.Relocs {
		if r.Type != elf.R_X86_64_PC32 || r.Sym.Section == nil || !strings.HasPrefix(r.Sym.Section.Name, ".text.ls0_") {
			t.Errorf("ORC ip relocation %+v does not point at extracted code", r)
			continue
		}
		covered[strings.TrimPrefix(r.Sym.Section.Name, ".text.ls0_")] = true
	}
	for _, name := range got {
		if !covered[name] {
			t.Errorf("no ORC entry for %s", name)
		}
	}
}
