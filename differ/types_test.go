package differ

import (
	"strings"
	"testing"
)

// Layout changes are found by name, member, offset and member type, the
// types named from their DWARF entries (typeNamer).
func TestLayouts(t *testing.T) {
	const src = `
struct s { int a; long b; };
typedef struct { unsigned char tag; int *p; } anon_t;
struct outer { union { int i; float f; } u; int arr[4]; int (*fn)(const char *, ...); };
struct s gs; anon_t ga; struct outer go;
int use(void) { return gs.a + ga.tag + go.u.i + go.arr[1]; }
`
	tests := []struct {
		name, from, to, want string
	}{
		{"none", "", "", ""},
		{"member added", "long b; };", "long b; int c; };", "layout of struct s changed (struct s changed size 16 -> 24; member c added at offset 16)"},
		{"member type", "struct s { int a;", "struct s { unsigned int a;", "member a changed type int -> unsigned int"},
		{"typedef of anonymous struct", "int *p; } anon_t", "long *p; } anon_t", "layout of typedef struct anon_t changed (member p changed type *int -> *long int)"},
		{"anonymous union member", "union { int i; float f; } u", "union { int i; int f; } u", "member u changed type union {i int@0; f float@0} -> union {i int@0; f int@0}"},
		{"array bound", "int arr[4]", "int arr[5]", "member arr changed type [4]int -> [5]int"},
		{"function pointer", "int (*fn)(const char *, ...)", "int (*fn)(char *, ...)", "member fn changed type *func(*const char, ...) int -> *func(*char, ...) int"},
	}
	pre := build(t, "pre", src)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := Diff(pre, build(t, "post", strings.Replace(src, tc.from, tc.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range cs.Refused {
				if r.Kind == RefuseLayout {
					got = append(got, r.Reason)
				}
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("refused %q, want nothing", got)
			case tc.want != "" && !strings.Contains(strings.Join(got, "\n"), tc.want):
				t.Errorf("refused %q, want one saying %q", got, tc.want)
			}
		})
	}
}
