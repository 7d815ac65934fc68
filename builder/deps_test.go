package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/internal/cache"
)

func TestShellCommands(t *testing.T) {
	tests := []struct {
		line string
		want [][]string
	}{
		{`gcc -c -o a.o a.c`, [][]string{{"gcc", "-c", "-o", "a.o", "a.c"}}},
		{`set -e;  echo '  CC      a.o'; trap 'rm -f a.o; kill -s HUP $$' HUP; gcc -DX='"y z"' -c -o a.o a.c  ; ./objtool a.o`,
			[][]string{{"set", "-e"}, {"echo", "  CC      a.o"}, {"trap", "rm -f a.o; kill -s HUP $$", "HUP"},
				{"gcc", `-DX="y z"`, "-c", "-o", "a.o", "a.c"}, {"./objtool", "a.o"}}},
		{`printf "fs/%s " a.o b.o | xargs ar cDPrST fs/built-in.a`,
			[][]string{{"printf", "fs/%s ", "a.o", "b.o"}, {"xargs", "ar", "cDPrST", "fs/built-in.a"}}},
		{`printf '%s\n' m.o | awk '!x[$0]++ { print("d/"$0) }' > d/m.mod`,
			[][]string{{"printf", `%s\n`, "m.o"}, {"awk", `!x[$0]++ { print("d/"$0) }`, ">", "d/m.mod"}}},
		{`a "b\"c" d\ e && f || (g) # h`, [][]string{{"a", `b"c`, "d e"}, {"f"}, {"g"}}},
		{`x '' y`, [][]string{{"x", "", "y"}}},
	}
	for _, tt := range tests {
		if got := shellCommands(tt.line); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("shellCommands(%q) =\n%q\nwant\n%q", tt.line, got, tt.want)
		}
	}
}

// A dry run as Kbuild prints it: a compile (with the fixdep line that
// repeats it quoted), a compile of HOSTCC, an assembler object of a
// module, both forms of archive, and a .mod file.
const dryRunText = `set -e;  echo '  CC      fs/proc/cmdline.o';    trap 'rm -f fs/proc/cmdline.o; trap - HUP; kill -s HUP $$' HUP; gcc-12 -Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -I./include -include ./include/linux/kconfig.h -DKBUILD_MODFILE='"fs/proc/proc"' -DKBUILD_BASENAME='"cmdline"' -DKBUILD_MODNAME='"proc"' -D__KBUILD_MODNAME=kmod_proc -c -o fs/proc/cmdline.o fs/proc/cmdline.c   ; ./tools/objtool/objtool --orc fs/proc/cmdline.o; scripts/basic/fixdep fs/proc/.cmdline.o.d fs/proc/cmdline.o 'gcc-12 -Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -c -o fs/proc/cmdline.o fs/proc/cmdline.c' > fs/proc/.cmdline.o.cmd
set -e;  echo '  HOSTCC  scripts/mod/modpost.o'; gcc -O2 -c -o scripts/mod/modpost.o scripts/mod/modpost.c
gcc-12 -Wp,-MMD,arch/x86/kvm/vmx/.vmenter.o.d -nostdinc -I./include -D__ASSEMBLY__ -iquote arch/x86/kvm  -DMODULE  -c -o arch/x86/kvm/vmx/vmenter.o arch/x86/kvm/vmx/vmenter.S
gcc-12 -nostdinc -I./include -DMODULE -DKBUILD_MODNAME='"ext4"' -c -o fs/ext4/inode.o fs/ext4/inode.c
gcc-12 -nostdinc -I./include -c -o drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.o drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.c
gcc-12 -nostdinc -I./include -c -o arch/x86/entry/vdso/vgetcpu.o arch/x86/entry/vdso/vgetcpu.c
set -e; rm -f fs/proc/built-in.a;  printf "fs/proc/%s " cmdline.o | xargs ar cDPrST fs/proc/built-in.a; printf '%s\n' 'cmd_fs/proc/built-in.a := rm -f fs/proc/built-in.a' > fs/proc/.built-in.a.cmd
set -e; rm -f drivers/gpu/built-in.a; ar cDPrST drivers/gpu/built-in.a drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.o drivers/gpu/drm/built-in.a
set -e; printf '%s\n'   vmx/vmx.o vmx/vmenter.o | awk '!x[$0]++ { print("arch/x86/kvm/"$0) }' > arch/x86/kvm/kvm-intel.mod
a continued \
line that is not a command
`

func TestParseDryRun(t *testing.T) {
	dr, err := parseDryRun(strings.NewReader(dryRunText), "gcc-12")
	if err != nil {
		t.Fatal(err)
	}
	idx := buildIndexFor(t, dr)
	type want struct {
		src, module string
		builtin     bool
	}
	wants := map[string]want{
		"fs/proc/cmdline.o":                                  {"fs/proc/cmdline.c", "", true},
		"arch/x86/kvm/vmx/vmenter.o":                         {"arch/x86/kvm/vmx/vmenter.S", "kvm_intel", false},
		"fs/ext4/inode.o":                                    {"fs/ext4/inode.c", "ext4", false},
		"drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.o": {"drivers/gpu/drm/amd/display/dc/core/dc.c", "", true},
		"arch/x86/entry/vdso/vgetcpu.o":                      {"arch/x86/entry/vdso/vgetcpu.c", "", false},
	}
	if len(idx.Objects) != len(wants) {
		t.Errorf("%d objects, want %d (HOSTCC compiles are not the kernel's)", len(idx.Objects), len(wants))
	}
	for _, o := range idx.Objects {
		w, ok := wants[o.Path]
		if !ok {
			t.Errorf("unexpected object %s", o.Path)
			continue
		}
		if got := (want{o.Source, o.Module, o.Builtin}); got != w {
			t.Errorf("%s: %+v, want %+v", o.Path, got, w)
		}
	}
	o, ok := idx.Lookup("fs/proc/cmdline.o")
	if !ok {
		t.Fatal("Lookup(fs/proc/cmdline.o) found nothing")
	}
	argv := idx.Argv(o)
	if argv[0] != "gcc-12" || !slices.Contains(argv, `-DKBUILD_MODNAME="proc"`) || argv[len(argv)-1] != "fs/proc/cmdline.c" {
		t.Errorf("command of fs/proc/cmdline.o = %q", argv)
	}
}

// buildIndexFor makes the index of dr over an empty tree.
func buildIndexFor(t *testing.T, dr *dryRun) *DepIndex {
	t.Helper()
	ix, err := buildIndex(t.TempDir(), dr)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestDryRunErrors(t *testing.T) {
	expected := "make[1]: Entering directory '/t'\nmake[1]: *** No rule to make target 'vmlinux.a', needed by 'vmlinux.o'.\nmake: *** [Makefile:1262: vmlinux_o] Error 2\n"
	if bad := dryRunErrors(expected); len(bad) != 0 {
		t.Errorf("the dry run's usual errors are taken as failures: %q", bad)
	}
	other := expected + "make[3]: *** No rule to make target 'drivers/x/gen.h', needed by 'drivers/x/a.o'.  Stop.\n"
	if bad := dryRunErrors(other); len(bad) != 1 || !strings.Contains(bad[0], "drivers/x/gen.h") {
		t.Errorf("dryRunErrors(...) = %q, want the one about drivers/x/gen.h", bad)
	}
}

func TestScanDirectives(t *testing.T) {
	src := `#include <linux/a.h>
  #  include "b.h" /* comment */
#include_next <linux/c.h>
#import <d.h>
#define NAME_H <linux/named.h>
#define QUOTED "quoted.h"
#define NOT_A_HEADER "text"
#include NAME_H
#include TRACE_INCLUDE(TRACE_INCLUDE_FILE)
#include FOO(bar)
#define TRACE_SYSTEM sys
#define TRACE_INCLUDE_PATH ../../drivers/x
#define MULTI \
	"m.h"
int x; // #include <not/a/directive.h> is not at the start of a line
`
	want := []directive{
		{name: "linux/a.h"},
		{name: "b.h", quote: true},
		{name: "linux/c.h", next: true},
		{name: "d.h"},
		{name: "linux/named.h"},
		{name: "quoted.h", quote: true},
		{opaque: true},
		{name: "m.h", quote: true},
		{name: "trace/events/sys.h"},
		{name: "../../drivers/x/sys.h", quote: true, from: traceIncludeDir},
	}
	if got := scanDirectives([]byte(src)); !reflect.DeepEqual(got, want) {
		t.Errorf("scanDirectives =\n%+v\nwant\n%+v", got, want)
	}
	// TRACE_INCLUDE_FILE names the file define_trace.h re-includes.
	got := scanDirectives([]byte("#define TRACE_SYSTEM s\n#define TRACE_INCLUDE_FILE other\n"))
	if want := []directive{{name: "trace/events/other.h"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("with TRACE_INCLUDE_FILE: %+v, want %+v", got, want)
	}
}

func TestSearchPathOf(t *testing.T) {
	argv := strings.Fields(`gcc -nostdinc -I./arch/x86/include -Iinclude -I /abs/dir -iquote fs/ext4 -isystem sys -idirafter after ` +
		`-include ./include/linux/kconfig.h -imacros m.h -DNAME="x.h" -DOTHER=1 -I../outside -c -o a.o a.c`)
	sp := searchPathOf(argv)
	want := searchPath{
		quote:   []string{"fs/ext4"},
		bracket: []string{"arch/x86/include", "include", "sys", "after"},
		forced:  []string{"include/linux/kconfig.h", "m.h"},
		defined: []string{`"x.h"`},
	}
	if !reflect.DeepEqual(sp, want) {
		t.Errorf("searchPathOf = %+v, want %+v", sp, want)
	}
}

func TestCmdFileCommand(t *testing.T) {
	data := []byte("cmd_fs/x.o := gcc-12 -DA='\"$$x\"' -DH='$(pound)' -c -o fs/x.o fs/x.c\n\nsource_fs/x.o := fs/x.c\n")
	got, ok := cmdFileCommand(data)
	if want := `gcc-12 -DA='"$x"' -DH='#' -c -o fs/x.o fs/x.c`; !ok || got != want {
		t.Errorf("cmdFileCommand = %q, %v; want %q", got, ok, want)
	}
	if _, ok := cmdFileCommand([]byte("deps_x := a\n")); ok {
		t.Error("a line that is not cmd_ was taken as a command")
	}
}

// synthTree writes a small tree with a Makefile that builds it the way
// Kbuild does (one compile command per object, an archive of the built-in
// ones, a .mod file, a generated source), prepared as far as the index
// cares (a stamp), and returns it.
func synthTree(t *testing.T) *Tree {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc: %v", err)
	}
	dir := t.TempDir()
	files := map[string]string{
		stampName: `{"release":"test"}`,
		"Makefile": `CFLAGS := -nostdinc -Iarch/inc -Iinclude -include include/linux/forced.h
OBJS := fs/a.o fs/b.o drv/t.o gen.o
all: built-in.a drv/mymod.ko vdso.o
built-in.a: $(OBJS)
	ar cDPrST built-in.a $(OBJS)
drv/mymod.ko: drv/m.o
	printf '%s\n' m.o | awk '!x[$$0]++ { print("drv/"$$0) }' > drv/mymod.mod
	ld -r -o $@ drv/m.o
drv/m.o: MODFLAGS := -DMODULE '-DKBUILD_MODNAME="mymod"'
%.o: %.c
	$(CC) $(CFLAGS) $(MODFLAGS) -c -o $@ $<
gen.c: gen.in
	cp gen.in gen.c
`,
		"include/linux/forced.h":   "#define FORCED 1\n",
		"include/linux/x.h":        "#include <linux/y.h>\nstatic inline int x(void) { return Y; }\n",
		"include/linux/y.h":        "#define Y 2\n",
		"include/linux/off.h":      "#define OFF 1\n",
		"include/linux/name.h":     "#define NAME_H <sub/named.h> /* not linux/: gcc defines linux as 1 */\n",
		"include/sub/named.h":      "#define NAMED 3\n",
		"include/linux/computed.h": "#include NAME_H\n",
		"include/linux/nx.h":       "#define NX 4\n",
		"arch/inc/linux/nx.h":      "#include_next <linux/nx.h>\n",
		"include/trace/define.h": `#define __stringify_1(x) #x
#define __stringify(x) __stringify_1(x)
#ifndef TRACE_INCLUDE_PATH
#define __TRACE_INCLUDE(system) <trace/events/system.h>
#else
#define __TRACE_INCLUDE(system) __stringify(TRACE_INCLUDE_PATH/system.h)
#endif
#define TRACE_INCLUDE(system) __TRACE_INCLUDE(system)
#include TRACE_INCLUDE(TRACE_INCLUDE_FILE)
`,
		"include/trace/events/ev.h":  "#define TRACE_SYSTEM ev\n#define TRACE_INCLUDE_FILE ev2\n#include <trace/define.h>\n",
		"include/trace/events/ev2.h": "#define EV2 5\n",
		"fs/local.h":                 "#define LOCAL 6\n",
		"fs/a.c":                     "#include \"local.h\"\n#include <linux/x.h>\n#ifdef CONFIG_OFF\n#include <linux/off.h>\n#endif\nint a(void) { return x() + LOCAL; }\n",
		"fs/b.c":                     "#include <linux/name.h>\n#include <linux/computed.h>\nint b(void) { return NAMED; }\n",
		"drv/m.c":                    "#include <linux/nx.h>\nint m(void) { return NX; }\n",
		"drv/t.c":                    "#include <trace/events/ev.h>\nint tr(void) { return EV2; }\n",
		"gen.in":                     "#include <linux/y.h>\nint g(void) { return Y; }\n",
		"vdso.c":                     "#include <linux/y.h>\nint v(void) { return Y; }\n",
		// An object built earlier: make -n does not print it, its .o.cmd says how.
		"old.c":      "#include <linux/off.h>\nint o(void) { return OFF; }\n",
		".old.o.cmd": "cmd_old.o := gcc -nostdinc -Iinclude -DH='$(pound)' -c -o old.o old.c\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Tree{Dir: dir, Release: "test", CC: "gcc"}
}

// TestDepIndex makes the index of a small tree with make -n and the scan,
// then looks up the users of each file: the scan's candidates, and what
// the preprocessor confirms.
func TestDepIndex(t *testing.T) {
	tree := synthTree(t)
	ctx := context.Background()
	ix, err := tree.DepIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, o := range ix.Objects {
		paths = append(paths, o.Path)
	}
	if want := []string{"drv/m.o", "drv/t.o", "fs/a.o", "fs/b.o", "gen.o", "old.o", "vdso.o"}; !reflect.DeepEqual(paths, want) {
		t.Fatalf("objects %v, want %v", paths, want)
	}
	if _, err := os.Stat(filepath.Join(tree.Dir, "gen.c")); err != nil {
		t.Errorf("the generated source was not made: %v", err)
	}
	kinds := map[string]string{}
	for _, o := range ix.Objects {
		kinds[o.Path] = map[bool]string{true: "vmlinux", false: "foreign"}[o.Builtin]
		if o.Module != "" {
			kinds[o.Path] = "module " + o.Module
		}
	}
	if want := map[string]string{"drv/m.o": "module mymod", "drv/t.o": "vmlinux", "fs/a.o": "vmlinux", "fs/b.o": "vmlinux",
		"gen.o": "vmlinux", "old.o": "foreign", "vdso.o": "foreign"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}

	tests := []struct {
		files      []string
		candidates []string
		dependents []string
	}{
		{[]string{"fs/local.h"}, []string{"fs/a.o"}, []string{"fs/a.o"}},
		{[]string{"include/linux/x.h"}, []string{"fs/a.o"}, []string{"fs/a.o"}},
		{[]string{"include/linux/y.h"}, []string{"fs/a.o", "gen.o", "vdso.o"}, []string{"fs/a.o", "gen.o", "vdso.o"}},
		// Behind #ifdef CONFIG_OFF in a.c: a candidate, not a dependent.
		{[]string{"include/linux/off.h"}, []string{"fs/a.o", "old.o"}, []string{"old.o"}},
		{[]string{"include/sub/named.h"}, []string{"fs/b.o"}, []string{"fs/b.o"}},
		{[]string{"include/linux/nx.h"}, []string{"drv/m.o"}, []string{"drv/m.o"}},
		{[]string{"arch/inc/linux/nx.h"}, []string{"drv/m.o"}, []string{"drv/m.o"}},
		{[]string{"include/trace/events/ev2.h"}, []string{"drv/t.o"}, []string{"drv/t.o"}},
		{[]string{"include/linux/forced.h"}, []string{"drv/m.o", "drv/t.o", "fs/a.o", "fs/b.o", "gen.o", "vdso.o"},
			[]string{"drv/m.o", "drv/t.o", "fs/a.o", "fs/b.o", "gen.o", "vdso.o"}},
		{[]string{"fs/local.h", "include/linux/nx.h"}, []string{"drv/m.o", "fs/a.o"}, []string{"drv/m.o", "fs/a.o"}},
		{[]string{"include/linux/nobody.h"}, nil, nil},
	}
	for _, tt := range tests {
		var cands []string
		for _, i := range ix.Candidates(tt.files) {
			cands = append(cands, ix.Objects[i].Path)
		}
		if !reflect.DeepEqual(cands, tt.candidates) {
			t.Errorf("Candidates(%v) = %v, want %v", tt.files, cands, tt.candidates)
		}
		deps, err := tree.Dependents(ctx, ix, tt.files)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range deps {
			got = append(got, d.Path)
		}
		if !reflect.DeepEqual(got, tt.dependents) {
			t.Errorf("Dependents(%v) = %v, want %v", tt.files, got, tt.dependents)
		}
	}

	// The index is cached next to the tree for its preparation: without
	// the Makefile it still comes back, the same.
	cached, err := filepath.Glob(tree.Dir + ".deps-*.json.gz")
	if err != nil || len(cached) != 1 {
		t.Fatalf("cached indexes %v (%v), want one", cached, err)
	}
	makefile, _ := os.ReadFile(filepath.Join(tree.Dir, "Makefile"))
	os.Remove(filepath.Join(tree.Dir, "Makefile"))
	again, err := tree.DepIndex(ctx)
	if err != nil {
		t.Fatalf("the cached index was not used: %v", err)
	}
	a, _ := json.Marshal(ix)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Error("the cached index differs from the one made")
	}
	// Another preparation of the tree makes it again, and drops the old one.
	os.WriteFile(filepath.Join(tree.Dir, stampName), []byte(`{"release":"test","cc":"other"}`), 0o644)
	if _, err := tree.DepIndex(ctx); err == nil {
		t.Fatal("a re-prepared tree's index came from the cache")
	}
	os.WriteFile(filepath.Join(tree.Dir, "Makefile"), makefile, 0o644)
	if _, err := tree.DepIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := filepath.Glob(tree.Dir + ".deps-*.json.gz"); len(now) != 1 || now[0] == cached[0] {
		t.Errorf("cached indexes after re-preparing: %v (before: %v), want one new one", now, cached)
	}
}

// TestDepIndexBrokenCmdFile makes the index of a tree where make cannot
// read a kbuild .cmd file (cut short by a killed build): the file is
// removed and make -n runs again, as for a build.
func TestDepIndexBrokenCmdFile(t *testing.T) {
	tree := synthTree(t)
	broken := filepath.Join(tree.Dir, "drv/.m.o.cmd")
	if err := os.WriteFile(broken, []byte("cmd_drv/m.o := gcc -c -o drv/m.o drv/m.c\nm.o)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := filepath.Join(tree.Dir, "Makefile")
	data, err := os.ReadFile(mk)
	if err != nil {
		t.Fatal(err)
	}
	// Kbuild includes the .cmd files of the targets it considers.
	if err := os.WriteFile(mk, append([]byte("-include $(wildcard drv/.*.cmd)\n"), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := tree.DepIndex(context.Background())
	if err != nil {
		t.Fatalf("DepIndex with a broken %s: %v", broken, err)
	}
	if _, err := os.Stat(broken); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broken .cmd file is still there: %v", err)
	}
	found := false
	for _, o := range ix.Objects {
		found = found || o.Path == "drv/m.o"
	}
	if !found {
		t.Error("drv/m.o is not in the index")
	}
}

// TestPatchObjects checks what a patch's files rebuild: .c files their
// object, headers their dependents, foreign objects apart, and a header
// nobody includes is nothing to do.
func TestPatchObjects(t *testing.T) {
	tree := synthTree(t)
	ctx := context.Background()
	tests := []struct {
		files            []string
		objects, foreign []string
		nothing          bool
	}{
		{files: []string{"fs/a.c"}, objects: []string{"fs/a.o"}},
		{files: []string{"fs/a.c", "include/linux/y.h"}, objects: []string{"fs/a.o", "gen.o"}, foreign: []string{"vdso.o"}},
		{files: []string{"include/linux/nx.h", "fs/local.h"}, objects: []string{"drv/m.o", "fs/a.o"}},
		{files: []string{"include/linux/nobody.h"}, nothing: true},
		// a.c names off.h under #ifdef CONFIG_OFF only; old.o is foreign.
		{files: []string{"include/linux/off.h"}, foreign: []string{"old.o"}},
	}
	for _, tt := range tests {
		objects, foreign, err := tree.patchObjects(ctx, "x.patch", tt.files)
		var ne *NothingToDoError
		if tt.nothing {
			if !errors.As(err, &ne) || !strings.Contains(ne.Why, "no object built under this kernel's config includes include/linux/nobody.h") {
				t.Errorf("%v: got %v, want a NothingToDoError saying no object includes it", tt.files, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(objects, tt.objects) || !reflect.DeepEqual(foreign, tt.foreign) {
			t.Errorf("%v: got %v, %v, %v; want %v, %v", tt.files, objects, foreign, err, tt.objects, tt.foreign)
		}
	}
}

func TestSameCode(t *testing.T) {
	dir := t.TempDir()
	compile := func(name, src string) string {
		c, o := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".o")
		if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("gcc", "-O2", "-c", "-o", o, c).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		return o
	}
	base := compile("base", "extern int g;\nint f(int x) { return x + g; }\n")
	tests := []struct {
		name, src string
		same      bool
	}{
		{"comment", "/* a comment */\nextern int g;\nint f(int x) { return x + g; }\n", true},
		{"code", "extern int g;\nint f(int x) { return x * g; }\n", false},
		{"reloc", "extern int h;\nint f(int x) { return x + h; }\n", false},
		{"data", "extern int g;\nint f(int x) { return x + g; }\nint d = 1;\n", false},
	}
	for _, tt := range tests {
		same, err := sameCode(base, compile(tt.name, tt.src))
		if err != nil || same != tt.same {
			t.Errorf("%s: sameCode = %v, %v; want %v", tt.name, same, err, tt.same)
		}
	}
}

func TestCompileError(t *testing.T) {
	out := `  CC      fs/notify/fdinfo.o
In file included from fs/notify/fdinfo.c:18:
./fs/notify/inotify/inotify.h: In function 'inotify_mark_user_mask':
./fs/notify/inotify/inotify.h:39:33: error: 'FSNOTIFY_MARK_FLAG_X' undeclared (first use in this function)
   39 |         if (fsn_mark->flags & FSNOTIFY_MARK_FLAG_X)
make[4]: *** [scripts/Makefile.build:250: fs/notify/fdinfo.o] Error 1
make[3]: *** [scripts/Makefile.build:500: fs/notify] Error 2
`
	e := compileError("x.patch", false, "/tree", out)
	if e.Object != "fs/notify/fdinfo.o" {
		t.Errorf("Object = %q", e.Object)
	}
	if want := "./fs/notify/inotify/inotify.h:39:33: error: 'FSNOTIFY_MARK_FLAG_X' undeclared (first use in this function)"; e.FirstError != want {
		t.Errorf("FirstError = %q, want %q", e.FirstError, want)
	}
	if !strings.HasPrefix(e.Log, "In file included from fs/notify/fdinfo.c:18:") {
		t.Errorf("Log does not start at the include chain:\n%s", e.Log)
	}
	if msg := e.Error(); !strings.Contains(msg, "patch x.patch does not compile: fs/notify/fdinfo.o: ./fs/notify/inotify/inotify.h:39:33: error:") {
		t.Errorf("Error() = %q", msg)
	}
	if p := compileError("x.patch", true, "/tree", out).Error(); !strings.Contains(p, "pristine tree does not build fs/notify/fdinfo.o") {
		t.Errorf("pristine Error() = %q", p)
	}
	// No compiler diagnostic: the first line that says error.
	if e := compileError("x.patch", false, "/tree", "ld: undefined reference\nmake: *** [Makefile:3: a.o] Error 1\n"); e.FirstError != "make: *** [Makefile:3: a.o] Error 1" || e.Object != "a.o" {
		t.Errorf("without a compiler error: %+v", e)
	}
}

// TestBuildWithPatchCompileError builds a one-file tree whose patch breaks
// the compile, and one whose pristine source does not compile: the first
// is the patch's CompileError, the second the pristine tree's; the tree is
// pristine again either way.
func TestBuildWithPatchCompileError(t *testing.T) {
	const (
		good = "int f(void)\n{\n\treturn 1;\n}\n"
		bad  = "int f(void)\n{\n\treturn undeclared;\n}\n"
	)
	for _, pristineBroken := range []bool{false, true} {
		dir := t.TempDir()
		start, patched := good, bad
		if pristineBroken {
			start, patched = bad, good
		}
		os.WriteFile(filepath.Join(dir, "Makefile"), []byte("%.o: %.c\n\t$(CC) -c -o $@ $<\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "f.c"), []byte(start), 0o644)
		diff := udiff(t, "f.c", start, patched)
		patch := filepath.Join(t.TempDir(), "f.patch")
		os.WriteFile(patch, diff, 0o644)
		tree := &Tree{Dir: dir, CC: "gcc"}
		work := t.TempDir()
		err := tree.BuildWithPatch(context.Background(), patch, false, []string{"f.o"}, filepath.Join(work, "pre"), filepath.Join(work, "post"), nil)
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Fatalf("pristine broken %v: got %v, want a CompileError", pristineBroken, err)
		}
		if ce.Pristine != pristineBroken || ce.Object != "f.o" || ce.Patch != patch ||
			!strings.HasPrefix(ce.FirstError, "f.c:3:16: error: ") || !strings.Contains(ce.FirstError, "undeclared") {
			t.Errorf("pristine broken %v: %+v", pristineBroken, ce)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f.c")); string(got) != start {
			t.Errorf("pristine broken %v: f.c not restored: %q", pristineBroken, got)
		}
	}
}

// realTree returns Debian's prepared 6.1.0-56 tree, or fails the test
// saying how to get it.
func realTree(t *testing.T) *Tree {
	t.Helper()
	const release = "6.1.0-56-amd64"
	tree := &Tree{Dir: cache.Tree(cache.Dir(), release), Release: release, CC: "gcc-12"}
	if err := tree.Check("/boot/config-" + release); err != nil {
		t.Fatalf("%v: run `make kernel-inputs` to install Debian's %s packages and prepare the tree", err, release)
	}
	return tree
}

// TestDepIndexReal makes (or reads) the index of Debian's 6.1.0-56 tree
// and checks it against the compiler: the objects Kbuild builds, what
// each is part of, the users of real headers, and that a sample of
// objects includes nothing the index does not know of.
func TestDepIndexReal(t *testing.T) {
	tree := realTree(t)
	ctx := context.Background()
	unlock, err := tree.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ix, err := tree.DepIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var builtin, modules int
	for _, o := range ix.Objects {
		if o.Module != "" {
			modules++
		} else if o.Builtin {
			builtin++
		}
	}
	t.Logf("%d objects (%d in vmlinux, %d in modules), %d files; made in %v (dry run %v, generated sources %v, scan %v)",
		len(ix.Objects), builtin, modules, len(ix.Files), ix.MakeTime+ix.GenerateTime+ix.ScanTime, ix.MakeTime, ix.GenerateTime, ix.ScanTime)
	if builtin < 2000 || modules < 10000 {
		t.Errorf("%d objects in vmlinux and %d in modules: Debian's config builds more than 2,000 and 10,000", builtin, modules)
	}
	for obj, want := range map[string]string{
		"fs/proc/cmdline.o": "vmlinux", "fs/ext4/inode.o": "ext4", "arch/x86/kvm/vmx/vmenter.o": "kvm_intel",
		"drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.o": "amdgpu", "arch/x86/entry/vdso/vgetcpu.o": "neither",
		"lib/raid6/int8.o": "raid6_pq", "arch/x86/entry/vdso/vdso-image-64.o": "vmlinux",
	} {
		o, ok := ix.Lookup(obj)
		got := map[bool]string{true: "vmlinux", false: "neither"}[o.Builtin]
		if o.Module != "" {
			got = o.Module
		}
		if !ok || got != want || (ok && o.Path != obj) {
			t.Errorf("%s: found %v as %q (%s), want %s", obj, ok, o.Path, got, want)
		}
	}

	tests := []struct {
		header     string
		dependents []string
	}{
		{"fs/notify/inotify/inotify.h", []string{"fs/notify/fdinfo.o", "fs/notify/inotify/inotify_fsnotify.o", "fs/notify/inotify/inotify_user.o"}},
		{"kernel/uid16.h", []string{"kernel/sys.o", "kernel/uid16.o"}},
		// cirrusfb.c includes it under #ifdef CONFIG_ZORRO only.
		{"include/linux/zorro.h", nil},
	}
	for _, tt := range tests {
		deps, err := tree.Dependents(ctx, ix, []string{tt.header})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range deps {
			got = append(got, d.Path)
		}
		if !reflect.DeepEqual(got, tt.dependents) {
			t.Errorf("Dependents(%s) = %v, want %v", tt.header, got, tt.dependents)
		}
	}
	if c := ix.Candidates([]string{"include/linux/zorro.h"}); len(c) == 0 {
		t.Error("include/linux/zorro.h has no candidate: the scan should see cirrusfb.c's #include behind its #ifdef")
	}

	// Nothing an object really includes may be missing from its closure
	// in the index: the preprocessor of a fixed sample of objects says.
	id := make(map[string]int, len(ix.Files))
	for i, f := range ix.Files {
		id[f] = i
	}
	for k := 0; k < 40; k++ {
		o := ix.Objects[(k*7919+13)%len(ix.Objects)]
		deps, err := preprocessorDeps(ctx, tree.Dir, ix.Argv(o))
		if err != nil {
			t.Errorf("%s: %v", o.Path, err)
			continue
		}
		reach := make(map[int]bool)
		stack := slices.Clone(o.Roots)
		for len(stack) > 0 {
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if reach[f] {
				continue
			}
			reach[f] = true
			stack = append(stack, ix.Includes[f]...)
		}
		for _, d := range deps {
			if i, ok := id[d]; !ok || !reach[i] {
				// -MG lists generated headers not made yet (security/selinux's
				// flask.h): the scan cannot see them either.
				if _, err := os.Stat(filepath.Join(tree.Dir, d)); err == nil {
					t.Errorf("%s includes %s, which the index does not reach from it", o.Path, d)
				}
			}
		}
	}
}

// TestBuildHeaders builds header patches in Debian's 6.1.0-56 tree: every
// object that includes a changed header is rebuilt and diffed (two headers
// and a .c file in one patch; e2e's TestHeader builds the inotify.h change
// alone); a comment changes nothing; a header no object includes is
// nothing to do; a patch that does not compile says where, and leaves the
// tree pristine.
func TestBuildHeaders(t *testing.T) {
	tree := realTree(t)
	const release = "6.1.0-56-amd64"
	inotifyFdinfo := []string{"fs/notify/fdinfo.o", "fs/notify/inotify/inotify_fsnotify.o", "fs/notify/inotify/inotify_user.o"}
	tests := []struct {
		patch   string
		rebuilt []string
		funcs   string // "": nothing to do
		why     string // NothingToDoError.Why contains it
		compile string // a CompileError whose first error matches it
	}{
		{patch: "two-headers-and-source.patch", rebuilt: append(slices.Clone(inotifyFdinfo), "kernel/sys.o", "kernel/uid16.o"), funcs: "inotify_fdinfo"},
		{patch: "uid16-comment.patch", rebuilt: []string{"kernel/sys.o", "kernel/uid16.o"}},
		{patch: "zorro-comment.patch", why: "no object built under this kernel's config includes include/linux/zorro.h"},
		{patch: "does-not-compile.patch", compile: `^(\./)?fs/notify/inotify/inotify\.h:\d+:\d+: error: .*FSNOTIFY_MARK_FLAG_IN_ONLYDIR`},
	}
	_, file, _, _ := runtime.Caller(0)
	for _, tc := range tests {
		t.Run(tc.patch, func(t *testing.T) {
			work := t.TempDir()
			pristine, err := os.ReadFile(filepath.Join(tree.Dir, "fs/notify/inotify/inotify.h"))
			if err != nil {
				t.Fatal(err)
			}
			o := Options{
				Tree: tree, Config: "/boot/config-" + release, Headers: "/usr/src/linux-headers-" + release, ID: "header",
				Patch: filepath.Join(filepath.Dir(file), "..", "testdata", "headers", tc.patch),
				Out:   filepath.Join(work, "header.tar.xz"), WorkDir: work,
			}
			m, err := Build(context.Background(), o)
			var rebuilt []string
			filepath.WalkDir(filepath.Join(work, "post"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(filepath.Join(work, "post"), p)
					rebuilt = append(rebuilt, rel)
				}
				return nil
			})
			slices.Sort(rebuilt)
			switch {
			case tc.compile != "":
				var ce *CompileError
				if !errors.As(err, &ce) {
					t.Fatalf("Build = %v, want a CompileError", err)
				}
				if ce.Pristine || !regexp.MustCompile(tc.compile).MatchString(ce.FirstError) || !slices.Contains(inotifyFdinfo, ce.Object) {
					t.Errorf("CompileError{Object: %q, FirstError: %q, Pristine: %v}, want one of %v and %s", ce.Object, ce.FirstError, ce.Pristine, inotifyFdinfo, tc.compile)
				}
				if now, _ := os.ReadFile(filepath.Join(tree.Dir, "fs/notify/inotify/inotify.h")); !bytes.Equal(now, pristine) {
					t.Error("the tree was left patched")
				}
			case tc.funcs == "":
				var ne *NothingToDoError
				if !errors.As(err, &ne) || !strings.Contains(ne.Why, tc.why) {
					t.Fatalf("Build = %v, want a NothingToDoError saying %q", err, tc.why)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, f := range m.Functions {
					names = append(names, f.Name)
				}
				if got := strings.Join(names, ","); got != tc.funcs {
					t.Errorf("functions %q, want %q", got, tc.funcs)
				}
			}
			if tc.rebuilt != nil && !reflect.DeepEqual(rebuilt, tc.rebuilt) {
				t.Errorf("rebuilt %v, want %v", rebuilt, tc.rebuilt)
			}
		})
	}
}

// An object a parent directory's Makefile builds is a target under that
// Makefile's path only.
func TestDepIndexTargets(t *testing.T) {
	ix := &DepIndex{Objects: []IndexObject{
		{Path: "arch/x86/kvm/../../../virt/kvm/kvm_main.o"},
		{Path: "drivers/gpu/drm/amd/amdgpu/../pm/powerplay/hwmgr/smu7_hwmgr.o"},
		{Path: "fs/pipe.o"},
	}}
	got := ix.targets([]string{"virt/kvm/kvm_main.o", "drivers/gpu/drm/amd/pm/powerplay/hwmgr/smu7_hwmgr.o", "fs/pipe.o", "new/file.o"})
	want := []string{"arch/x86/kvm/../../../virt/kvm/kvm_main.o", "drivers/gpu/drm/amd/amdgpu/../pm/powerplay/hwmgr/smu7_hwmgr.o", "fs/pipe.o", "new/file.o"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets = %q, want %q", got, want)
	}
}

func TestOwnTargets(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"fs/Makefile":         "obj-y += pipe.o namei.o\n",
		"drv/Kbuild":          "obj-m += d.o\n",
		"drv/Makefile":        "obj-m += other.o\n",
		"virt/kvm/kvm_main.c": "",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree := &Tree{Dir: dir}
	for _, tc := range []struct {
		objects []string
		want    bool
	}{
		{[]string{"fs/pipe.o", "fs/namei.o"}, true},
		{[]string{"drv/d.o"}, true},              // Kbuild first
		{[]string{"drv/other.o"}, false},         // only in the Makefile Kbuild hides
		{[]string{"virt/kvm/kvm_main.o"}, false}, // no kbuild file
		{[]string{"fs/pipe.o", "fs/read_write.o"}, false},
	} {
		if got := tree.ownTargets(tc.objects); got != tc.want {
			t.Errorf("ownTargets(%q) = %v, want %v", tc.objects, got, tc.want)
		}
	}
}
