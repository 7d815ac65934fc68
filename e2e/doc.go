// Package e2e holds the end-to-end tests: a real patch built from Debian's
// source, applied, listed and undone on Debian's own kernel in qemu, and
// packs the target must refuse. They need the kernel inputs that
// `make kernel-inputs` installs and prepares; without them they fail.
package e2e
