// Command commwrite writes to /proc/self/comm the way the special
// scenario needs: through a bad pointer (fault), through a buffer whose
// first byte is readable and the rest is not (fault-later), with a
// leading NUL (empty), or a name.
// It is built static and runs in the guest.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: commwrite fault|fault-later|empty|name NAME")
		os.Exit(2)
	}
	fd, err := syscall.Open("/proc/self/comm", syscall.O_WRONLY, 0)
	if err != nil {
		fmt.Println("open /proc/self/comm:", err)
		os.Exit(1)
	}
	var ptr uintptr
	var n int
	var data []byte
	switch os.Args[1] {
	case "fault":
		// An address no process maps: copy_from_user must fail.
		ptr, n = 0x10, 4
	case "fault-later":
		// One readable byte at the end of a page, then an unreadable page:
		// a first-byte read succeeds, the copy of the name faults.
		page := os.Getpagesize()
		mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			fmt.Println("mmap:", err)
			os.Exit(1)
		}
		if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
			fmt.Println("mprotect:", err)
			os.Exit(1)
		}
		mem[page-1] = 'x'
		ptr, n = uintptr(unsafe.Pointer(&mem[page-1])), 4
	case "empty":
		data = []byte("\x00nameless")
	case "name":
		data = []byte(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	if data != nil {
		ptr, n = uintptr(unsafe.Pointer(&data[0])), len(data)
	}
	r, _, errno := syscall.Syscall(syscall.SYS_WRITE, uintptr(fd), ptr, uintptr(n))
	if errno != 0 {
		fmt.Printf("commwrite %s: errno %d (%s)\n", os.Args[1], int(errno), errnoName(errno))
	} else {
		fmt.Printf("commwrite %s: wrote %d\n", os.Args[1], int(r))
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	fmt.Printf("comm now %q\n", string(comm))
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EFAULT:
		return "EFAULT"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EBUSY:
		return "EBUSY"
	}
	return e.Error()
}
