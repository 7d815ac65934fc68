// Package kcore reads the running kernel's memory through /proc/kcore, the
// ELF core image the kernel exports to root. It is how livesplice looks at
// kernel text without changing it: to prove a refused update left the text
// as it was, and to compare code before patching it.
package kcore
