package runpre

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealSequences matches real functions of Debian's 6.1.0-56 kernel
// against the code that kernel ran in qemu, one tolerance at least per
// fixture; the same functions under two CPU models (qemu64, EPYC) and
// three spectre_v2 settings take different rules.
func TestRealSequences(t *testing.T) {
	tests := []struct {
		fixture string
		rules   []string          // rules some step must have taken
		derived map[string]string // symbol -> kallsyms name at the derived address
	}{
		{"slab_debugfs_stop-qemu64", []string{"fentry call (NOP)", "return thunk (ret)"}, nil},
		{"slab_debugfs_stop-epyc", []string{"fentry call (NOP)", "return thunk (jump to srso_return_thunk"}, nil},
		{"work_for_cpu_fn-qemu64", []string{"retpoline (thunk __x86_indirect_thunk_"}, nil},
		{"work_for_cpu_fn-nospec", []string{"retpoline (inline call *%rax)"}, nil},
		{"work_for_cpu_fn-lfence", []string{"retpoline (lfence; inline call *%rax)"}, nil},
		{"arch_cpu_idle-nospec", []string{"retpoline (inline jmp *%rax)"}, nil},
		{"io_wq_for_each_worker-qemu64", []string{"retpoline (thunk __x86_indirect_thunk_r13"}, nil},
		{"fault_in_kernel_space-qemu64", []string{"alternative original: same"}, nil},
		{"available_idle_cpu-qemu64", []string{"alternative replacement (feature !8*32+21)"}, nil},
		{"copy_siginfo_to_user-qemu64", []string{"alternative original: same", "alternative replacement (feature !9*32+9)"}, nil},
		// EPYC has SMAP: stac/clac replace the NOPs qemu64 runs.
		{"copy_siginfo_to_user-epyc", []string{"alternative replacement (feature 9*32+20)", "return thunk (jump to srso_return_thunk"}, nil},
		{"exit_task_stack_account-qemu64", []string{"static branch (jump)"}, nil},
		{"want_init_on_free-qemu64", []string{"static branch (NOP)"}, nil},
		{"raw_spin_rq_trylock-qemu64", []string{"static call (NOP)"}, nil},
		{"console_conditional_schedule-qemu64", []string{"static call (to __cond_resched"}, nil},
		{"pmd_install-qemu64", []string{"paravirt call (NOP)", "paravirt call (direct call to native_set_pmd"}, nil},
		{"blk_set_pm_only-up", []string{"lock prefix (uniprocessor)"}, nil},
		// -ffunction-sections: "jmp rel32" to simple_strtoull in the pack,
		// "jmp rel8" in the running kernel.
		{"simple_strtoul-qemu64", []string{"same branch to simple_strtoull"}, map[string]string{"simple_strtoull": "simple_strtoull"}},
		// .sched.text keeps its layout: a jump without relocation.
		{"schedule_hrtimeout_range-qemu64", []string{"same branch out of the function"}, nil},
		{"cmdline_proc_show-qemu64", []string{"same branch to seq_puts"}, map[string]string{"saved_command_line": "saved_command_line", "seq_putc": "seq_putc"}},
		{"comm_write-epyc", []string{"same branch to _copy_from_user"}, map[string]string{"get_pid_task": "get_pid_task"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := loadFixture(t, tt.fixture)
			m, err := Find(&f.Function, f.syms, f, Options{Trace: true})
			if err != nil {
				t.Fatal(err)
			}
			if m.Len != len(f.Function.PreCode) && !strings.HasPrefix(tt.fixture, "simple_strtoul") {
				t.Errorf("matched %d running bytes for %d bytes of pack code", m.Len, len(f.Function.PreCode))
			}
			got := strings.Join(rules(m.Steps), "\n")
			for _, r := range tt.rules {
				if !strings.Contains(got, r) {
					t.Errorf("no step took rule %q; rules:\n%s", r, got)
				}
			}
			for sym, name := range tt.derived {
				d, ok := m.Derived[sym]
				s, found := f.syms.At(d.Addr)
				if !ok || !found || s.Name != name || s.Addr != d.Addr {
					t.Errorf("derived %s = %#x (%v), kallsyms says %s at %#x", sym, d.Addr, ok, s.Name, s.Addr)
				}
			}
		})
	}
}

// TestDuplicatedNames: proc_single_open is a static of both
// fs/proc/base.c and fs/proc/generic.c; each object's pre code matches
// exactly its own copy.
func TestDuplicatedNames(t *testing.T) {
	base := loadFixture(t, "proc_single_open-base-qemu64")
	generic := loadFixture(t, "proc_single_open-generic-qemu64")
	if n := len(base.syms.Lookup("proc_single_open")); n != 2 {
		t.Fatalf("kallsyms has %d proc_single_open, want 2", n)
	}
	mb, err := Find(&base.Function, base.syms, base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mg, err := Find(&generic.Function, generic.syms, generic, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if mb.Addr == mg.Addr {
		t.Fatalf("both objects' proc_single_open matched %#x", mb.Addr)
	}
	// base.c's calls single_open with its static proc_single_show.
	d := mb.Derived["proc_single_show"]
	if s, ok := base.syms.At(d.Addr); !ok || s.Name != "proc_single_show" || s.Addr != d.Addr {
		t.Errorf("proc_single_show derived at %#x, kallsyms has %+v there", d.Addr, s)
	}
}

// TestAmbiguous: set_pte is inlined into a static copy per object; five
// copies match and none can be chosen.
func TestAmbiguous(t *testing.T) {
	f := loadFixture(t, "set_pte-qemu64")
	_, err := Find(&f.Function, f.syms, f, Options{})
	var ae *AmbiguousError
	if !errors.As(err, &ae) || len(ae.Addrs) != 5 {
		t.Fatalf("got %v, want 5 ambiguous matches", err)
	}
}

// TestMismatches changes one real running sequence at a time into
// something the kernel would not have written, and checks the refusal
// names the function, the offset and the reason.
func TestMismatches(t *testing.T) {
	tests := []struct {
		name, fixture string
		edit          func(t *testing.T, f testFixture, run []byte)
		want          string
	}{
		{"fentry", "slab_debugfs_stop-qemu64", func(t *testing.T, f testFixture, run []byte) {
			copy(run, []byte{0xe9, 0, 0, 0, 0}) // a jmp where the fentry NOP or call is
		}, "+0x0: pack: callq __fentry__-4 (e8 00 00 00 00); running (+0x0): jmpq"},
		{"return thunk", "slab_debugfs_stop-qemu64", func(t *testing.T, f testFixture, run []byte) {
			run[at(t, run, 0xc3)] = 0xe8 // call instead of ret
		}, "return thunk: want a jump to a return thunk or ret; int3"},
		{"return thunk target", "slab_debugfs_stop-epyc", func(t *testing.T, f testFixture, run []byte) {
			// jump to the function's own start instead of srso_return_thunk
			off := at(t, run, 0xe9)
			binary.LittleEndian.PutUint32(run[off+1:], uint32(-(off + 5)))
		}, "return thunk: want a jump to a return thunk, not to slab_debugfs_stop"},
		{"retpoline register", "work_for_cpu_fn-nospec", func(t *testing.T, f testFixture, run []byte) {
			run[at(t, run, 0xff)+1] = 0xd1 // call *%rcx instead of *%rax
		}, "retpoline: want the thunk branch or an indirect call through %rax"},
		{"alternative", "fault_in_kernel_space-qemu64", func(t *testing.T, f testFixture, run []byte) {
			s := f.Function.PreSites[0]
			copy(run[s.Offset:], []byte{0x0f, 0x0b}) // ud2
		}, "neither the original"},
		{"static branch target", "exit_task_stack_account-qemu64", func(t *testing.T, f testFixture, run []byte) {
			s := f.Function.PreSites[len(f.Function.PreSites)-1]
			if run[s.Offset] == 0xeb {
				run[s.Offset+1]++
			} else {
				binary.LittleEndian.PutUint32(run[s.Offset+1:], binary.LittleEndian.Uint32(run[s.Offset+1:])+1)
			}
		}, "the jump goes to"},
		{"static call", "console_conditional_schedule-qemu64", func(t *testing.T, f testFixture, run []byte) {
			run[reloc(t, f, "__SCT__cond_resched")-1] = 0xe8 // a call where the tail jump is
		}, "static call: want"},
		{"paravirt", "pmd_install-qemu64", func(t *testing.T, f testFixture, run []byte) {
			run[reloc(t, f, "pv_ops")-2] = 0xcc
		}, "paravirt call: want"},
		{"lock prefix", "blk_set_pm_only-up", func(t *testing.T, f testFixture, run []byte) {
			run[at(t, run, 0x3e)] = 0x2e // cs instead of ds
		}, "different instructions"},
		{"short jump target", "simple_strtoul-qemu64", func(t *testing.T, f testFixture, run []byte) {
			run[1] += 2
		}, "the pack's code refers to simple_strtoull here, the running code to"},
		{"data reference", "cmdline_proc_show-qemu64", func(t *testing.T, f testFixture, run []byte) {
			off := reloc(t, f, "saved_command_line")
			binary.LittleEndian.PutUint32(run[off:], binary.LittleEndian.Uint32(run[off:])+8)
		}, "the pack's code refers to saved_command_line here, the running code to"},
		{"instruction", "cmdline_proc_show-qemu64", func(t *testing.T, f testFixture, run []byte) {
			run[5] = 0x51
		}, "+0x5: pack: push %rbx (53); running (+0x5): push %rcx (51): different instructions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := loadFixture(t, tt.fixture)
			run := f.Memory[0].Code
			tt.edit(t, f, run)
			_, err := MatchAt(&f.Function, f.Memory[0].Addr, run, f.syms, Options{})
			var mm *Mismatch
			if !errors.As(err, &mm) || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), f.Function.Name+" at 0x") {
				t.Fatalf("got %v, want a mismatch of %s containing %q", err, f.Function.Name, tt.want)
			}
			if mm.PreAsm == "" || mm.RunAsm == "" {
				t.Errorf("mismatch without both instructions: %+v", mm)
			}
		})
	}
}

// at returns the offset of the first byte b in run past the fentry site.
func at(t *testing.T, run []byte, b byte) int {
	t.Helper()
	for i := 5; i < len(run); i++ {
		if run[i] == b {
			return i
		}
	}
	t.Fatalf("no %#x in the running code", b)
	return 0
}

// reloc returns the offset of the field of f's relocation against sym.
func reloc(t *testing.T, f testFixture, sym string) int {
	t.Helper()
	for _, r := range f.Function.PreRelocs {
		if r.Symbol == sym {
			return int(r.Offset)
		}
	}
	t.Fatalf("%s has no relocation against %s", f.Function.Name, sym)
	return 0
}

// BenchmarkMatch matches every fixture's function at its address and
// reports the time per KiB of pack code.
func BenchmarkMatch(b *testing.B) {
	names, _ := filepath.Glob("testdata/*.json")
	var fixtures []testFixture
	total := 0
	for _, n := range names {
		f := loadFixture(b, strings.TrimSuffix(filepath.Base(n), ".json"))
		fixtures = append(fixtures, f)
		total += len(f.Function.PreCode)
	}
	b.SetBytes(int64(total))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, f := range fixtures {
			if _, err := MatchAt(&f.Function, f.Memory[0].Addr, f.Memory[0].Code, f.syms, Options{}); err != nil && len(f.Memory) == 1 {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/(float64(total)/1024), "ns/KiB")
}
