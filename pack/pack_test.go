package pack

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/livesplice/livesplice/sign"
	"github.com/livesplice/livesplice/sign/signtest"
)

func testManifest() Manifest {
	return Manifest{
		ID:         "demo-1",
		Target:     Target{Release: "6.1.0-56-amd64"},
		Module:     "livesplice_demo_1.ko",
		ModuleName: "livesplice_demo_1",
		Functions: []Function{{
			Name: "cmdline_proc_show", Object: Vmlinux, Source: "fs/proc/cmdline.o", Size: 12, NewSize: 20, SiteOffset: 5,
			PreCode: make([]byte, 12),
			Cold:    []Function{{Name: "cmdline_proc_show.cold", Object: Vmlinux, Source: "fs/proc/cmdline.o", Size: 3, PreCode: make([]byte, 3)}},
		}},
		Symbols: []Symbol{{Name: "text_poke", Object: Vmlinux}, {Name: "cmdline_proc_show", Object: Vmlinux}},
	}
}

func TestRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "p.tar.xz")
	files := map[string][]byte{"livesplice_demo_1.ko": []byte("\x7fELF module")}
	if err := Write(out, testManifest(), files); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.ID != "demo-1" || p.Manifest.Functions[0].Name != "cmdline_proc_show" || p.Manifest.Functions[0].Cold[0].Name != "cmdline_proc_show.cold" {
		t.Errorf("manifest did not survive: %+v", p.Manifest)
	}
	if !bytes.Equal(p.Files["livesplice_demo_1.ko"], files["livesplice_demo_1.ko"]) {
		t.Errorf("module bytes changed")
	}
}

// rawPack builds a pack by hand so that tests can damage it.
func rawPack(t *testing.T, members map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(xw)
	for name, data := range members {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	xw.Close()
	return buf.Bytes()
}

func TestReadRefuses(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.tar.xz")
	if err := Write(good, testManifest(), map[string][]byte{"livesplice_demo_1.ko": []byte("module")}); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	mj := func(edit func(*Manifest)) string {
		m := p.Manifest
		edit(&m)
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.Encode(m)
		return b.String()
	}
	goodData, _ := os.ReadFile(good)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", goodData[:len(goodData)/2], "pack"},
		{"not xz", []byte("hello"), "not an xz stream"},
		{"no manifest", rawPack(t, map[string]string{"livesplice_demo_1.ko": "module"}), "no manifest.json"},
		{"damaged module", rawPack(t, map[string]string{ManifestName: mj(func(*Manifest) {}), "livesplice_demo_1.ko": "mod"}), "is damaged"},
		{"extra member", rawPack(t, map[string]string{ManifestName: mj(func(*Manifest) {}), "livesplice_demo_1.ko": "module", "x": ""}), "not listed"},
		{"missing module", rawPack(t, map[string]string{ManifestName: mj(func(*Manifest) {})}), "does not hold"},
		{"path", rawPack(t, map[string]string{"../evil": ""}), "not a plain file name"},
		{"bad id", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) { m.ID = "Bad ID" })}), "update id"},
		{"no functions", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) { m.Functions = nil })}), "functions is missing"},
		{"short code", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) { m.Functions[0].PreCode = nil })}), "inconsistent"},
		{"short cold part", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) {
			m.Functions = []Function{m.Functions[0]}
			m.Functions[0].Cold = []Function{{Name: "cmdline_proc_show.cold", Object: Vmlinux, Size: 4, PreCode: make([]byte, 3)}}
		})}), "inconsistent"},
		{"cold part elsewhere", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) {
			m.Functions = []Function{m.Functions[0]}
			m.Functions[0].Cold = []Function{{Name: "cmdline_proc_show.cold", Object: "ext4", Size: 3, PreCode: make([]byte, 3)}}
		})}), "inconsistent"},
		{"relocation past the code", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) {
			m.Functions = []Function{m.Functions[0]}
			m.Functions[0].PreRelocs = []Reloc{{Offset: 10, Type: elf.R_X86_64_PC32, Symbol: "x"}}
		})}), "inconsistent"},
		{"site past the code", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) {
			m.Functions = []Function{m.Functions[0]}
			m.Functions[0].PreSites = []Site{{Kind: SiteJumpLabel, Offset: 10, Len: 5}}
		})}), "inconsistent"},
		{"future format", rawPack(t, map[string]string{ManifestName: mj(func(m *Manifest) { m.Format = 99 })}), "format 99"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "p.tar.xz")
		os.WriteFile(path, tt.data, 0o644)
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v, want an error naming %s and containing %q", tt.name, err, path, tt.want)
		}
	}
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"demo-cmdline", true},
		{"cve-2024-1234", true},
		{strings.Repeat("a", 44), true},
		{strings.Repeat("a", 45), false}, // livesplice_ + 45 > the kernel's 55
		{"", false},
		{"-x", false},
		{"Fix", false},
		{"a_b", false},
	}
	for _, tt := range tests {
		if err := CheckID(tt.id); (err == nil) != tt.ok {
			t.Errorf("CheckID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

// The model's typed fields are written by name and read back as the same
// values; unknown names are refused.
func TestModelJSON(t *testing.T) {
	f := Function{Name: "f", Object: Vmlinux, Source: "fs/x.o", Size: 1, PreCode: []byte{0xc3},
		PreRelocs: []Reloc{{Offset: 1, Type: elf.R_X86_64_PLT32, Symbol: "__fentry__", Addend: -4}},
		PreSites:  []Site{{Kind: SiteJumpLabel, Offset: 5, Len: 2, Target: 9}, {Kind: SiteAlternative, Offset: 7, Len: 3}}}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"R_X86_64_PLT32"`, `"kind":"jump_label"`, `"kind":"alternative"`, `"object":"vmlinux"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var g Function
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if g.PreRelocs[0] != f.PreRelocs[0] || g.PreSites[0].Kind != SiteJumpLabel || g.PreSites[1].Kind != SiteAlternative {
		t.Errorf("read back %+v, want %+v", g, f)
	}
	for _, bad := range []string{
		`{"pre_relocs":[{"offset":1,"type":"R_X86_64_BOGUS","symbol":"x"}]}`,
		`{"pre_sites":[{"kind":"static_call"}]}`,
	} {
		if err := json.Unmarshal([]byte(bad), &g); err == nil {
			t.Errorf("%s: read without an error", bad)
		}
	}
}

func TestFieldSize(t *testing.T) {
	for _, tc := range []struct {
		t    elf.R_X86_64
		size int
		pc   bool
	}{
		{elf.R_X86_64_PC32, 4, true}, {elf.R_X86_64_PLT32, 4, true}, {elf.R_X86_64_32S, 4, false},
		{elf.R_X86_64_32, 4, false}, {elf.R_X86_64_64, 8, false}, {elf.R_X86_64_PC64, 8, true},
		{elf.R_X86_64_GOTPCREL, 0, false},
	} {
		if got := FieldSize(tc.t); got != tc.size || PCRelative(tc.t) != tc.pc {
			t.Errorf("%v: size %d pc %v, want %d %v", tc.t, got, PCRelative(tc.t), tc.size, tc.pc)
		}
	}
}

// TestReadSigned: a signed pack reads as the same pack; a damaged
// signature trailer is a format error.
func TestReadSigned(t *testing.T) {
	raw := seedPack(t)
	signed, err := sign.Append(raw, signtest.NewKey(t, "pack signer", 1))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(signed))
	if err != nil {
		t.Fatalf("signed pack: %v", err)
	}
	if !sameManifest(t, want.Manifest, got.Manifest) || !sameFiles(want.Files, got.Files) {
		t.Fatal("the signed pack reads differently")
	}
	bad := bytes.Clone(signed)
	bad[len(bad)-len(sign.Magic)-12+2] = 9 // id_type
	if _, err := Read(bytes.NewReader(bad)); !errors.Is(err, sign.ErrMalformed) {
		t.Fatalf("damaged trailer: %v, want ErrMalformed", err)
	}
}
