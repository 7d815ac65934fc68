package tail

import "testing"

func TestLines(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb"},
		{"", 3, ""},
		{"one", 1, "one"},
	}
	for _, tt := range tests {
		if got := Lines(tt.in, tt.n); got != tt.want {
			t.Errorf("Lines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
