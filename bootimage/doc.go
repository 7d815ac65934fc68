// Package bootimage reads the running kernel's code from its boot image on
// disk, for run-pre matching when /proc/kcore cannot be read.
//
// Before it patches, the loader compares the code an update was built from
// with the code of the running kernel. It normally reads the running code
// from /proc/kcore (package kcore), but lockdown=confidentiality forbids
// that file. The fallback is the image the kernel was booted from,
// /boot/vmlinuz-$(uname -r):
//
//  1. Open parses the bzImage's setup header (Documentation/x86/boot.rst:
//     setup_sects, payload_offset, payload_length) and decompresses the
//     payload. Debian's kernels are built with CONFIG_KERNEL_XZ, and
//     scripts/xz_wrap.sh compresses with the x86 BCJ filter in front of
//     LZMA2, a chain github.com/ulikunitz/xz's stream reader refuses;
//     package internal/xzdec reads it. The
//     payload is vmlinux.bin (the ELF, stripped with objcopy -S) followed by
//     vmlinux.relocs, the KASLR relocation table.
//  2. BuildID returns the ELF's NT_GNU_BUILD_ID note. The loader compares it
//     with RunningBuildID("/sys/kernel/notes") to prove that the file on
//     disk is the kernel that is running.
//  3. Relocate takes the running address of _text (from /proc/kallsyms)
//     and applies the relocation table for the KASLR offset the way the
//     decompressor's handle_relocations() did at boot.
//  4. Read returns bytes at running addresses. It has the signature of
//     kcore.Mem.Read, so the matcher takes either.
//
// # Limits
//
// The image holds the code as compiled, not as it runs: at boot and later
// the kernel rewrites its own text. Alternatives and paravirt patching,
// return thunks (a `jmp __x86_return_thunk` becomes `ret; int3...`),
// retpolines, the ftrace call at function entry (`call __fentry__` becomes
// a 5-byte NOP), jump labels and static calls all differ between the image
// and memory; the run-pre matcher tolerates both forms at those places. On
// Debian's 6.1.0-56-amd64, after relocation, 96.8% and 97.8% of the bytes of
// _stext.._etext equal /proc/kcore dumps of two qemu boots (other CPU
// models, other KASLR offsets); counting the fentry NOPs and return thunks
// as equal, 99.7%; the rest is alternatives, jump labels, static calls and
// paravirt sites. Every field the relocation table names in the text
// equals memory exactly.
//
// Code freed after boot (.init.text) and code patched by earlier live
// updates are still read as they are in the image. Only bytes stored in the
// file can be read, not .bss.
//
// Open holds the decompressed ELF in memory (62 MiB for 6.1, plus 0.9 MiB
// of resolved relocations) and takes 3 to 5 seconds, nearly all of it
// LZMA2 decoding; Relocate takes a few milliseconds.
package bootimage
