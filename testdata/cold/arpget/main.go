// Command arpget shows which arp_ioctl the kernel runs. It names the
// loopback device with IFNAMSIZ-1 characters, then asks for an ARP entry
// (SIOCGARP) on it with an arp_dev that fills all IFNAMSIZ bytes, no NUL.
// Before the 6.1.190 fix in testdata/corpus (net/ipv4/arp.c) the kernel
// looks up that 16-character name and finds no device: ENODEV. With it
// the name is cut at IFNAMSIZ-1, the device is found and has no such
// entry: ENXIO. It is built static and runs in the guest as root.
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// name has IFNAMSIZ-1 characters.
const name = "lsarp0123456789"

// arpreq is struct arpreq of include/uapi/linux/if_arp.h.
type arpreq struct {
	pa, ha  syscall.RawSockaddrInet4
	flags   int32
	netmask syscall.RawSockaddrInet4
	dev     [syscall.IFNAMSIZ]byte
}

// ifreq is struct ifreq with ifr_newname or ifr_flags.
type ifreq struct {
	name [syscall.IFNAMSIZ]byte
	data [24]byte
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// rename gives lo the name, once per boot (a device is renamed down).
func rename(fd int) error {
	var r ifreq
	copy(r.name[:], name)
	if ioctl(fd, syscall.SIOCGIFFLAGS, unsafe.Pointer(&r)) == nil {
		return nil
	}
	r = ifreq{}
	copy(r.name[:], "lo")
	copy(r.data[:], name)
	if err := ioctl(fd, syscall.SIOCSIFNAME, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("renaming lo to %s: %w", name, err)
	}
	return nil
}

func main() {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		fmt.Println("socket:", err)
		os.Exit(1)
	}
	if err := rename(fd); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	r := arpreq{pa: syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: [4]byte{127, 0, 0, 2}}}
	copy(r.dev[:], name+"X")
	err = ioctl(fd, syscall.SIOCGARP, unsafe.Pointer(&r))
	var errno syscall.Errno
	switch {
	case err == nil:
		fmt.Println("arpget: found")
	case errors.As(err, &errno):
		fmt.Printf("arpget: errno %d (%s)\n", int(errno), errnoName(errno))
	}
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENODEV:
		return "ENODEV"
	case syscall.ENXIO:
		return "ENXIO"
	}
	return e.Error()
}
