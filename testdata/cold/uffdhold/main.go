// Command uffdhold keeps a task inside the cold part of
// __io_uring_register: gcc moved the __cold io_register_iowq_aff, which
// copies an io-wq affinity mask from userspace, into
// __io_uring_register.cold. The mask is on a page that userfaultfd holds
// back, so the copy, and with it the task, waits there. uffdhold prints
// "holding" once the task waits, gives the page when /tmp/release
// appears, and prints what io_uring_register returned. It is built static
// and runs in the guest as root.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// From include/uapi/linux/userfaultfd.h and io_uring.h (x86-64).
const (
	sysUserfaultfd      = 323
	sysIOUringSetup     = 425
	sysIOUringRegister  = 427
	uffdAPI             = 0xaa
	uffdioAPI           = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister      = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioZeropage      = 0xc020aa04 // _IOWR(0xAA, 0x04, struct uffdio_zeropage)
	registerModeMissing = 1
	registerIOWQAff     = 17 // IORING_REGISTER_IOWQ_AFF
	pageSize            = 4096
	release             = "/tmp/release"
)

func fail(what string, err error) {
	fmt.Printf("uffdhold: %s: %v\n", what, err)
	os.Exit(1)
}

func ioctl(fd, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func main() {
	uffd, _, errno := syscall.Syscall(sysUserfaultfd, syscall.O_CLOEXEC, 0, 0)
	if errno != 0 {
		fail("userfaultfd", errno)
	}
	api := [3]uint64{uffdAPI, 0, 0}
	if err := ioctl(uffd, uffdioAPI, unsafe.Pointer(&api)); err != nil {
		fail("UFFDIO_API", err)
	}
	page, err := syscall.Mmap(-1, 0, pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		fail("mmap", err)
	}
	start := uint64(uintptr(unsafe.Pointer(&page[0])))
	reg := [4]uint64{start, pageSize, registerModeMissing, 0}
	if err := ioctl(uffd, uffdioRegister, unsafe.Pointer(&reg)); err != nil {
		fail("UFFDIO_REGISTER", err)
	}
	var params [15]uint64 // struct io_uring_params, 120 bytes
	ring, _, errno := syscall.Syscall(sysIOUringSetup, 4, uintptr(unsafe.Pointer(&params)), 0)
	if errno != 0 {
		fail("io_uring_setup", errno)
	}

	done := make(chan string)
	go func() {
		runtime.LockOSThread()
		r, _, errno := syscall.Syscall6(sysIOUringRegister, ring, registerIOWQAff, uintptr(start), 8, 0, 0)
		done <- fmt.Sprintf("io_uring_register returned %d, errno %d", int(r), int(errno))
	}()

	// The fault's message says the task waits for the page.
	msg := make([]byte, 32)
	if _, err := syscall.Read(int(uffd), msg); err != nil {
		fail("reading the fault", err)
	}
	fmt.Println("holding")
	for {
		if _, err := os.Stat(release); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	zero := [4]uint64{start, pageSize, 0, 0}
	if err := ioctl(uffd, uffdioZeropage, unsafe.Pointer(&zero)); err != nil {
		fail("UFFDIO_ZEROPAGE", err)
	}
	fmt.Println(<-done)
	runtime.KeepAlive(page)
}
