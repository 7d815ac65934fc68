package module

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestEntrySizes(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testHeaders, "Makefile")); err != nil {
		t.Fatalf("kernel headers missing (run `make kernel-inputs`): %v", err)
	}
	m, err := probeSizes(context.Background(), testHeaders)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("entry sizes: %v", m)
	for _, p := range entryProbe {
		if m[p[0]] <= 0 {
			t.Errorf("%s = %d", p[0], m[p[0]])
		}
	}
	// Facts of Debian's 6.1 x86-64 kernel, to catch a probe that reads the
	// wrong thing (the differ never uses these numbers).
	for k, v := range map[string]int{"__ex_table": 12, "__jump_table": 16, ".orc_unwind": 6, ".return_sites": 4} {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
	again, err := EntrySizes(context.Background(), testHeaders)
	if err != nil || len(again) != len(m) {
		t.Fatalf("EntrySizes = %v, %v", again, err)
	}
	ex, err := Exported(testHeaders)
	if err != nil || !ex["_copy_from_user"] || !ex["__x86_return_thunk"] || ex["text_poke"] {
		t.Errorf("Exported: %v (_copy_from_user %v, __x86_return_thunk %v, text_poke %v)", err, ex["_copy_from_user"], ex["__x86_return_thunk"], ex["text_poke"])
	}
}
