package module

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// nsObjectSrc calls a vmlinux export of the CXL namespace
// (insert_resource_expand_to_fit), as a cxl fix's replacement would.
const nsObjectSrc = `
struct resource;
extern int insert_resource_expand_to_fit(struct resource *root, struct resource *new);
extern int _printk(const char *fmt, ...);
unsigned long ls_test_slot = 0;

int ls_test_new(void)
{
	_printk("x");
	return insert_resource_expand_to_fit((void *)ls_test_slot, 0);
}
`

func TestNamespaces(t *testing.T) {
	requireHeaders(t)
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{testObjectSrc, nil},
		{nsObjectSrc, []string{"CXL"}},
	} {
		got, err := Namespaces(testHeaders, []string{compileObject(t, tc.src)})
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Namespaces = %q, %v; want %q", got, err, tc.want)
		}
	}
	if _, err := Namespaces(t.TempDir(), nil); err == nil {
		t.Errorf("Namespaces without Module.symvers: no error")
	}
}

// modpost refuses a module that uses a namespaced export without importing
// the namespace; with Spec.ImportNS from Namespaces it builds.
func TestBuildImportsNamespace(t *testing.T) {
	requireHeaders(t)
	obj := compileObject(t, nsObjectSrc)
	ns, err := Namespaces(testHeaders, []string{obj})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		importNS []string
		fails    string
	}{
		{"without", nil, "CXL"},
		{"with", ns, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(obj)
			spec.ImportNS = tc.importNS
			spec.Functions[0].NewSize = 64
			dir := filepath.Join(t.TempDir(), "kbuild")
			if _, err := Generate(spec, dir); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, err := Build(ctx, dir, testHeaders)
			switch {
			case tc.fails == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tc.fails != "" && (err == nil || !strings.Contains(err.Error(), tc.fails)):
				t.Fatalf("Build = %v, want modpost's refusal naming %s", err, tc.fails)
			}
		})
	}
}
