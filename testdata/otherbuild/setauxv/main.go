// Command setauxv shows which prctl_set_auxv the kernel runs: it replaces
// its own auxiliary vector with a single entry, AT_PAGESZ (prctl
// PR_SET_MM, PR_SET_MM_AUXV, 16 bytes), and prints how many entries
// /proc/self/auxv then has, AT_NULL included. Before the 6.1.190 fix in
// testdata/corpus (kernel/sys.c) only the 16 bytes given are copied and
// the rest of the old vector stays: many entries. With it the whole
// vector is replaced, zero-filled: 2 entries.
// It is built static and runs in the guest as root (CAP_SYS_RESOURCE).
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// From include/uapi/linux/prctl.h and auxvec.h.
const (
	prSetMM     = 35
	prSetMMAuxv = 12
	atPageSz    = 6
)

func main() {
	auxv := [2]uint64{atPageSz, 4096}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMM, prSetMMAuxv,
		uintptr(unsafe.Pointer(&auxv[0])), unsafe.Sizeof(auxv), 0, 0); errno != 0 {
		fmt.Println("prctl(PR_SET_MM, PR_SET_MM_AUXV):", errno)
		os.Exit(1)
	}
	runtime.KeepAlive(&auxv)
	data, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("auxv entries: %d\n", entries(data))
}

// entries counts the (type, value) pairs of an auxiliary vector up to and
// including its AT_NULL.
func entries(auxv []byte) int {
	n := 0
	for off := 0; off+16 <= len(auxv); off += 16 {
		n++
		if binary.LittleEndian.Uint64(auxv[off:]) == 0 {
			break
		}
	}
	return n
}
