// Package tail keeps the end of long command output for error messages.
package tail

import "strings"

// Lines returns the last n lines of s, without a trailing newline.
func Lines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
