package differ

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/livesplice/livesplice/elfobj"
)

// dieReader reads every entry as debug/dwarf does (offset, tag, children
// and the attributes readTypes uses), in DWARF 4 and 5.
func TestDIEReader(t *testing.T) {
	const src = `
enum color { RED, GREEN = 7, BLUE = -3 };
struct bits { unsigned a:3, b:5; long c; };
typedef struct { int n; char name[16]; struct bits b[2][3]; } rec_t;
union u { int i; void *p; };
extern void sink(void *);
static int vla(int n) { int a[n]; a[0] = n; sink(a); return a[n - 1]; }
int use(rec_t *r, union u *x, enum color c, const volatile int *q, ...) { return r->n + x->i + c + *q + vla(r->n); }
`
	for _, version := range []string{"-gdwarf-4", "-gdwarf-5"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			c, o := filepath.Join(dir, "x.c"), filepath.Join(dir, "x.o")
			if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{}, kernelFlags...), version, "-o", o, c)
			if out, err := exec.Command("gcc-12", args...).CombinedOutput(); err != nil {
				t.Fatalf("gcc-12: %v\n%s", err, out)
			}
			ef, err := elf.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			want, err := ef.DWARF() // debug/elf applies the relocations itself
			if err != nil {
				t.Fatal(err)
			}
			f, err := elfobj.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			r, err := dwarfOf(f)
			if err != nil || r == nil {
				t.Fatalf("dwarfOf: %v, %v", r, err)
			}
			wr := want.Reader()
			n := 0
			for {
				we, err := wr.Next()
				if err != nil {
					t.Fatal(err)
				}
				ge, err := r.next()
				if err != nil {
					t.Fatal(err)
				}
				if we == nil || ge == nil {
					if (we == nil) != (ge == nil) {
						t.Fatalf("after %d entries: debug/dwarf ends %v, dieReader ends %v", n, we == nil, ge == nil)
					}
					break
				}
				n++
				if got, want := describeDIE(ge), describeEntry(we); got != want {
					t.Errorf("entry %d:\n got %s\nwant %s", n, got, want)
				}
			}
			if n < 50 {
				t.Errorf("read %d entries, want more than 50", n)
			}
		})
	}
}

func describeDIE(d *die) string {
	off := d.off
	if d.tag == 0 {
		off = 0 // debug/dwarf gives null entries no offset
	}
	s := fmt.Sprintf("%#x %v children=%v name=%q", off, d.tag, d.children, d.name)
	if d.hasType {
		s += fmt.Sprintf(" type=%#x", d.typ)
	}
	if d.hasSib {
		s += fmt.Sprintf(" sibling=%#x", d.sibling)
	}
	return s + fmt.Sprintf(" decl=%v ext=%v size=%d loc=%d bits=%d const=%v count=%v ub=%v",
		d.decl, d.external, d.byteSize, d.memberLoc, d.bitOffset, d.constValue, d.count, d.upperBound)
}

func describeEntry(e *dwarf.Entry) string {
	name, _ := e.Val(dwarf.AttrName).(string)
	s := fmt.Sprintf("%#x %v children=%v name=%q", e.Offset, e.Tag, e.Children, name)
	if typ, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
		s += fmt.Sprintf(" type=%#x", typ)
	}
	if sib, ok := e.Val(dwarf.AttrSibling).(dwarf.Offset); ok {
		s += fmt.Sprintf(" sibling=%#x", sib)
	}
	ext, _ := e.Val(dwarf.AttrExternal).(bool)
	size, _ := e.Val(dwarf.AttrByteSize).(int64)
	var bits int64
	for _, a := range []dwarf.Attr{dwarf.AttrDataBitOffset, dwarf.AttrBitOffset} {
		if v, ok := e.Val(a).(int64); ok {
			bits += v
		}
	}
	var loc int64
	switch v := e.Val(dwarf.AttrDataMemberLoc).(type) {
	case int64:
		loc = v
	case []byte:
		loc = plusUconst(v)
	}
	return s + fmt.Sprintf(" decl=%v ext=%v size=%d loc=%d bits=%d const=%v count=%v ub=%v",
		e.Val(dwarf.AttrDeclaration) != nil, ext, size, loc, bits, e.Val(dwarf.AttrConstValue), e.Val(dwarf.AttrCount), e.Val(dwarf.AttrUpperBound))
}
