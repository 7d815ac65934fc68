package runpre

import (
	"path/filepath"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/runpre/internal/fixture"
)

// testFixture is a fixture with its parsed kallsyms.
type testFixture struct {
	*fixture.Fixture
	syms *kallsyms.Table
}

func loadFixture(t testing.TB, name string) testFixture {
	t.Helper()
	f, syms, err := fixture.Load(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return testFixture{f, syms}
}

// rules returns the distinct rules of a match's steps.
func rules(steps []Step) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range steps {
		if !seen[s.Rule] {
			seen[s.Rule] = true
			out = append(out, s.Rule)
		}
	}
	return out
}
