package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
	"github.com/livesplice/livesplice/runpre"
)

// cmdlineProcShow is fs/proc/cmdline.o's cmdline_proc_show from Debian's
// 6.1.192 source, relocation fields zero.
var cmdlineProcShow = []byte{
	0xe8, 0, 0, 0, 0, // call __fentry__
	0x53,                         // push %rbx
	0x48, 0x8b, 0x35, 0, 0, 0, 0, // mov saved_command_line(%rip),%rsi
	0x48, 0x89, 0xfb,
	0xe8, 0, 0, 0, 0, // call seq_puts
	0x48, 0x89, 0xdf,
	0xbe, 0x0a, 0, 0, 0,
	0xe8, 0, 0, 0, 0, // call seq_putc
	0x31, 0xc0, 0x5b,
	0xe9, 0, 0, 0, 0, // jmp __x86_return_thunk
}

func demoManifest() *pack.Manifest {
	return &pack.Manifest{
		ID: "demo", ModuleName: "livesplice_demo",
		Functions: []pack.Function{{
			Name: "cmdline_proc_show", Object: pack.Vmlinux, Size: len(cmdlineProcShow), NewSize: 64, SiteOffset: 5, PreCode: cmdlineProcShow,
			PreRelocs: []pack.Reloc{
				{Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: "__fentry__", Addend: -4},
				{Offset: 9, Type: elf.R_X86_64_PC32, Symbol: "saved_command_line", Addend: -4},
				{Offset: 0x11, Type: elf.R_X86_64_PLT32, Symbol: "seq_puts", Addend: -4},
				{Offset: 0x1e, Type: elf.R_X86_64_PLT32, Symbol: "seq_putc", Addend: -4},
				{Offset: 0x26, Type: elf.R_X86_64_PLT32, Symbol: "__x86_return_thunk", Addend: -4},
			},
		}},
		Symbols: vmlinuxSymbols("text_poke", "cmdline_proc_show", "seq_puts"),
	}
}

func vmlinuxSymbols(names ...string) []pack.Symbol {
	var out []pack.Symbol
	for _, n := range names {
		out = append(out, pack.Symbol{Name: n, Object: pack.Vmlinux})
	}
	return out
}

// vmlinuxSpaces is what an update of vmlinux functions is matched in.
func vmlinuxSpaces(syms *kallsyms.Table) map[string]*Space {
	return map[string]*Space{pack.Vmlinux: {Object: pack.Vmlinux, Syms: syms, Loaded: true}}
}

const symtab = `ffffffff81000000 T text_poke
ffffffff81300000 t cmdline_proc_show
ffffffff81300030 t proc_show
ffffffff81300100 T seq_puts
ffffffff81300200 T seq_putc
ffffffff81400000 t proc_show
ffffffff82000010 D saved_command_line
ffffffff81000100 T __fentry__
`

// runningCmdlineProcShow is cmdline_proc_show as the kernel runs it at
// 0xffffffff81300000 with symtab's addresses: fentry NOP, ret for the
// return thunk.
func runningCmdlineProcShow() []byte {
	b := append([]byte(nil), cmdlineProcShow...)
	copy(b, []byte{0x0f, 0x1f, 0x44, 0x00, 0x00})
	put := func(off int, target uint64) {
		binary.LittleEndian.PutUint32(b[off:], uint32(target-(0xffffffff81300000+uint64(off)+4)))
	}
	put(9, 0xffffffff82000010)
	put(0x11, 0xffffffff81300100)
	put(0x1e, 0xffffffff81300200)
	copy(b[0x25:], []byte{0xc3, 0xcc, 0xcc, 0xcc, 0xcc})
	return b
}

func demoMatches(t *testing.T, m *pack.Manifest, syms *kallsyms.Table) []*runpre.Match {
	t.Helper()
	mt, err := runpre.MatchAt(&m.Functions[0], 0xffffffff81300000, runningCmdlineProcShow(), syms, runpre.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return []*runpre.Match{mt}
}

func TestMakePlan(t *testing.T) {
	syms, err := kallsyms.Parse(strings.NewReader(symtab))
	if err != nil {
		t.Fatal(err)
	}
	m := demoManifest()
	m.Symbols = append(m.Symbols, vmlinuxSymbols("saved_command_line")...)
	plan, err := MakePlan(m, vmlinuxSpaces(syms), demoMatches(t, m, syms), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{0xffffffff81000000, 0xffffffff81300000, 0xffffffff81300100, 0xffffffff82000010}; !slices.Equal(plan.Addrs, want) {
		t.Errorf("Addrs = %x, want %x", plan.Addrs, want)
	}
	// saved_command_line - 4 - (cmdline_proc_show + 9) = 0xd00003
	want := []byte{0x53, 0x48, 0x8b, 0x35, 0x03}
	if len(plan.Expect) != 1 || !bytes.Equal(plan.Expect[0].Bytes, want) || plan.Expect[0].Any != nil {
		t.Errorf("Expect = % x, want % x", plan.Expect, want)
	}
	params := plan.Params(Policy{Retries: 3, RetryMS: 50})
	if params != "addrs=0xffffffff81000000,0xffffffff81300000,0xffffffff81300100,0xffffffff82000010 expect=53488b3503 retries=3 retry_ms=50" {
		t.Errorf("Params = %q", params)
	}
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Retries: -1}, ""},
		{Policy{}, " retries=0"},
		{Policy{Retries: -1, WalkDelayMS: 2000}, " walk_delay_ms=2000"},
	} {
		if got, _ := strings.CutPrefix(plan.Params(tc.p), "addrs=0xffffffff81000000,0xffffffff81300000,0xffffffff81300100,0xffffffff82000010 expect=53488b3503"); got != tc.want {
			t.Errorf("Params(%+v) ends %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestMakePlanRefuses(t *testing.T) {
	syms, err := kallsyms.Parse(strings.NewReader(symtab))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*pack.Manifest)
		kind Kind
		want string
	}{
		{"missing symbol", func(m *pack.Manifest) { m.Symbols = append(m.Symbols, vmlinuxSymbols("no_such_fn")...) }, KindSymbol, "no_such_fn is not in"},
		{"ambiguous symbol", func(m *pack.Manifest) { m.Symbols = append(m.Symbols, vmlinuxSymbols("proc_show")...) }, KindSymbol, "proc_show is ambiguous: 2 symbols of that name in the running kernel's kallsyms, and no replaced function's code refers to it"},
		{"site inside an instruction", func(m *pack.Manifest) { m.Functions[0].SiteOffset = 7 }, KindMismatch, "patch site +0x7"},
	}
	for _, tt := range tests {
		m := demoManifest()
		matches := demoMatches(t, m, syms)
		tt.edit(m)
		_, err := MakePlan(m, vmlinuxSpaces(syms), matches, nil)
		var le *Error
		if !errors.As(err, &le) || le.Kind != tt.kind || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %v error containing %q", tt.name, err, tt.kind, tt.want)
		}
	}
}

func TestStatusAndControl(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "livesplice_demo", "livesplice")
	if err := os.MkdirAll(filepath.Join(d, "control"), 0o755); err != nil { // a directory: writes fail
		t.Fatal(err)
	}
	files := map[string]string{
		"id": "demo\n", "state": "applied\n", "description": "hide secrets\n",
		"functions":     "cmdline_proc_show vmlinux 0xffffffff81300000 0xffffffffc0001000 5 live\nbm_entry_read binfmt_misc 0x0 0xffffffffc0001100 5 waiting\n",
		"apply_stop_ns": "812000\n", "empty_stop_ns": "600000\n",
		"error": "busy: task 42 (cat) is inside cmdline_proc_show+0x10/0x2a\n",
	}
	for name, data := range files {
		os.WriteFile(filepath.Join(d, name), []byte(data), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "ext4"), 0o755) // not ours
	l := &Loader{SysModule: root}
	all, err := l.List()
	if err != nil || len(all) != 1 {
		t.Fatalf("List = %v, %v", all, err)
	}
	s := all[0]
	if s.ID != "demo" || s.State != "applied" || s.ApplyStopNS != 812000 || s.EmptyStopNS != 600000 || len(s.Functions) != 2 {
		t.Fatalf("status = %+v", s)
	}
	if want := (FunctionStatus{"cmdline_proc_show", pack.Vmlinux, 0xffffffff81300000, 0xffffffffc0001000, 5, FunctionLive}); s.Functions[0] != want {
		t.Errorf("function 0 = %+v, want %+v", s.Functions[0], want)
	}
	if want := (FunctionStatus{"bm_entry_read", "binfmt_misc", 0, 0xffffffffc0001100, 5, FunctionWaiting}); s.Functions[1] != want {
		t.Errorf("function 1 = %+v, want %+v", s.Functions[1], want)
	}
	if s.Error != "busy: task 42 (cat) is inside cmdline_proc_show+0x10/0x2a" {
		t.Errorf("Error = %q", s.Error)
	}
	if _, err := l.Show("other"); err == nil {
		t.Error("Show(other) found something")
	}
	err = l.control("demo", "livesplice_demo", "undo")
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindBusy || !strings.Contains(err.Error(), "task 42 (cat)") {
		t.Errorf("control = %v, want a busy refusal naming the task", err)
	}
}

func TestCheckKernel(t *testing.T) {
	const (
		rel  = "6.1.0-56-amd64"
		ver  = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
		cc   = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
		proc = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (" + cc + ", GNU ld (GNU Binutils for Debian) 2.40) " + ver + "\n"
	)
	m := demoManifest()
	m.Target = pack.Target{Release: rel, Version: ver, Compiler: cc}
	tests := []struct {
		name, release, version, proc string
		want                         string
	}{
		{"same", rel, ver, proc, ""},
		{"release", "6.1.0-53-amd64", ver, proc, "is for kernel 6.1.0-56-amd64, this kernel is 6.1.0-53-amd64"},
		{"rebuild", rel, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1 (2026-11-01)", proc, "another build"},
		{"compiler", rel, ver, strings.Replace(proc, "gcc-12 (Debian 12.2.0-14+deb12u1)", "gcc-12 (Debian 12.2.0-14)", 1), "compiled with"},
	}
	for _, tt := range tests {
		err := CheckKernel(m, tt.release, tt.version, tt.proc)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var le *Error
		if !errors.As(err, &le) || le.Kind != KindKernel || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want a wrong-kernel refusal containing %q", tt.name, err, tt.want)
		}
	}
}

// TestMakePlanAnchor: "hidden" has two symbols in kallsyms and only the
// replacement refers to it; the anchor proc_show's running code tells
// which one, and without the anchor the plan is refused.
func TestMakePlanAnchor(t *testing.T) {
	const tab = symtab + "ffffffff82000100 d hidden\nffffffff82000200 d hidden\n"
	syms, err := kallsyms.Parse(strings.NewReader(tab))
	if err != nil {
		t.Fatal(err)
	}
	m := demoManifest()
	m.Symbols = append(m.Symbols, vmlinuxSymbols("hidden")...)
	anchor := pack.Function{
		Name: "proc_show", Object: pack.Vmlinux, Size: 13,
		PreCode:   []byte{0xe8, 0, 0, 0, 0, 0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3}, // call __fentry__; mov hidden(%rip),%rax; ret
		PreRelocs: []pack.Reloc{{Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: "__fentry__", Addend: -4}, {Offset: 8, Type: elf.R_X86_64_PC32, Symbol: "hidden", Addend: -4}},
	}
	// proc_show at 0xffffffff81400000 reads the second hidden.
	run := []byte{0x0f, 0x1f, 0x44, 0, 0, 0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3}
	binary.LittleEndian.PutUint32(run[8:], uint32(0xffffffff82000200-(0xffffffff81400000+8+4)))
	am, err := runpre.MatchAt(&anchor, 0xffffffff81400000, run, syms, runpre.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Anchors = []pack.Function{anchor}
	plan, err := MakePlan(m, vmlinuxSpaces(syms), demoMatches(t, m, syms), []*runpre.Match{am})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Addrs[len(plan.Addrs)-1]; got != 0xffffffff82000200 {
		t.Errorf("hidden = %#x, want the anchor's 0xffffffff82000200", got)
	}
	m.Anchors = nil
	_, err = MakePlan(m, vmlinuxSpaces(syms), demoMatches(t, m, syms), nil)
	var le *Error
	if !errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), "hidden is ambiguous") {
		t.Errorf("without the anchor: %v, want an ambiguity refusal", err)
	}
}
