package demo

import (
	"slices"
	"testing"
)

func TestKernelProblems(t *testing.T) {
	tests := []struct {
		line    string
		problem bool
	}{
		{"[    1.234] WARNING: CPU: 1 PID: 99 at fs/proc/base.c:1728 comm_write+0x1a/0x120", true},
		{"[    0.311] Speculative Return Stack Overflow: WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options.", false},
		{"[    2.000] BUG: unable to handle page fault for address: 0000000000000008", true},
		{"[    2.000] general protection fault, probably for non-canonical address", true},
		{"[    0.000] Linux version 6.1.0-56-amd64", false},
	}
	for _, tt := range tests {
		got := KernelProblems("x\n" + tt.line + "\ny")
		if want := []string{tt.line}; tt.problem != slices.Equal(got, want) || !tt.problem && len(got) != 0 {
			t.Errorf("KernelProblems(%q) = %q, problem %v", tt.line, got, tt.problem)
		}
	}
}
