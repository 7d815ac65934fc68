// Command inotifymask shows the mask the kernel reports for an inotify
// watch: it watches / for IN_CREATE (0x100) and prints the "mask:" field
// of its descriptor's line in /proc/self/fdinfo, which fs/notify/fdinfo.c
// writes with inotify_mark_user_mask() (fs/notify/inotify/inotify.h).
// It is built static and runs in the guest.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		fmt.Println("inotify_init1:", err)
		os.Exit(1)
	}
	if _, err := syscall.InotifyAddWatch(fd, "/", syscall.IN_CREATE); err != nil {
		fmt.Println("inotify_add_watch:", err)
		os.Exit(1)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "inotify ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "mask:") {
				fmt.Println(f)
				return
			}
		}
	}
	fmt.Printf("no inotify line in fdinfo:\n%s", data)
	os.Exit(1)
}
