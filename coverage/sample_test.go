package coverage

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/livesplice/livesplice/corpus"
	"github.com/livesplice/livesplice/pack"
)

// fakeManifest has the corpus delta's mix: 192 vmlinux, 792 module, and
// rows that are not candidates.
func fakeManifest() map[string]*corpus.Entry {
	m := map[string]*corpus.Entry{}
	add := func(n int, kind, loc string) {
		for i := range n {
			p := fmt.Sprintf("%s-%s-%03d.patch", kind, loc, i)
			m[p] = &corpus.Entry{Patch: p, Kind: kind, Location: loc}
		}
	}
	add(192, "c", "vmlinux")
	add(792, "c", "module:m.ko")
	add(480, "c", "not-built")
	add(202, "h", "header")
	return m
}

func names(es []*corpus.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Patch)
	}
	return out
}

func TestOrder(t *testing.T) {
	m := fakeManifest()
	cands := Candidates(m)
	if len(cands) != 984 {
		t.Fatalf("%d candidates, want 984 (.c in vmlinux or a module)", len(cands))
	}
	a := Order(Candidates(m), DefaultSeed)
	b := Order(Candidates(m), DefaultSeed)
	if !reflect.DeepEqual(names(a), names(b)) {
		t.Error("the same seed gives two orders")
	}
	if reflect.DeepEqual(names(a), names(Order(Candidates(m), DefaultSeed+1))) {
		t.Error("another seed gives the same order")
	}
	if reflect.DeepEqual(names(a), names(cands)) {
		t.Error("the order is the sorted one")
	}
	seen := map[string]bool{}
	for _, e := range a {
		if seen[e.Patch] {
			t.Fatalf("%s twice", e.Patch)
		}
		seen[e.Patch] = true
	}
	if len(seen) != len(cands) {
		t.Fatalf("order has %d patches, want %d", len(seen), len(cands))
	}
	// Every prefix keeps the proportion within one patch.
	vm := 0
	for k, e := range a {
		if Stratum(e) == StratumVmlinux {
			vm++
		}
		want := float64(k+1) * 192 / 984
		if d := float64(vm) - want; d > 1 || d < -1 {
			t.Fatalf("after %d patches %d vmlinux, want %.1f +- 1", k+1, vm, want)
		}
	}
}

func TestPick(t *testing.T) {
	m := fakeManifest()
	got, err := Pick(m, []string{"c-module:m.ko-005.patch", "c-vmlinux-001.patch"})
	if err != nil || len(got) != 2 || got[0].Patch != "c-module:m.ko-005.patch" {
		t.Fatalf("Pick = %v, %v", names(got), err)
	}
	for _, bad := range []string{"nope.patch", "c-not-built-001.patch", "h-header-001.patch"} {
		if _, err := Pick(m, []string{bad}); err == nil {
			t.Errorf("Pick(%s): no error", bad)
		}
	}
}

// Pack ids are valid update ids, and distinct, for every patch of the
// repository's copy of the corpus manifest and for long names.
func TestPackID(t *testing.T) {
	m, err := corpus.ReadManifest(filepath.Join("..", "testdata", "corpus", corpus.DeltaName, "manifest.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	patches := []string{
		"drivers__gpu__drm__amd__display__dc__dml__dcn32__display_mode_vba_util_32.c.patch",
		"drivers__gpu__drm__amd__display__dc__dml__dcn31__display_mode_vba_util_32.c.patch",
		"a.c.patch", "A__B.c.patch",
	}
	for p := range m {
		patches = append(patches, p)
	}
	seen := map[string]string{}
	for _, p := range patches {
		id := PackID(p)
		if err := pack.CheckID(id); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s both get id %s", p, other, id)
		}
		seen[id] = p
	}
	if got := PackID("net__ipv4__arp.c.patch"); got[:len("c-net-ipv4-arp-")] != "c-net-ipv4-arp-" {
		t.Errorf("PackID(net__ipv4__arp.c.patch) = %s, want c-net-ipv4-arp-HASH", got)
	}
}
