package demo

import (
	"bytes"
	"os"
	"testing"
)

func TestOtherModuleBuild(t *testing.T) {
	ko, err := os.ReadFile("/lib/modules/" + Kernel56.Release + "/kernel/fs/binfmt_misc.ko")
	if err != nil {
		t.Fatalf("%v (run `make kernel-inputs`)", err)
	}
	other, err := OtherModuleBuild(ko)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(other, []byte(moduleSigMarker)) || len(other) >= len(ko) {
		t.Fatalf("the signature is still there (%d of %d bytes)", len(other), len(ko))
	}
	diff := 0
	for i := range other {
		if other[i] != ko[i] {
			diff++
			if other[i] != 0x56 || ko[i] != 0x57 || ko[i-1] != 0x41 {
				t.Errorf("byte %#x: %#x, was %#x", i, other[i], ko[i])
			}
		}
	}
	if diff != 1 {
		t.Errorf("%d bytes differ, want 1", diff)
	}
	if _, err := OtherModuleBuild([]byte("not a module")); err == nil {
		t.Error("OtherModuleBuild of garbage succeeded")
	}
}
