package main

import "testing"

func TestUndidRE(t *testing.T) {
	tests := []struct {
		rec                     string
		id, ns, work, tasks, by string
		match                   bool
	}{
		{"livesplice_x: undid demo (1 function(s), 1 object(s) live): stop 52000 ns, work 9000 ns, 2 task(s) walked in the stop",
			"demo", "52000", "9000", "2", "", true},
		{"livesplice_x: undid demo (1 function(s), 1 object(s) live): stop 52000 ns, work 9000 ns, 40 task(s) walked in the stop, by the pass over every task",
			"demo", "52000", "9000", "40", ", by the pass", true},
		{"livesplice_x: undid old (1 function(s), 1 object(s) live): stop 7 ns, work 3 ns", "old", "7", "3", "", "", true},
		{"livesplice_x: applied demo (1 function(s), 1 object(s) live): stop 7 ns, work 3 ns", "", "", "", "", "", false},
	}
	for _, tt := range tests {
		m := undidRE.FindStringSubmatch(tt.rec)
		if (m != nil) != tt.match {
			t.Errorf("%q: match %v, want %v", tt.rec, m != nil, tt.match)
			continue
		}
		if m == nil {
			continue
		}
		if got := [5]string{m[1], m[2], m[3], m[4], m[5]}; got != [5]string{tt.id, tt.ns, tt.work, tt.tasks, tt.by} {
			t.Errorf("%q: got %q", tt.rec, got)
		}
	}
}
