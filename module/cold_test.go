package module

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/pack"
)

// TestColdParts: the old cold parts of the replaced functions get an
// address each, after the functions, in their function's object, and a
// row of __livesplice_parts naming their function, for the helper's
// stack check.
func TestColdParts(t *testing.T) {
	s := testModuleSpec(compileObject(t, testObjectSrc), compileObject(t, testModuleObjectSrc))
	s.Functions[0].Cold = []pack.Function{{Name: "cmdline_proc_show.cold", Object: pack.Vmlinux, Size: 40}}
	s.Functions[1].Cold = []pack.Function{{Name: "bm_entry_read.cold", Object: "binfmt_misc", Size: 20}}
	dir := filepath.Join(t.TempDir(), "out")
	got, err := Generate(s, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := syms(append(helperNames, "cmdline_proc_show", "bm_entry_read [binfmt_misc]",
		"cmdline_proc_show.cold", "bm_entry_read.cold [binfmt_misc]", "saved_command_line",
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
		"const struct ls_part __livesplice_parts[] = {\n" +
			"\t{ .name = \"cmdline_proc_show.cold\", .func = 0, .old_index = 10 },\n" +
			"\t{ .name = \"bm_entry_read.cold\", .func = 1, .old_index = 11 },\n};",
		"const unsigned int __livesplice_nr_parts = 2;",
		"\t0,\t/* 10: vmlinux */\n\t1,\t/* 11: binfmt_misc */\n",
	} {
		if !strings.Contains(meta, w) {
			t.Errorf("livesplice-meta.c lacks %q:\n%s", w, meta)
		}
	}

	for name, cold := range map[string]pack.Function{
		`cold part "a b" of 40 bytes`:                   {Name: "a b", Size: 40},
		`cold part "cmdline_proc_show.cold" of 0 bytes`: {Name: "cmdline_proc_show.cold"},
	} {
		s := testSpec("unused.o")
		s.Functions[0].Cold = []pack.Function{cold}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate(%+v) = %v, want an error about the %s", cold, err, name)
		}
	}
}

// TestNoColdParts: without cold parts the table is empty (the helper's
// loops over it do nothing).
func TestNoColdParts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Generate(testSpec(compileObject(t, testObjectSrc)), dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "livesplice-meta.c"))
	if err != nil {
		t.Fatal(err)
	}
	if w := "const struct ls_part __livesplice_parts[] = {\n};\nconst unsigned int __livesplice_nr_parts = 0;"; !strings.Contains(string(b), w) {
		t.Errorf("livesplice-meta.c lacks %q:\n%s", w, b)
	}
}
