package module

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/pack"
)

// testObjectSrc is the replacement code of the tests: a function and a data
// slot that a relocation fills in.
const testObjectSrc = `
unsigned long ls_test_slot = 0;

int ls_test_new(void)
{
	return 42 + (int)ls_test_slot;
}
`

// compileObject compiles C source into an x86-64 relocatable object the way
// replacement code for the kernel is compiled.
func compileObject(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	c := filepath.Join(dir, "snippet.c")
	o := filepath.Join(dir, "snippet.o")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Compiler, "-c", "-O2", "-mcmodel=kernel", "-fno-pic", "-mno-red-zone",
		"-ffunction-sections", "-fdata-sections", "-fno-asynchronous-unwind-tables", c, "-o", o)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", Compiler, err, out)
	}
	return o
}

// testSpec returns a valid spec using the object at obj.
func testSpec(obj string) Spec {
	return Spec{
		ID:          "demo-test",
		Name:        "livesplice_demo_test",
		Description: `test "update" ??=`,
		Functions: []pack.Function{{
			Name: "cmdline_proc_show", Object: pack.Vmlinux, NewSymbol: "ls_test_new",
			Size: 64, NewSize: 16, SiteOffset: 5,
		}},
		Fixups: []pack.Fixup{{
			Symbol: "ls_test_slot", Offset: 0, Type: elf.R_X86_64_64,
			Target: "saved_command_line", Object: pack.Vmlinux,
		}},
		Objects: []string{obj},
	}
}

// testModuleObjectSrc is replacement code for a function of a module.
const testModuleObjectSrc = `
int ls_test_mod(void)
{
	return 7;
}
`

// testModuleSpec returns a valid spec that replaces a vmlinux function
// (from obj) and a function of module binfmt_misc (from modObj) whose code
// refers to vmlinux, to the module itself and to another module's export.
func testModuleSpec(obj, modObj string) Spec {
	s := testSpec(obj)
	s.Functions = append(s.Functions, pack.Function{
		Name: "bm_entry_read", Object: "binfmt_misc", NewSymbol: "ls_test_mod",
		Size: 64, NewSize: 16, SiteOffset: 5,
	})
	s.Objects = append(s.Objects, modObj)
	s.Fixups = append(s.Fixups,
		pack.Fixup{Symbol: "ls_test_mod", Offset: 1, Type: elf.R_X86_64_PC32, Target: "enabled", Object: "binfmt_misc", Addend: -4},
		pack.Fixup{Symbol: "ls_test_mod", Offset: 1, Type: elf.R_X86_64_PLT32, Target: "jbd2_journal_start", Object: "jbd2", Addend: -4},
		pack.Fixup{Symbol: "ls_test_mod", Offset: 1, Type: elf.R_X86_64_PC32, Target: "saved_command_line", Object: pack.Vmlinux, Addend: -4},
	)
	return s
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"site offset 0", func(s *Spec) { s.Functions[0].SiteOffset = 0; s.Functions[0].Size = 5 }, ""},
		{"dotted names", func(s *Spec) { s.Functions[0].Name = "foo.isra.0" }, ""},
		{"empty id", func(s *Spec) { s.ID = "" }, `update id ""`},
		{"upper id", func(s *Spec) { s.ID = "Demo" }, `update id "Demo"`},
		{"dash in name", func(s *Spec) { s.Name = "livesplice-demo" }, `Name "livesplice-demo"`},
		{"long name", func(s *Spec) { s.Name = strings.Repeat("a", 56) }, "at most 55"},
		{"nul in description", func(s *Spec) { s.Description = "a\x00b" }, "Description"},
		{"no functions", func(s *Spec) { s.Functions = nil }, "Functions: none"},
		{"no objects", func(s *Spec) { s.Objects = nil }, "Objects: none"},
		{"bad func name", func(s *Spec) { s.Functions[0].Name = "foo bar" }, `Functions[0].Name "foo bar"`},
		{"bad new symbol", func(s *Spec) { s.Functions[0].NewSymbol = "" }, `Functions[0].NewSymbol ""`},
		{"site offset 3", func(s *Spec) { s.Functions[0].SiteOffset = 3 }, "SiteOffset 3"},
		{"old size too small", func(s *Spec) { s.Functions[0].Size = 9 }, "Size 9: want at least SiteOffset+5 = 10"},
		{"new size zero", func(s *Spec) { s.Functions[0].NewSize = 0 }, "NewSize 0"},
		{"duplicate function", func(s *Spec) { s.Functions = append(s.Functions, s.Functions[0]) },
			`Functions[1].Name "cmdline_proc_show": already replaced by Functions[0]`},
		{"same name, another object", func(s *Spec) {
			f := s.Functions[0]
			f.Object, f.NewSymbol = "binfmt_misc", "ls_other"
			s.Functions = append(s.Functions, f)
		}, ""},
		{"no object", func(s *Spec) { s.Functions[0].Object = "" }, `Functions[0] (cmdline_proc_show).Object ""`},
		{"bad object", func(s *Spec) { s.Functions[0].Object = "fs/ext4" }, `Object "fs/ext4": not vmlinux or a module name`},
		{"fixup without object", func(s *Spec) { s.Fixups[0].Object = "" }, `Fixups[0] (saved_command_line).Object ""`},
		{"bad reloc symbol", func(s *Spec) { s.Fixups[0].Symbol = "a-b" }, `Fixups[0].Symbol "a-b"`},
		{"bad reloc target", func(s *Spec) { s.Fixups[0].Target = "" }, `Fixups[0].Target ""`},
		{"reloc type 32", func(s *Spec) { s.Fixups[0].Type = elf.R_X86_64_32 }, "Type R_X86_64_32: unsupported"},
		{"reloc type GOTPCREL", func(s *Spec) { s.Fixups[0].Type = elf.R_X86_64_GOTPCREL }, "Type R_X86_64_GOTPCREL: unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec("unused.o")
			tt.modify(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate = %v, want an ErrInvalidSpec containing %q", err, tt.want)
			}
		})
	}
}

// syms parses "name" (vmlinux) and "name [module]" into symbols.
func syms(names ...string) []pack.Symbol {
	var out []pack.Symbol
	for _, n := range names {
		name, obj, ok := strings.Cut(n, " [")
		if !ok {
			obj = pack.Vmlinux + "]"
		}
		out = append(out, pack.Symbol{Name: name, Object: strings.TrimSuffix(obj, "]")})
	}
	return out
}

var helperNames = []string{"text_poke", "text_mutex", "stop_machine_cpuslocked", "module_mutex", "find_module", "idle_task", "total_forks", "nr_context_switches"}

func TestSymbols(t *testing.T) {
	tests := []struct {
		name   string
		funcs  []string
		relocs []string
		want   []string
	}{
		{"funcs then relocs", []string{"f1", "f2"}, []string{"r1"}, []string{"f1", "f2", "r1"}},
		{"dedup reloc targets", []string{"f1"}, []string{"r1", "r1", "f1", "r2"}, []string{"f1", "r1", "r2"}},
		{"dedup helper symbols", []string{"text_poke", "f1"}, []string{"text_mutex"}, []string{"f1"}},
		{"one name, two objects", []string{"f1", "f1 [m]"}, []string{"r1 [m]", "r1", "f1 [m]", "e [other]"},
			[]string{"f1", "f1 [m]", "r1 [m]", "r1", "e [other]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Spec
			for _, f := range syms(tt.funcs...) {
				s.Functions = append(s.Functions, pack.Function{Name: f.Name, Object: f.Object})
			}
			for _, r := range syms(tt.relocs...) {
				s.Fixups = append(s.Fixups, pack.Fixup{Target: r.Name, Object: r.Object})
			}
			want := syms(append(helperNames, tt.want...)...)
			if got := s.Symbols(); !reflect.DeepEqual(got, want) {
				t.Errorf("Symbols = %v, want %v", got, want)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	obj := compileObject(t, testObjectSrc)
	s := testSpec(obj)
	s.Fixups = append(s.Fixups,
		pack.Fixup{Symbol: "ls_test_new", Offset: 2, Type: elf.R_X86_64_PLT32, Target: "cmdline_proc_show", Addend: -4, Object: pack.Vmlinux},
		pack.Fixup{Symbol: "ls_test_new", Offset: 2, Type: elf.R_X86_64_32S, Target: "saved_command_line", Addend: 8, Object: pack.Vmlinux},
	)
	dir := filepath.Join(t.TempDir(), "out")
	got, err := Generate(s, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := syms(append(helperNames, "cmdline_proc_show", "saved_command_line")...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("symbols = %v, want %v", got, want)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	kb := read("Kbuild")
	for _, w := range []string{
		"obj-m := livesplice_demo_test.o\n",
		"livesplice_demo_test-y := livesplice-helper.o livesplice-meta.o livesplice-patch0.o\n",
		"$(obj)/livesplice-patch0.o: $(src)/livesplice-patch0.o_shipped FORCE\n\t$(call if_changed,copy)\n",
	} {
		if !strings.Contains(kb, w) {
			t.Errorf("Kbuild lacks %q:\n%s", w, kb)
		}
	}
	meta := read("livesplice-meta.c")
	for _, w := range []string{
		`extern char __livesplice_obj_0[] __asm__("ls_test_new");`,
		`extern char __livesplice_obj_1[] __asm__("ls_test_slot");`,
		`const char __livesplice_id[] = "demo-test";`,
		`const char __livesplice_description[] = "test \"update\" \077\077=";`,
		"unsigned long __livesplice_addrs[10];",
		"module_param_array_named(addrs, __livesplice_addrs, ulong, &__livesplice_nr_addrs, 0400);",
		"\"find_module\",\t/* 4 */\n\t\"idle_task\",\t/* 5 */\n\t\"total_forks\",\t/* 6 */\n\t\"nr_context_switches\",\t/* 7 */\n\t\"cmdline_proc_show\",\t/* 8 */\n\t\"saved_command_line\",\t/* 9 */\n};",
		"const struct ls_object __livesplice_objects[] = {\n\t{ .name = \"vmlinux\" },\t/* 0 */\n};",
		"\t0,\t/* 9: vmlinux */\n};",
		".name = \"cmdline_proc_show\",\n\t\t.object = 0,\n\t\t.old_index = 8,\n\t\t.new_name = \"ls_test_new\",\n\t\t.new_addr = __livesplice_obj_0,\n" +
			"\t\t.new_size = 16,\n\t\t.site_offset = 5,",
		".base = __livesplice_obj_1,\n\t\t.offset = 0x0UL,\n\t\t.kind = LS_RELOC_ABS64,\n\t\t.type = \"R_X86_64_64\",\n" +
			"\t\t.target = \"saved_command_line\",\n\t\t.target_index = 9,\n\t\t.addend = 0L,\n\t\t.owner = 0,",
		".base = __livesplice_obj_0,\n\t\t.offset = 0x2UL,\n\t\t.kind = LS_RELOC_PCREL32,\n\t\t.type = \"R_X86_64_PLT32\",\n" +
			"\t\t.target = \"cmdline_proc_show\",\n\t\t.target_index = 8,\n\t\t.addend = -4L,",
		".kind = LS_RELOC_ABS32S,",
		"const unsigned int __livesplice_nr_funcs = 1;",
		"const unsigned int __livesplice_nr_relocs = 3;",
		"const unsigned int __livesplice_nr_symbols = 10;",
		"const unsigned int __livesplice_nr_objects = 1;",
	} {
		if !strings.Contains(meta, w) {
			t.Errorf("livesplice-meta.c lacks %q:\n%s", w, meta)
		}
	}
	for _, name := range []string{"livesplice.h", "livesplice-helper.c"} {
		emb, _ := helperFS.ReadFile("c/" + name)
		if got := read(name); got != string(emb) {
			t.Errorf("%s differs from the embedded copy", name)
		}
	}
	objData, _ := os.ReadFile(obj)
	if got := read("livesplice-patch0.o_shipped"); got != string(objData) {
		t.Errorf("livesplice-patch0.o_shipped differs from %s", obj)
	}

	// A second Generate into the same directory refuses to overwrite it.
	if _, err := Generate(s, dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("Generate into a used dir = %v, want os.ErrExist", err)
	}
}

// TestGenerateModule checks the metadata of an update that replaces
// functions of vmlinux and of a module: every symbol carries its object,
// and each fix-up its owner (the object whose functions its code
// replaces), which says when the helper applies it.
func TestGenerateModule(t *testing.T) {
	s := testModuleSpec(compileObject(t, testObjectSrc), compileObject(t, testModuleObjectSrc))
	dir := filepath.Join(t.TempDir(), "out")
	got, err := Generate(s, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := syms(append(helperNames, "cmdline_proc_show", "bm_entry_read [binfmt_misc]", "saved_command_line",
		"enabled [binfmt_misc]", "jbd2_journal_start [jbd2]")...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("symbols = %v, want %v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "livesplice-meta.c"))
	if err != nil {
		t.Fatal(err)
	}
	meta := string(b)
	for _, w := range []string{
		"{ .name = \"vmlinux\" },\t/* 0 */\n\t{ .name = \"binfmt_misc\" },\t/* 1 */\n\t{ .name = \"jbd2\" },\t/* 2 */\n};",
		"const unsigned int __livesplice_nr_objects = 3;",
		"\t1,\t/* 9: binfmt_misc */\n\t0,\t/* 10: vmlinux */\n\t1,\t/* 11: binfmt_misc */\n\t2,\t/* 12: jbd2 */\n};",
		".name = \"bm_entry_read\",\n\t\t.object = 1,\n\t\t.old_index = 9,",
		".target = \"enabled\",\n\t\t.target_index = 11,\n\t\t.addend = -4L,\n\t\t.owner = 1,",
		".target = \"jbd2_journal_start\",\n\t\t.target_index = 12,\n\t\t.addend = -4L,\n\t\t.owner = 1,",
		".target = \"saved_command_line\",\n\t\t.target_index = 10,\n\t\t.addend = -4L,\n\t\t.owner = 1,",
		".target = \"saved_command_line\",\n\t\t.target_index = 10,\n\t\t.addend = 0L,\n\t\t.owner = 0,",
		"enabled [binfmt_misc],jbd2_journal_start [jbd2]",
	} {
		if !strings.Contains(meta, w) {
			t.Errorf("livesplice-meta.c lacks %q:\n%s", w, meta)
		}
	}
}

func TestGenerateRefuses(t *testing.T) {
	obj := compileObject(t, testObjectSrc)
	reserved := compileObject(t, "int __livesplice_id_x(void) { return 1; }\n")
	dup := compileObject(t, "int ls_test_new(void) { return 1; }\n")
	notELF := filepath.Join(t.TempDir(), "not.o")
	if err := os.WriteFile(notELF, []byte("not an object"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string
	}{
		{"invalid spec", func(s *Spec) { s.Fixups[0].Type = elf.R_X86_64_GOTPCRELX }, "R_X86_64_GOTPCRELX: unsupported"},
		{"missing object", func(s *Spec) { s.Objects = []string{"/nonexistent.o"} }, "Objects[0] /nonexistent.o"},
		{"not ELF", func(s *Spec) { s.Objects = []string{notELF} }, "Objects[0] " + notELF},
		{"new symbol undefined", func(s *Spec) { s.Functions[0].NewSymbol = "nope" },
			`Functions[0] (cmdline_proc_show).NewSymbol "nope": not defined`},
		{"new size below symbol size", func(s *Spec) { s.Functions[0].NewSize = 1 }, "NewSize 1: smaller than ls_test_new's size"},
		{"reloc symbol undefined", func(s *Spec) { s.Fixups[0].Symbol = "nope" }, `Fixups[0].Symbol "nope": not defined`},
		{"reloc past symbol", func(s *Spec) { s.Fixups[0].Offset = 4 }, "Fixups[0] (ls_test_slot+0x4 R_X86_64_64).Offset: 8 bytes do not fit"},
		{"reserved prefix", func(s *Spec) { s.Objects = append(s.Objects, reserved) }, "reserved prefix"},
		{"duplicate symbol", func(s *Spec) { s.Objects = append(s.Objects, dup) }, "symbol ls_test_new is also defined in " + obj},
		{"vmlinux code to a module", func(s *Spec) { s.Fixups[0].Object = "binfmt_misc" },
			"to saved_command_line of module binfmt_misc: the code of " + obj + " replaces no function of a module"},
		{"one object, two kernel objects", func(s *Spec) {
			s.Functions = append(s.Functions, pack.Function{Name: "bm_entry_read", Object: "binfmt_misc", NewSymbol: "ls_test_slot", Size: 64, NewSize: 16, SiteOffset: 5})
		}, "Functions[1] (bm_entry_read).Object binfmt_misc: " + obj + " also replaces functions of vmlinux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec(obj)
			tt.modify(&s)
			dir := filepath.Join(t.TempDir(), "out")
			_, err := Generate(s, dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate = %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("Generate wrote %s despite the error", dir)
			}
		})
	}
}

func TestCString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"line\nnext\ttab", `"line\nnext\ttab"`},
		{"??=", `"\077\077="`},
		{"\x01" + "7", `"\0017"`},
		{"é", `"\303\251"`},
	}
	for _, tt := range tests {
		if got := cstring(tt.in); got != tt.want {
			t.Errorf("cstring(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
