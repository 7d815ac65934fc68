package module

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testHeaders is the headers tree of the kernel the tests build for.
const (
	testRelease = "6.1.0-56-amd64"
	testHeaders = "/usr/src/linux-headers-" + testRelease
)

// requireHeaders fails (never skips) the test when the headers are missing.
func requireHeaders(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(testHeaders, "Module.symvers")); err != nil {
		t.Fatalf("%s is missing (%v): run `make kernel-inputs` to install linux-headers-%s",
			testHeaders, err, testRelease)
	}
}

// exportedSymbols reads the names in the headers' Module.symvers.
func exportedSymbols(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testHeaders, "Module.symvers"))
	if err != nil {
		t.Fatal(err)
	}
	syms := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Split(sc.Text(), "\t"); len(f) >= 2 {
			syms[f[1]] = true
		}
	}
	return syms
}

func TestBuild(t *testing.T) {
	requireHeaders(t)
	obj := compileObject(t, testObjectSrc)
	dir := filepath.Join(t.TempDir(), "kbuild")
	spec := testModuleSpec(obj, compileObject(t, testModuleObjectSrc))
	if _, err := Generate(spec, dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ko, err := Build(ctx, dir, testHeaders)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, spec.Name+".ko"); ko != want {
		t.Errorf("Build = %s, want %s", ko, want)
	}

	f, err := elf.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	sec := f.Section(".modinfo")
	if sec == nil {
		t.Fatal("no .modinfo")
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	info := make(map[string]bool)
	var vermagic string
	for _, e := range strings.Split(string(data), "\x00") {
		info[e] = true
		if v, ok := strings.CutPrefix(e, "vermagic="); ok {
			vermagic = v
		}
	}
	if !strings.HasPrefix(vermagic, testRelease+" ") {
		t.Errorf("vermagic = %q, want %q followed by a space", vermagic, testRelease)
	}
	for _, w := range []string{
		"name=" + spec.Name, "license=GPL", "livesplice_id=demo-test",
		"parmtype=addrs:array of ulong", "parmtype=expect:charp",
		"parmtype=retries:int", "parmtype=retry_ms:int",
		"parm=addrs:addresses of (vmlinux) or positions among their module's symbols of that name (0 for another module's export): " +
			"text_poke,text_mutex,stop_machine_cpuslocked,module_mutex,find_module,idle_task,total_forks,nr_context_switches,cmdline_proc_show," +
			"bm_entry_read [binfmt_misc],saved_command_line,enabled [binfmt_misc],jbd2_journal_start [jbd2]",
		`description=test "update" ??=`,
	} {
		if !info[w] {
			t.Errorf(".modinfo lacks %q", w)
		}
	}

	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	defined := make(map[string]elf.Symbol)
	var undefined []string
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF {
			if s.Name != "" {
				undefined = append(undefined, s.Name)
			}
			continue
		}
		defined[s.Name] = s
	}
	for _, name := range []string{"init_module", "cleanup_module", "ls_test_new", "ls_test_slot",
		"__livesplice_funcs", "__livesplice_relocs", "__livesplice_addrs"} {
		s, ok := defined[name]
		if !ok {
			t.Errorf("%s is not defined in the module", name)
			continue
		}
		if bind := elf.ST_BIND(s.Info); bind != elf.STB_GLOBAL {
			t.Errorf("%s is %v, want STB_GLOBAL", name, bind)
		}
	}
	if s, ok := defined["init_module"]; ok && f.Sections[s.Section].Name != ".init.text" {
		t.Errorf("init_module is in %s, want .init.text", f.Sections[s.Section].Name)
	}
	exported := exportedSymbols(t)
	for _, name := range undefined {
		if !exported[name] {
			t.Errorf("undefined symbol %s is not exported by the kernel", name)
		}
	}
	for _, sym := range spec.Symbols() {
		if contains(undefined, sym.Name) {
			t.Errorf("%s is linked as an undefined symbol; it must come through addrs", sym)
		}
	}
	for _, name := range []string{"sprint_symbol", "__unwind_start", "unwind_next_frame", "unwind_get_return_address",
		"add_taint", "cpus_read_lock", "register_module_notifier", "unregister_module_notifier", "try_module_get", "module_put"} {
		if !contains(undefined, name) {
			t.Errorf("the helper does not use %s", name)
		}
	}
}

// TestBuildRefuses checks that Build fails when Kbuild or modpost complains.
func TestBuildRefuses(t *testing.T) {
	requireHeaders(t)
	t.Run("unexported symbol", func(t *testing.T) {
		// kallsyms_lookup_name is not exported: modpost must refuse.
		obj := compileObject(t, testObjectSrc+
			"extern unsigned long kallsyms_lookup_name(const char *);\n"+
			"unsigned long ls_test_lookup(void) { return kallsyms_lookup_name(\"x\"); }\n")
		dir := filepath.Join(t.TempDir(), "kbuild")
		if _, err := Generate(testSpec(obj), dir); err != nil {
			t.Fatal(err)
		}
		_, err := Build(context.Background(), dir, testHeaders)
		if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "kallsyms_lookup_name") {
			t.Fatalf("Build = %v, want ErrBuild naming kallsyms_lookup_name", err)
		}
	})
	t.Run("no headers", func(t *testing.T) {
		_, err := Build(context.Background(), t.TempDir(), filepath.Join(t.TempDir(), "nothing"))
		if !errors.Is(err, ErrNoHeaders) || !strings.Contains(err.Error(), "make kernel-inputs") {
			t.Fatalf("Build = %v, want ErrNoHeaders", err)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
