package builder

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// StableLines keeps __LINE__ stable across a patch. Given the unified diff
// (-p1, possibly several files; only the hunks of file are used) and post,
// the patched content of file, it returns post with `#line N` directives
// inserted so that every unchanged line after a hunk carries its pre line
// number, and every added line its line in post (a WARN the patch adds
// names the line a reader of the patched source finds it on): a change that only moves lines then changes no __LINE__ value
// (WARN, BUG, might_sleep, printk, ext4's __ext4_error(..., __LINE__, ...))
// and no code outside the edited functions.
//
// A directive is inserted only at a safe point: before the first unchanged
// line after a hunk whose previous line ends a statement or block (`;`,
// `{`, `}`), is blank, comment-only or a complete preprocessor directive,
// and not inside a block comment, a macro continuation (`\`) or an
// unterminated parenthesis (a macro's arguments). Until such a point, lines
// keep their post numbers. The returned content has as many lines as post
// plus the directives.
func StableLines(diff []byte, file string, post []byte) ([]byte, error) {
	hunks, err := fileHunks(diff, file)
	if err != nil {
		return nil, err
	}
	lines := splitLines(post)
	preOf, err := preLineNumbers(hunks, lines, file)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	var sc lineScanner
	cur := 1 // the number the compiler gives the next line
	for i, line := range lines {
		want := preOf[i]
		if want == 0 {
			want = i + 1 // an added line: its line in the patched source
		}
		if want != cur && sc.safe() {
			fmt.Fprintf(&out, "#line %d\n", want)
			cur = want
		}
		out.WriteString(line)
		sc.scan(line)
		cur++
	}
	return out.Bytes(), nil
}

// hunk is one hunk of a unified diff.
type hunk struct {
	oldStart, oldLen, newStart, newLen int
	lines                              []string // with their ' ', '-', '+' prefix, no newline
}

// fileHunks returns the hunks of file in a -p1 unified diff.
func fileHunks(diff []byte, file string) ([]hunk, error) {
	file = strings.TrimPrefix(file, "./")
	lines := strings.Split(string(diff), "\n")
	var hunks []hunk
	mine, found := false, false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "+++ "):
			name := strings.Fields(strings.TrimPrefix(l, "+++ "))
			mine = false
			if len(name) > 0 {
				p := name[0]
				if j := strings.IndexByte(p, '/'); j >= 0 {
					p = p[j+1:]
				}
				mine = p == file
				found = found || mine
			}
		case strings.HasPrefix(l, "@@ "):
			h, err := parseHunkHeader(l)
			if err != nil {
				return nil, fmt.Errorf("linemap: %s: diff line %d: %w", file, i+1, err)
			}
			old, nw := h.oldLen, h.newLen
			for old > 0 || nw > 0 {
				i++
				if i >= len(lines) {
					return nil, fmt.Errorf("linemap: %s: diff ends inside the hunk %q", file, l)
				}
				b := lines[i]
				if b == "" {
					b = " " // context line whose trailing space was stripped
				}
				switch b[0] {
				case ' ':
					old--
					nw--
				case '-':
					old--
				case '+':
					nw--
				case '\\':
					continue // "\ No newline at end of file"
				default:
					return nil, fmt.Errorf("linemap: %s: diff line %d: unexpected %q inside a hunk", file, i+1, b)
				}
				if old < 0 || nw < 0 {
					return nil, fmt.Errorf("linemap: %s: diff line %d: hunk %q longer than its header says", file, i+1, l)
				}
				h.lines = append(h.lines, b)
			}
			if mine {
				hunks = append(hunks, h)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("linemap: the diff does not touch %s", file)
	}
	return hunks, nil
}

func parseHunkHeader(l string) (hunk, error) {
	f := strings.Fields(l)
	if len(f) < 3 || !strings.HasPrefix(f[1], "-") || !strings.HasPrefix(f[2], "+") {
		return hunk{}, fmt.Errorf("bad hunk header %q", l)
	}
	var h hunk
	var err error
	if h.oldStart, h.oldLen, err = parseRange(f[1][1:]); err != nil {
		return hunk{}, fmt.Errorf("bad hunk header %q: %w", l, err)
	}
	if h.newStart, h.newLen, err = parseRange(f[2][1:]); err != nil {
		return hunk{}, fmt.Errorf("bad hunk header %q: %w", l, err)
	}
	return h, nil
}

func parseRange(s string) (int, int, error) {
	start, length, ok := strings.Cut(s, ",")
	a, err := strconv.Atoi(start)
	if err != nil {
		return 0, 0, err
	}
	n := 1
	if ok {
		if n, err = strconv.Atoi(length); err != nil {
			return 0, 0, err
		}
	}
	return a, n, nil
}

// splitLines splits b after each newline; the last line may lack one.
func splitLines(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i+1]))
		b = b[i+1:]
	}
	return out
}

// preLineNumbers returns, for each post line (0-based index), its pre line
// number, or 0 for an added line. It checks that post is what the hunks
// produce.
func preLineNumbers(hunks []hunk, lines []string, file string) ([]int, error) {
	preOf := make([]int, len(lines))
	post, pre := 1, 1 // next post and pre line numbers
	check := func(text string) error {
		if post > len(lines) {
			return fmt.Errorf("linemap: %s: the diff goes past the end of the patched file (line %d)", file, post)
		}
		if got := strings.TrimRight(lines[post-1], "\r\n"); got != text && strings.TrimRight(got, " \t") != strings.TrimRight(text, " \t") {
			return fmt.Errorf("linemap: %s: line %d is %q, the diff says %q: the diff does not describe this file", file, post, got, text)
		}
		return nil
	}
	for _, h := range hunks {
		start := h.newStart
		if h.newLen == 0 {
			start++
		}
		if start < post {
			return nil, fmt.Errorf("linemap: %s: hunks overlap or are out of order at line %d", file, h.newStart)
		}
		for post < start && post <= len(lines) {
			preOf[post-1] = pre
			post++
			pre++
		}
		oldStart := h.oldStart
		if h.oldLen == 0 {
			oldStart++
		}
		if pre != oldStart {
			return nil, fmt.Errorf("linemap: %s: hunk -%d +%d does not line up (pre line %d)", file, h.oldStart, h.newStart, pre)
		}
		for _, l := range h.lines {
			switch l[0] {
			case ' ':
				if err := check(l[1:]); err != nil {
					return nil, err
				}
				preOf[post-1] = pre
				post++
				pre++
			case '-':
				pre++
			case '+':
				if err := check(l[1:]); err != nil {
					return nil, err
				}
				post++
			}
		}
	}
	for ; post <= len(lines); post, pre = post+1, pre+1 {
		preOf[post-1] = pre
	}
	return preOf, nil
}

// lineScanner follows C lexical state line by line, enough to decide where
// a #line directive may go.
type lineScanner struct {
	inComment    bool // inside /* */
	parens       int  // unclosed ( and [
	continuation bool // previous line ended with a backslash
	inDirective  bool // previous line is (part of) a preprocessor directive
	lastBlank    bool // previous line had no code (blank or comment only)
	last         byte // last code character of the previous code line
	started      bool
}

// safe reports whether a directive may go before the next line.
func (s *lineScanner) safe() bool {
	if !s.started {
		return true
	}
	if s.inComment || s.continuation || s.parens > 0 {
		return false
	}
	return s.lastBlank || s.inDirective || s.last == ';' || s.last == '{' || s.last == '}'
}

func (s *lineScanner) scan(line string) {
	s.started = true
	text := strings.TrimRight(line, "\r\n")
	cont := strings.HasSuffix(strings.TrimRight(text, " \t"), "\\")
	directive := s.inDirective && s.continuation
	if !s.inComment && !s.continuation && strings.HasPrefix(strings.TrimLeft(text, " \t"), "#") {
		directive = true
	}
	var last byte
	code := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if s.inComment {
			if c == '*' && i+1 < len(text) && text[i+1] == '/' {
				s.inComment = false
				i++
			}
			continue
		}
		switch {
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			s.inComment = true
			i++
			continue
		case c == '/' && i+1 < len(text) && text[i+1] == '/':
			i = len(text)
			continue
		case c == '"' || c == '\'':
			for i++; i < len(text) && text[i] != c; i++ {
				if text[i] == '\\' {
					i++
				}
			}
			last, code = c, true
			continue
		case c == ' ' || c == '\t' || c == '\\' && i == len(strings.TrimRight(text, " \t"))-1:
			continue
		}
		if !directive {
			switch c {
			case '(', '[':
				s.parens++
			case ')', ']':
				if s.parens > 0 {
					s.parens--
				}
			}
		}
		last, code = c, true
	}
	s.continuation = cont
	s.inDirective = directive
	s.lastBlank = !code
	if code {
		s.last = last
	}
}
