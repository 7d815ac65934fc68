package loader

import (
	"errors"
	"strings"
	"testing"

	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/pack"
)

func TestCheckLivepatch(t *testing.T) {
	syms, err := kallsyms.Parse(strings.NewReader(`ffffffff81000000 T _stext
ffffffff82a1c2c0 D __tracepoint_task_rename
0000000000019c60 D process_counts
ffffffff81200000 t dup
ffffffff81300000 t dup
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  string // "" for no refusal
	}{
		{nil, ""},
		{[]string{"__tracepoint_task_rename", "process_counts"}, ""},
		{[]string{"process_counts", "gone"}, "no symbol gone"},
		{[]string{"dup"}, "2 symbols named dup"},
	} {
		err := checkLivepatch(&pack.Manifest{ID: "u", Livepatch: tc.names}, syms)
		var le *Error
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.names, err)
		case tc.want != "" && (!errors.As(err, &le) || le.Kind != KindSymbol || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want a symbol refusal saying %q", tc.names, err, tc.want)
		}
	}
}
