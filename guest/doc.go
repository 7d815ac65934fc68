// Package guest boots a Linux kernel in qemu (TCG, no KVM) with a busybox
// initramfs, runs one scenario script inside it and returns what the serial
// console printed. It is the harness the integration tests and the demo share.
//
// # Building the initramfs
//
// BuildInitramfs writes a gzip-compressed cpio archive in the "newc" format
// holding the static busybox (BusyboxPath on the host, /bin/busybox in the
// guest), the standard directories, /dev/console, our own /init (see InitScript)
// and the caller's files. Parent directories of the caller's files are
// created automatically (mode 0755). A caller's file whose path equals a
// built-in entry (for example /init or /bin/busybox) replaces it. The archive
// is deterministic: entries are sorted by path and every mtime is zero.
//
// # How a scenario is passed
//
// The scenario is always the file /scenario inside the initramfs; put it there
// with the Scenario helper (or any File with Path "/scenario"). /init runs it
// as
//
//	sh /scenario ARGS... </dev/null
//
// so the script decides for itself whether it wants "set -e". The scenario is
// parameterised by the kernel command line (Config.Append): the kernel passes
// every word of the form KEY=VALUE that it does not recognise to /init as an
// environment variable, which the scenario inherits (for example
// "SCENARIO=apply" gives $SCENARIO), and words without "=" become ARGS. Words
// that contain a dot before the "=" (foo.bar=1) are taken by the kernel as
// module parameters and do not reach the scenario.
//
// # How the exit status is reported
//
// /init prints MarkerStart on its own line before it runs the scenario and
// "@@guest-exit N" (MarkerExit followed by the status) after it, then powers
// the machine off with "poweroff -f". Run parses the last such line into
// Result.ExitCode, which is -1 when the guest never reported (kernel panic,
// hang, crash of /init). A non-zero scenario status is not an error of Run.
//
// # Guarantees of Run
//
// Run is always bounded by Config.Timeout (3 minutes by default) and by its
// context. qemu runs in its own process group with Pdeathsig set to SIGKILL;
// on timeout or cancellation the whole group is killed, and Run waits for it,
// so no qemu process outlives Run. The transcript has carriage returns
// stripped.
package guest
