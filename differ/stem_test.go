package differ

import "testing"

// stem takes out every "." followed by digits, as the regular
// expression `\.[0-9]+` replaced by "" does.
func TestStem(t *testing.T) {
	for in, want := range map[string]string{
		"foo": "foo", "foo.isra.3": "foo.isra", "counter.7": "counter", "foo.constprop.0.isra.1": "foo.constprop.isra",
		"a.12b.3": "ab", "a..1": "a.", "x.": "x.", ".5": "", "__func__.42": "__func__", "p.part.0.cold": "p.part.cold",
	} {
		if got := stem(in); got != want {
			t.Errorf("stem(%q) = %q, want %q", in, got, want)
		}
	}
}
