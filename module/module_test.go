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
			Name: "cmdline_proc_show", NewSymbol: "ls_test_new",
			Size: 64, NewSize: 16, SiteOffset: 5,
		}},
		Fixups: []pack.Fixup{{
			Symbol: "ls_test_slot", Offset: 0, Type: elf.R_X86_64_64,
			Target: "saved_command_line",
		}},
		Objects: []string{obj},
	}
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

func TestSymbols(t *testing.T) {
	tests := []struct {
		name   string
		funcs  []string
		relocs []string
		want   []string
	}{
		{"funcs then relocs", []string{"f1", "f2"}, []string{"r1"},
			[]string{"text_poke", "text_poke_kgdb", "text_mutex", "stop_machine_cpuslocked", "f1", "f2", "r1"}},
		{"dedup reloc targets", []string{"f1"}, []string{"r1", "r1", "f1", "r2"},
			[]string{"text_poke", "text_poke_kgdb", "text_mutex", "stop_machine_cpuslocked", "f1", "r1", "r2"}},
		{"dedup helper symbols", []string{"text_poke", "f1"}, []string{"text_mutex"},
			[]string{"text_poke", "text_poke_kgdb", "text_mutex", "stop_machine_cpuslocked", "f1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Spec
			for _, f := range tt.funcs {
				s.Functions = append(s.Functions, pack.Function{Name: f})
			}
			for _, r := range tt.relocs {
				s.Fixups = append(s.Fixups, pack.Fixup{Target: r})
			}
			if got := s.Symbols(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Symbols = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	obj := compileObject(t, testObjectSrc)
	s := testSpec(obj)
	s.Fixups = append(s.Fixups,
		pack.Fixup{Symbol: "ls_test_new", Offset: 2, Type: elf.R_X86_64_PLT32, Target: "cmdline_proc_show", Addend: -4},
		pack.Fixup{Symbol: "ls_test_new", Offset: 2, Type: elf.R_X86_64_32S, Target: "saved_command_line", Addend: 8},
	)
	dir := filepath.Join(t.TempDir(), "out")
	syms, err := Generate(s, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"text_poke", "text_poke_kgdb", "text_mutex", "stop_machine_cpuslocked",
		"cmdline_proc_show", "saved_command_line"}
	if !reflect.DeepEqual(syms, want) {
		t.Errorf("symbols = %q, want %q", syms, want)
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
		"unsigned long __livesplice_addrs[6];",
		"module_param_array_named(addrs, __livesplice_addrs, ulong, &__livesplice_nr_addrs, 0400);",
		"\"stop_machine_cpuslocked\",\t/* 3 */\n\t\"cmdline_proc_show\",\t/* 4 */\n\t\"saved_command_line\",\t/* 5 */\n};",
		".name = \"cmdline_proc_show\",\n\t\t.old_index = 4,\n\t\t.new_name = \"ls_test_new\",\n\t\t.new_addr = __livesplice_obj_0,\n" +
			"\t\t.new_size = 16,\n\t\t.site_offset = 5,",
		".base = __livesplice_obj_1,\n\t\t.offset = 0x0UL,\n\t\t.kind = LS_RELOC_ABS64,\n\t\t.type = \"R_X86_64_64\",\n" +
			"\t\t.target = \"saved_command_line\",\n\t\t.target_index = 5,\n\t\t.addend = 0L,",
		".base = __livesplice_obj_0,\n\t\t.offset = 0x2UL,\n\t\t.kind = LS_RELOC_PCREL32,\n\t\t.type = \"R_X86_64_PLT32\",\n" +
			"\t\t.target = \"cmdline_proc_show\",\n\t\t.target_index = 4,\n\t\t.addend = -4L,",
		".kind = LS_RELOC_ABS32S,",
		"const unsigned int __livesplice_nr_funcs = 1;",
		"const unsigned int __livesplice_nr_relocs = 3;",
		"const unsigned int __livesplice_nr_symbols = 6;",
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
