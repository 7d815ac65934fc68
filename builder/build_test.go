package builder_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/builder"
	"github.com/livesplice/livesplice/internal/cache"
	"github.com/livesplice/livesplice/pack"
)

const release = "6.1.0-56-amd64"

// realInputs returns the build options for Debian's prepared 6.1.0-56
// tree and headers and patch (relative to testdata), or fails the test
// saying how to get them.
func realInputs(t *testing.T, patch string) builder.Options {
	t.Helper()
	tree := &builder.Tree{Dir: cache.Tree(cache.Dir(), release), Release: release, CC: "gcc-12"}
	config, headers := "/boot/config-"+release, "/usr/src/linux-headers-"+release
	for _, p := range []string{config, headers, tree.Dir} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: run `make kernel-inputs` to install Debian's %s packages and prepare the tree", err, release)
		}
	}
	_, file, _, _ := runtime.Caller(0)
	work := t.TempDir()
	return builder.Options{
		Tree: tree, Config: config, Headers: headers, ID: "nextboot",
		Patch:   filepath.Join(filepath.Dir(file), "..", "testdata", patch),
		Out:     filepath.Join(work, "nextboot.tar.xz"),
		WorkDir: work,
	}
}

// A patch with nothing to do at run time is told apart from a refusal;
// one with run-time and boot-time changes ships the run-time part and
// names the rest.
func TestBuildNextBoot(t *testing.T) {
	tests := []struct {
		patch    string
		nextBoot string // "" and functions > 0: a pack is written
		funcs    string
	}{
		{patch: "comment-only.patch"},
		{patch: "init-only.patch", nextBoot: "fs/proc/cmdline.o: proc_cmdline_init (.init.text)"},
		{patch: "init-and-runtime.patch", nextBoot: "fs/proc/cmdline.o: proc_cmdline_init (.init.text)", funcs: "cmdline_proc_show"},
	}
	for _, tc := range tests {
		t.Run(tc.patch, func(t *testing.T) {
			o := realInputs(t, filepath.Join("nextboot", tc.patch))
			m, err := builder.Build(context.Background(), o)
			if tc.funcs == "" {
				var ne *builder.NothingToDoError
				if !errors.As(err, &ne) {
					t.Fatalf("Build = %v, want a NothingToDoError", err)
				}
				if got := strings.Join(ne.NextBoot, ","); got != tc.nextBoot {
					t.Errorf("NextBoot = %q, want %q", got, tc.nextBoot)
				}
				if !strings.Contains(err.Error(), "nothing to do at run time") {
					t.Errorf("message %q does not say there is nothing to do", err)
				}
				if _, err := os.Stat(o.Out); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a pack was written: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := pack.ReadFile(o.Out)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range p.Manifest.Functions {
				names = append(names, f.Name)
				if f.Object != pack.Vmlinux || f.Source != "fs/proc/cmdline.o" {
					t.Errorf("%s: object %q source %q, want vmlinux, fs/proc/cmdline.o", f.Name, f.Object, f.Source)
				}
			}
			if got := strings.Join(names, ","); got != tc.funcs {
				t.Errorf("functions = %q, want %q", got, tc.funcs)
			}
			if got := strings.Join(p.Manifest.NextBoot, ","); got != tc.nextBoot || got != strings.Join(m.NextBoot, ",") {
				t.Errorf("manifest NextBoot = %q (returned %q), want %q", got, m.NextBoot, tc.nextBoot)
			}
		})
	}
}

// An object another directory's Makefile builds is built as kbuild builds
// it: KVM's kvm_main.o into kvm.ko, not as a vmlinux object of its own
// directory.
func TestBuildOtherMakefile(t *testing.T) {
	o := realInputs(t, "kbuild/kvm-yield-to-no-boost.patch")
	m, err := builder.Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Functions) != 1 || m.Functions[0].Name != "kvm_vcpu_yield_to" || m.Functions[0].Object != "kvm" {
		t.Fatalf("functions %+v, want kvm_vcpu_yield_to of kvm", m.Functions)
	}
}

// A kbuild .cmd file cut short or interleaved by an earlier build (seen in
// a tree two builds had shared) does not stop the next build: it is
// removed and the object built again.
func TestBuildBrokenCmdFile(t *testing.T) {
	o := realInputs(t, filepath.Join("nextboot", "init-and-runtime.patch"))
	// Built and broken under the tree's lock, as builds use the tree; a
	// build that takes the lock before this one repairs the file too.
	unlock, err := o.Tree.Lock()
	if err != nil {
		t.Fatal(err)
	}
	cmd := filepath.Join(o.Tree.Dir, "fs/proc/.cmdline.o.cmd")
	err = o.Tree.Make(context.Background(), "fs/proc/cmdline.o")
	var data []byte
	if err == nil {
		data, err = os.ReadFile(cmd)
	}
	if err == nil {
		err = os.WriteFile(cmd, append(data, "\nm.o)\n"...), 0o644)
	}
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.Build(context.Background(), o); err != nil {
		t.Fatalf("Build with a broken %s: %v", cmd, err)
	}
	again, err := os.ReadFile(cmd)
	if err != nil || strings.Contains(string(again), "m.o)") {
		t.Errorf("%s was not rebuilt (%v)", cmd, err)
	}
}
