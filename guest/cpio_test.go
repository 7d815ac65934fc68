package guest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseNewc reads a newc archive back, checking magic, padding and trailer.
func parseNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != newcMagic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, uid, gid, size := field(1), field(2), field(3), field(6)
		rmaj, rmin, namesize := field(9), field(10), field(11)
		if mtime := field(5); mtime != 0 {
			t.Errorf("mtime %d, want 0", mtime)
		}
		off += 110
		name := string(b[off : off+int(namesize)-1])
		if b[off+int(namesize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += int(namesize)
		align()
		if name == newcTrailer {
			if rest := b[off:]; len(bytes.Trim(rest, "\x00")) != 0 {
				t.Fatalf("%d bytes of garbage after trailer", len(rest))
			}
			return out
		}
		data := append([]byte(nil), b[off:off+int(size)]...)
		off += int(size)
		align()
		out = append(out, cpioEntry{Name: name, Mode: mode, UID: uid, GID: gid, Data: data, RdevMaj: rmaj, RdevMin: rmin})
	}
}

func TestNewcRoundTrip(t *testing.T) {
	in := []cpioEntry{
		{Name: "bin", Mode: modeDir | 0o755},
		{Name: "bin/a", Mode: modeRegular | 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "dev/console", Mode: modeCharDev | 0o600, RdevMaj: 5, RdevMin: 1},
		{Name: "empty", Mode: modeRegular | 0o644, Data: []byte{}},
		{Name: "odd-name-len", Mode: modeRegular | 0o4711, Data: []byte("12345"), UID: 7, GID: 8},
	}
	var buf bytes.Buffer
	w := newNewcWriter(&buf)
	for _, e := range in {
		if err := w.WriteEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
	got := parseNewc(t, buf.Bytes())
	if len(got) != len(in) {
		t.Fatalf("got %d entries, want %d", len(got), len(in))
	}
	for i := range in {
		g, w := got[i], in[i]
		if g.Name != w.Name || g.Mode != w.Mode || !bytes.Equal(g.Data, w.Data) ||
			g.UID != w.UID || g.GID != w.GID || g.RdevMaj != w.RdevMaj || g.RdevMin != w.RdevMin {
			t.Errorf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestNewcRejectsBadEntries(t *testing.T) {
	for _, e := range []cpioEntry{
		{Name: "", Mode: modeRegular | 0o644},
		{Name: "d", Mode: modeDir | 0o755, Data: []byte("x")},
	} {
		w := newNewcWriter(io.Discard)
		if err := w.WriteEntry(e); err == nil {
			t.Errorf("WriteEntry(%+v) succeeded, want error", e)
		}
	}
}

func TestUnixMode(t *testing.T) {
	tests := []struct {
		in   fs.FileMode
		want uint32
	}{
		{0o644, 0o100644},
		{0o755, 0o100755},
		{fs.ModeDir | 0o755, 0o040755},
		{fs.ModeDir | fs.ModeSticky | 0o777, 0o041777},
		{fs.ModeSymlink | 0o777, 0o120777},
		{fs.ModeSetuid | 0o755, 0o104755},
		{fs.ModeDevice | fs.ModeCharDevice | 0o600, 0o020600},
	}
	for _, tt := range tests {
		got, err := unixMode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("unixMode(%v) = %o, %v; want %o", tt.in, got, err, tt.want)
		}
	}
	if _, err := unixMode(fs.ModeNamedPipe | 0o644); err == nil {
		t.Error("unixMode(named pipe) succeeded, want error")
	}
}

// buildTestInitramfs builds an initramfs with a few files of each kind and
// returns its path.
func buildTestInitramfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, []byte("from host"), 0o750); err != nil {
		t.Fatal(err)
	}
	files := []File{
		Scenario("echo hello\n"),
		{Path: "/opt/tool/run", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "/opt/data.txt", Data: []byte("data")},
		{Path: "/opt/copied", Source: src},
		{Path: "/opt/emptydir", Mode: fs.ModeDir | 0o700},
		{Path: "/bin/ls-link", Link: "busybox"},
	}
	out := filepath.Join(dir, "initrd.gz")
	if err := BuildInitramfs(out, files); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildInitramfs(t *testing.T) {
	path := buildTestInitramfs(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := parseNewc(t, raw)
	byName := map[string]cpioEntry{}
	for i, e := range entries {
		if i > 0 && entries[i-1].Name >= e.Name {
			t.Errorf("entries not sorted: %q before %q", entries[i-1].Name, e.Name)
		}
		byName[e.Name] = e
	}
	busybox, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mode uint32
		data string // checked when non-empty
	}{
		{"init", 0o100755, initScript},
		{"scenario", 0o100755, "echo hello\n"},
		{"bin", 0o040755, ""},
		{"bin/busybox", 0o100755, string(busybox)},
		{"bin/sh", 0o120777, "busybox"},
		{"bin/ls-link", 0o120777, "busybox"},
		{"dev/console", 0o020600, ""},
		{"tmp", 0o041777, ""},
		{"proc", 0o040755, ""},
		{"sys", 0o040755, ""},
		{"opt", 0o040755, ""}, // implied parent
		{"opt/tool", 0o040755, ""},
		{"opt/tool/run", 0o100755, "#!/bin/sh\n"},
		{"opt/data.txt", 0o100644, "data"},
		{"opt/copied", 0o100750, "from host"},
		{"opt/emptydir", 0o040700, ""},
	}
	for _, tt := range tests {
		e, ok := byName[tt.name]
		if !ok {
			t.Errorf("%s missing from archive", tt.name)
			continue
		}
		if e.Mode != tt.mode {
			t.Errorf("%s: mode %o, want %o", tt.name, e.Mode, tt.mode)
		}
		if tt.data != "" && string(e.Data) != tt.data {
			t.Errorf("%s: %d bytes of data differ from the expected %d", tt.name, len(e.Data), len(tt.data))
		}
	}
	if c := byName["dev/console"]; c.RdevMaj != 5 || c.RdevMin != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.RdevMaj, c.RdevMin)
	}
}

// TestBuildInitramfsCpioTool lists the archive with GNU cpio, an independent
// reader of the newc format.
func TestBuildInitramfsCpioTool(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("cpio tool not found (apt-get install cpio): %v", err)
	}
	path := buildTestInitramfs(t)
	cmd := exec.Command("sh", "-c", `gzip -dc "$1" | "$2" -itv --quiet`, "sh", path, cpio)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	listing := map[string]string{} // name -> permission string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name := fields[len(fields)-1]
		if i := indexOf(fields, "->"); i > 0 {
			name = fields[i-1]
		}
		listing[name] = fields[0]
	}
	want := map[string]string{
		"init":         "-rwxr-xr-x",
		"scenario":     "-rwxr-xr-x",
		"bin":          "drwxr-xr-x",
		"bin/busybox":  "-rwxr-xr-x",
		"bin/sh":       "lrwxrwxrwx",
		"dev/console":  "crw-------",
		"tmp":          "drwxrwxrwt",
		"opt/tool/run": "-rwxr-xr-x",
		"opt/data.txt": "-rw-r--r--",
		"opt/copied":   "-rwxr-x---",
		"opt/emptydir": "drwx------",
	}
	for name, perm := range want {
		if got := listing[name]; got != perm {
			t.Errorf("cpio lists %s as %q, want %q\nfull listing:\n%s", name, got, perm, out)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestBuildInitramfsErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		files []File
		want  string // substring of the error
	}{
		{"relative path", []File{{Path: "bin/x", Data: []byte("x")}}, "bin/x"},
		{"duplicate", []File{{Path: "/x", Data: []byte("1")}, {Path: "/x", Data: []byte("2")}}, "/x"},
		{"missing source", []File{{Path: "/y", Source: filepath.Join(dir, "nope")}}, "nope"},
		{"dir with data", []File{{Path: "/d", Mode: fs.ModeDir | 0o755, Data: []byte("x")}}, "/d"},
		{"parent is a file", []File{{Path: "/f", Data: []byte("x")}, {Path: "/f/g", Data: []byte("y")}}, "/f"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("i%d.gz", i))
			err := BuildInitramfs(out, tt.files)
			if err == nil {
				t.Fatal("BuildInitramfs succeeded, want error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s left behind after failure", out)
			}
		})
	}
}
