package builder

// The dependency index: which objects a changed file reaches.
//
// Kbuild records the headers an object used in dir/.file.o.cmd, but only
// once the object is built. A header change needs the users of the header
// among every object the tree's config builds, so the index is made once
// per prepared tree (Tree.DepIndex, cached next to the tree), in three
// steps:
//
//  1. `make -n` (a dry run: nothing is compiled and nothing in the tree is
//     written) prints every command Kbuild would run for vmlinux and the
//     modules: each compile command with its exact flags, each built-in.a
//     / lib.a archive with its members, each module's NAME.mod with its
//     objects. Objects already built are up to date and not printed:
//     their command comes from their .o.cmd file.
//  2. The 31 objects whose sources Kbuild generates (lib/raid6/int*.c,
//     the vDSO images, the ASN.1 parsers, capflags.c, ...) are built, so
//     that their sources exist.
//  3. A scan of the #include lines (in Go) from each object's source and
//     -include files, resolved with that object's own search path
//     (-iquote, -I, -isystem, -idirafter), ignoring #if: every include
//     the preprocessor could take is an edge of one include graph over
//     the tree's files.
//
// The graph over-approximates: a header behind `#ifdef CONFIG_X` with X
// off still counts. A lookup (Tree.Dependents) walks the graph backwards
// from the changed files to the candidate objects, then asks the
// preprocessor (`gcc -M` with each candidate's own flags, in parallel)
// which candidates really include a changed file under this config: the
// answer is exact, and the graph only has to never miss one. Computed
// includes are followed too: `#include MACRO` through the files that
// define MACRO as "x.h" or <x.h> (genl_magic's GENL_MAGIC_INCLUDE_FILE),
// and the trace headers' TRACE_INCLUDE(TRACE_INCLUDE_FILE) through the
// TRACE_SYSTEM, TRACE_INCLUDE_FILE and TRACE_INCLUDE_PATH a file
// defines. A computed include of another form makes every object that can
// reach it a candidate, left to the preprocessor.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livesplice/livesplice/differ"
	"github.com/livesplice/livesplice/internal/tail"
)

// indexVersion changes whenever the index's format or its making changes:
// a cached index of another version is made again.
const indexVersion = 2

// IndexObject is one object Kbuild compiles under the tree's config.
type IndexObject struct {
	// Path is the object, relative to the tree, as Kbuild names it, which
	// is also how make must be asked for it: fs/proc/cmdline.o, or
	// drivers/gpu/drm/amd/amdgpu/../display/dc/core/dc.o (amdgpu builds
	// its display code from its own directory, with its own flags).
	Path string `json:"path"`
	// Source is the file compiled (.c or .S), relative to the tree.
	Source string `json:"source"`
	// Module is the name of the module the object is compiled for
	// (-DMODULE), as the kernel knows it: from Kbuild's NAME.mod, else
	// KBUILD_MODNAME. "" when the object is not part of a module.
	Module string `json:"module,omitempty"`
	// Builtin says the object is a member of a built-in.a or lib.a
	// archive: it is linked into vmlinux. An object that is neither
	// built in nor part of a module is linked into something else (the
	// vDSO, for instance).
	Builtin bool `json:"builtin,omitempty"`
	// Args is the compile command, as Kbuild runs it from the top of the
	// tree: ids into DepIndex.Words.
	Args []int `json:"args"`
	// Roots are the files the preprocessor starts from: the source and
	// each -include or -imacros file, ids into DepIndex.Files.
	Roots []int `json:"roots"`
}

// DepIndex is the dependency index of one prepared tree.
type DepIndex struct {
	Version int `json:"version"`
	// Stamp identifies the tree's preparation (its stamp's sha256).
	Stamp   string        `json:"stamp"`
	Objects []IndexObject `json:"objects"`
	// Files are every file the scan reached, relative to the tree.
	Files []string `json:"files"`
	// Includes[i] are the files Files[i] may include (ids into Files).
	Includes [][]int `json:"includes"`
	// Opaque are files with an #include the scan cannot follow: every
	// object that can reach one is a candidate of every lookup.
	Opaque []int `json:"opaque,omitempty"`
	// Words is the table of command-line words IndexObject.Args refer to.
	Words []string `json:"words"`
	// What making the index cost: the dry run, building the objects
	// whose sources are generated, the scan.
	MakeTime     time.Duration `json:"make_time"`
	GenerateTime time.Duration `json:"generate_time"`
	ScanTime     time.Duration `json:"scan_time"`
}

// Argv returns the compile command of object o.
func (ix *DepIndex) Argv(o IndexObject) []string {
	argv := make([]string, len(o.Args))
	for i, id := range o.Args {
		argv[i] = ix.Words[id]
	}
	return argv
}

// Lookup returns the index entry of the object at path.
func (ix *DepIndex) Lookup(obj string) (IndexObject, bool) {
	for _, o := range ix.Objects {
		if path.Clean(o.Path) == path.Clean(obj) {
			return o, true
		}
	}
	return IndexObject{}, false
}

// Candidates returns the objects (indices into ix.Objects, in order) that
// may include one of files (paths relative to the tree): the ones whose
// roots reach a file in files, or an opaque file, in the include graph.
func (ix *DepIndex) Candidates(files []string) []int {
	rev := make([][]int, len(ix.Files))
	for from, tos := range ix.Includes {
		for _, to := range tos {
			rev[to] = append(rev[to], from)
		}
	}
	id := make(map[string]int, len(ix.Files))
	for i, f := range ix.Files {
		id[f] = i
	}
	reach := make([]bool, len(ix.Files))
	var stack []int
	push := func(f int) {
		if !reach[f] {
			reach[f] = true
			stack = append(stack, f)
		}
	}
	for _, f := range files {
		if i, ok := id[path.Clean(f)]; ok {
			push(i)
		}
	}
	for _, f := range ix.Opaque {
		push(f)
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, g := range rev[f] {
			push(g)
		}
	}
	var out []int
	for i, o := range ix.Objects {
		for _, r := range o.Roots {
			if reach[r] {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// compileCmd is one compile command Kbuild runs.
type compileCmd struct {
	obj, src string
	argv     []string
}

// module returns the module the command compiles for (-DMODULE): its
// name from modules (the objects Kbuild lists in each NAME.mod), else
// KBUILD_MODNAME, else, when Kbuild said neither, the object itself. ""
// when the object is not part of a module.
func (c compileCmd) module(modules map[string]string) string {
	if !slices.Contains(c.argv, "-DMODULE") {
		return ""
	}
	if name := modules[path.Clean(c.obj)]; name != "" {
		return name
	}
	for _, w := range c.argv {
		if v, ok := strings.CutPrefix(w, "-DKBUILD_MODNAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return c.obj
}

// moduleName is the name the kernel gives the module Kbuild links from
// dir/NAME.mod: NAME with - and , as _.
func moduleName(modFile string) string {
	return strings.NewReplacer("-", "_", ",", "_").Replace(strings.TrimSuffix(path.Base(modFile), ".mod"))
}

// compileFrom recognises a compile command of cc: `cc FLAGS -c -o OBJ SRC`,
// with SRC a .c or .S file.
func compileFrom(argv []string, cc string) (compileCmd, bool) {
	if len(argv) == 0 || argv[0] != cc {
		return compileCmd{}, false
	}
	for i := 1; i+3 < len(argv); i++ {
		if argv[i] == "-c" && argv[i+1] == "-o" && strings.HasSuffix(argv[i+2], ".o") {
			src := argv[i+3]
			if ext := path.Ext(src); ext != ".c" && ext != ".S" {
				return compileCmd{}, false
			}
			return compileCmd{obj: argv[i+2], src: path.Clean(src), argv: argv}, true
		}
	}
	return compileCmd{}, false
}

// dryRun is what a `make -n` of the tree says.
type dryRun struct {
	compiles []compileCmd
	// builtin are the objects archived into a built-in.a or lib.a.
	builtin map[string]bool
	// modules maps each object listed in a NAME.mod to its module.
	modules map[string]string
}

// parseDryRun reads the output of `make -n`: every compile command of cc
// and every archive of built-in objects.
func parseDryRun(r io.Reader, cc string) (*dryRun, error) {
	dr := &dryRun{builtin: make(map[string]bool), modules: make(map[string]string)}
	seen := make(map[string]bool) // clean paths
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var logical strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if trailingBackslashes(line)%2 == 1 {
			logical.WriteString(line[:len(line)-1])
			continue
		}
		logical.WriteString(line)
		cmds := shellCommands(logical.String())
		logical.Reset()
		for i, argv := range cmds {
			if c, ok := compileFrom(argv, cc); ok {
				if !seen[path.Clean(c.obj)] {
					seen[path.Clean(c.obj)] = true
					dr.compiles = append(dr.compiles, c)
				}
				continue
			}
			var prev []string
			if i > 0 {
				prev = cmds[i-1]
			}
			for _, m := range archiveMembers(prev, argv) {
				dr.builtin[m] = true
			}
			if mod, members := modMembers(prev, argv); mod != "" {
				for _, m := range members {
					dr.modules[m] = mod
				}
			}
		}
	}
	return dr, sc.Err()
}

func trailingBackslashes(s string) int {
	n := 0
	for n < len(s) && s[len(s)-1-n] == '\\' {
		n++
	}
	return n
}

// archiveMembers returns the objects Kbuild archives into a built-in.a or
// lib.a: `ar cDPrST ARCHIVE MEMBERS...`, or `printf "DIR/%s " MEMBERS... |
// xargs ar cDPrST ARCHIVE` (prev is then the printf).
func archiveMembers(prev, argv []string) []string {
	var members []string
	switch {
	case len(argv) >= 3 && isAr(argv[0]):
		members, argv = argv[3:], argv[:3]
	case len(argv) >= 4 && argv[0] == "xargs" && isAr(argv[1]):
		if len(prev) < 2 || prev[0] != "printf" || !strings.Contains(prev[1], "%s") {
			return nil
		}
		for _, m := range prev[2:] {
			members = append(members, strings.TrimSpace(strings.Replace(prev[1], "%s", m, 1)))
		}
		argv = argv[1:4]
	default:
		return nil
	}
	archive := path.Base(argv[2])
	if archive != "built-in.a" && archive != "lib.a" {
		return nil
	}
	var objs []string
	for _, m := range members {
		if strings.HasSuffix(m, ".o") {
			objs = append(objs, path.Clean(m))
		}
	}
	// Keys are clean paths: Kbuild names some objects through ".."
	// (amdgpu's display code is built from drivers/gpu/drm/amd/amdgpu).
	return objs
}

// awkPrefix is the directory Kbuild's .mod command puts before each member.
var awkPrefix = regexp.MustCompile(`print\("([^"]*)"\$0\)`)

// modMembers returns the module and its objects when argv writes a .mod
// file: `printf '%s\n' MEMBERS | awk '... print("DIR/"$0) ...' > DIR/NAME.mod`
// (prev is the printf).
func modMembers(prev, argv []string) (string, []string) {
	if len(argv) < 4 || argv[0] != "awk" || argv[len(argv)-2] != ">" || !strings.HasSuffix(argv[len(argv)-1], ".mod") ||
		len(prev) < 2 || prev[0] != "printf" {
		return "", nil
	}
	m := awkPrefix.FindStringSubmatch(argv[1])
	if m == nil {
		return "", nil
	}
	var objs []string
	for _, o := range prev[2:] {
		objs = append(objs, path.Clean(m[1]+o)) // clean, as in archiveMembers
	}
	return moduleName(argv[len(argv)-1]), objs
}

func isAr(w string) bool {
	return w == "ar" || strings.HasSuffix(w, "-ar") || strings.HasSuffix(w, "/ar")
}

// shellCommands splits one line of shell into its simple commands (split
// at ; | & && || ( ) and newlines), each as its words with the quoting
// removed: the subset of sh that Kbuild's commands use.
func shellCommands(line string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			inWord = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
					i++
				}
				w.WriteByte(line[i])
			}
		case c == '\\':
			inWord = true
			if i+1 < len(line) {
				i++
				w.WriteByte(line[i])
			}
		case c == ' ' || c == '\t':
			endWord()
		case c == '>' || c == '<':
			endWord()
			j := i
			for j+1 < len(line) && (line[j+1] == '>' || line[j+1] == '&') {
				j++
			}
			words = append(words, line[i:j+1])
			i = j
		case c == '\n' || c == ';' || c == '|' || c == '&' || c == '(' || c == ')':
			endCmd()
		case c == '#' && !inWord:
			endCmd()
			return cmds
		default:
			inWord = true
			w.WriteByte(c)
		}
	}
	endCmd()
	return cmds
}

// cmdFileCommand returns the command saved in an object's .o.cmd file
// (`cmd_OBJ := COMMAND`, with make's $$ and $(pound) escapes).
func cmdFileCommand(data []byte) (string, bool) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	_, cmd, ok := strings.Cut(string(line), " := ")
	if !ok || !strings.HasPrefix(string(line), "cmd_") && !strings.HasPrefix(string(line), "savedcmd_") {
		return "", false
	}
	cmd = strings.ReplaceAll(cmd, "$(pound)", "#")
	return strings.ReplaceAll(cmd, "$$", "$"), true
}

// searchPath is where an object's preprocessor looks for included files.
type searchPath struct {
	quote   []string // -iquote
	bracket []string // -I, then -isystem, then -idirafter
	forced  []string // -include, -imacros
	defined []string // -DNAME="x.h" or -DNAME=<x.h>: a computed include may name them
}

// searchPathOf reads the include options of a compile command. Paths are
// made relative to the tree (the command runs at its top); directories
// outside the tree are dropped: nothing there is patched.
func searchPathOf(argv []string) searchPath {
	var sp searchPath
	var isystem, idirafter []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		for _, opt := range []struct {
			name string
			dst  *[]string
		}{{"-iquote", &sp.quote}, {"-isystem", &isystem}, {"-idirafter", &idirafter},
			{"-include", &sp.forced}, {"-imacros", &sp.forced}, {"-I", &sp.bracket}} {
			v, ok := strings.CutPrefix(a, opt.name)
			if !ok {
				continue
			}
			if v == "" {
				if i+1 >= len(argv) {
					break
				}
				i++
				v = argv[i]
			}
			if rel, ok := treeRel(v); ok {
				*opt.dst = append(*opt.dst, rel)
			}
			break
		}
		if v, ok := strings.CutPrefix(a, "-D"); ok {
			if _, val, ok := strings.Cut(v, "="); ok && headerName(val) != "" {
				sp.defined = append(sp.defined, val)
			}
		}
	}
	sp.bracket = append(append(sp.bracket, isystem...), idirafter...)
	return sp
}

// treeRel cleans p, a path relative to the top of the tree; false when p
// leaves the tree.
func treeRel(p string) (string, bool) {
	if path.IsAbs(p) {
		return "", false
	}
	p = path.Clean(p)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}

// headerName returns x.h for "x.h" or <x.h> (a quoted or bracketed header
// name), "" for anything else.
func headerName(v string) string {
	v = strings.TrimSpace(v)
	if len(v) < 4 {
		return ""
	}
	if (v[0] == '"' && v[len(v)-1] == '"') || (v[0] == '<' && v[len(v)-1] == '>') {
		if name := v[1 : len(v)-1]; strings.HasSuffix(name, ".h") {
			return name
		}
	}
	return ""
}

// directive is one #include of a file, or an include a macro the file
// defines can produce.
type directive struct {
	name string
	// quote: "name", searched from the including file's directory first.
	quote bool
	// next: #include_next.
	next bool
	// from, when set, is the directory a quoted name is searched from
	// instead of the including file's (trace headers' re-include happens in
	// include/trace/define_trace.h).
	from string
	// opaque: a computed include the scan cannot follow.
	opaque bool
}

// traceIncludeDir is where the trace headers' TRACE_INCLUDE is expanded.
const traceIncludeDir = "include/trace"

// scanDirectives returns the includes of a file's content, and the
// includes its macros name: `#define M "x.h"` / `<x.h>` (a computed
// `#include M` elsewhere takes it), and the file a trace header's
// define_trace.h re-includes (TRACE_INCLUDE_PATH/TRACE_INCLUDE_FILE.h, the
// file defaulting to TRACE_SYSTEM, the path to <trace/events/...>).
// Conditionals are ignored.
func scanDirectives(data []byte) []directive {
	var out []directive
	var system, file, paths []string
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		for len(line) > 0 && line[len(line)-1] == '\\' && len(data) > 0 {
			var more []byte
			more, data, _ = bytes.Cut(data, []byte("\n"))
			line = append(line[:len(line)-1:len(line)-1], more...)
		}
		s := strings.TrimLeft(string(line), " \t")
		if !strings.HasPrefix(s, "#") {
			continue
		}
		s = strings.TrimLeft(s[1:], " \t")
		kw := s
		if i := strings.IndexAny(s, " \t\"<"); i >= 0 {
			kw = s[:i]
		}
		rest := strings.TrimLeft(s[len(kw):], " \t")
		switch kw {
		case "include", "include_next", "import":
			d := directive{next: kw == "include_next"}
			switch {
			case strings.HasPrefix(rest, `"`):
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					continue
				}
				d.name, d.quote = rest[1:1+end], true
			case strings.HasPrefix(rest, "<"):
				end := strings.IndexByte(rest, '>')
				if end < 0 {
					continue
				}
				d.name = rest[1:end]
			case strings.HasPrefix(rest, "TRACE_INCLUDE("):
				continue // followed through the defines of the trace header
			default:
				macro := rest
				if i := strings.IndexAny(rest, " \t/"); i >= 0 {
					macro = rest[:i]
				}
				if !isIdent(macro) {
					d.opaque = true
				} else {
					continue // followed through `#define MACRO "x.h"` wherever it is
				}
			}
			out = append(out, d)
		case "define":
			name := rest
			if i := strings.IndexAny(rest, " \t("); i >= 0 {
				name = rest[:i]
			}
			val := strings.TrimSpace(rest[len(name):])
			if i := strings.Index(val, "/*"); i >= 0 {
				val = strings.TrimSpace(val[:i])
			}
			switch name {
			case "TRACE_SYSTEM":
				system = append(system, val)
			case "TRACE_INCLUDE_FILE":
				file = append(file, val)
			case "TRACE_INCLUDE_PATH":
				paths = append(paths, strings.ReplaceAll(val, " ", ""))
			default:
				if h := headerName(val); h != "" {
					out = append(out, directive{name: h, quote: val[0] == '"'})
				}
			}
		}
	}
	files := file
	if len(files) == 0 {
		files = system
	}
	for _, f := range files {
		if !isIdent(f) {
			continue
		}
		out = append(out, directive{name: "trace/events/" + f + ".h"})
		for _, p := range paths {
			out = append(out, directive{name: p + "/" + f + ".h", quote: true, from: traceIncludeDir})
		}
	}
	return out
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// graph builds the include graph of a tree rooted at dir.
type graph struct {
	dir    string
	files  []string
	id     map[string]int
	parsed map[int][]directive
	exists map[string]bool
	edges  map[[2]int]bool
	opaque map[int]bool
}

func newGraph(dir string) *graph {
	return &graph{dir: dir, id: make(map[string]int), parsed: make(map[int][]directive),
		exists: make(map[string]bool), edges: make(map[[2]int]bool), opaque: make(map[int]bool)}
}

func (g *graph) fileID(p string) int {
	if i, ok := g.id[p]; ok {
		return i
	}
	g.id[p] = len(g.files)
	g.files = append(g.files, p)
	return len(g.files) - 1
}

// isFile says whether p (relative to the tree) is a regular file.
func (g *graph) isFile(p string) bool {
	ok, known := g.exists[p]
	if !known {
		st, err := os.Stat(filepath.Join(g.dir, p))
		ok = err == nil && st.Mode().IsRegular()
		g.exists[p] = ok
	}
	return ok
}

func (g *graph) directives(f int) ([]directive, error) {
	if ds, ok := g.parsed[f]; ok {
		return ds, nil
	}
	data, err := os.ReadFile(filepath.Join(g.dir, g.files[f]))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ds := scanDirectives(data)
	g.parsed[f] = ds
	return ds, nil
}

// resolve returns the files directive d of file f can name under sp: the
// first match on the search path, and for #include_next every match but
// f itself.
func (g *graph) resolve(sp *searchPath, f string, d directive) []string {
	if path.IsAbs(d.name) {
		return nil
	}
	var dirs []string
	if d.quote {
		from := d.from
		if from == "" {
			from = path.Dir(f)
		}
		dirs = append(append([]string{from}, sp.quote...), sp.bracket...)
	} else {
		dirs = sp.bracket
	}
	var out []string
	for _, dir := range dirs {
		p, ok := treeRel(path.Join(dir, d.name))
		if !ok || !g.isFile(p) {
			continue
		}
		if !d.next {
			return []string{p}
		}
		if p != f {
			out = append(out, p)
		}
	}
	return out
}

// add scans, under search path sp, everything roots reach, adding every
// include to the graph. done holds the files already scanned under sp.
func (g *graph) add(sp *searchPath, roots []int, done map[int]bool) error {
	stack := slices.Clone(roots)
	for _, r := range roots {
		done[r] = true
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ds, err := g.directives(f)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.opaque {
				g.opaque[f] = true
				continue
			}
			for _, p := range g.resolve(sp, g.files[f], d) {
				t := g.fileID(p)
				g.edges[[2]int{f, t}] = true
				if !done[t] {
					done[t] = true
					stack = append(stack, t)
				}
			}
		}
	}
	return nil
}

// buildIndex makes the index of the tree at dir from what its dry run said.
func buildIndex(dir string, dr *dryRun) (*DepIndex, error) {
	g := newGraph(dir)
	ix := &DepIndex{Version: indexVersion}
	words := make(map[string]int)
	type group struct {
		sp    searchPath
		roots []int
	}
	groups := make(map[string]*group)
	var keys []string
	for _, c := range dr.compiles {
		sp := searchPathOf(c.argv)
		o := IndexObject{Path: c.obj, Source: c.src, Module: c.module(dr.modules), Builtin: dr.builtin[path.Clean(c.obj)]}
		for _, w := range c.argv {
			id, ok := words[w]
			if !ok {
				id = len(ix.Words)
				words[w] = id
				ix.Words = append(ix.Words, w)
			}
			o.Args = append(o.Args, id)
		}
		for _, r := range append([]string{c.src}, sp.forced...) {
			if rel, ok := treeRel(r); ok {
				o.Roots = append(o.Roots, g.fileID(rel))
			}
		}
		if len(o.Roots) > 0 && !g.isFile(c.src) {
			g.opaque[o.Roots[0]] = true // a generated source that could not be made
		}
		// A -D value that names a header: a computed include may take it,
		// from any file the object reads.
		for _, v := range sp.defined {
			d := directive{name: headerName(v), quote: v[0] == '"'}
			for _, p := range g.resolve(&sp, c.src, d) {
				o.Roots = append(o.Roots, g.fileID(p))
			}
		}
		ix.Objects = append(ix.Objects, o)
		key := strings.Join(sp.quote, "\x00") + "\x01" + strings.Join(sp.bracket, "\x00")
		gr, ok := groups[key]
		if !ok {
			gr = &group{sp: sp}
			groups[key] = gr
			keys = append(keys, key)
		}
		gr.roots = append(gr.roots, o.Roots...)
	}
	for _, k := range keys {
		if err := g.add(&groups[k].sp, groups[k].roots, make(map[int]bool)); err != nil {
			return nil, err
		}
	}
	ix.Files = g.files
	ix.Includes = make([][]int, len(g.files))
	for e := range g.edges {
		ix.Includes[e[0]] = append(ix.Includes[e[0]], e[1])
	}
	for _, tos := range ix.Includes {
		sort.Ints(tos)
	}
	for f := range g.opaque {
		ix.Opaque = append(ix.Opaque, f)
	}
	sort.Ints(ix.Opaque)
	return ix, nil
}

// makeDryRun runs `make -n` in the tree and returns what it listed and
// its standard error (also with an error, once make ran).
func (t *Tree) makeDryRun(ctx context.Context) (*dryRun, string, error) {
	args := append(t.makeVars(), "-n", "-k", "-s")
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Dir = t.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	dr, perr := parseDryRun(out, t.CC)
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if perr != nil {
		return nil, stderr.String(), fmt.Errorf("reading make -n in %s: %w", t.Dir, perr)
	}
	if len(dr.compiles) == 0 {
		return nil, stderr.String(), fmt.Errorf("make -n in %s printed no compile command of %s: %v\n%s", t.Dir, t.CC, werr, tail.Lines(stderr.String(), 15))
	}
	return dr, stderr.String(), nil
}

// dryRunObjects runs `make -n` in the tree and adds the objects already
// built, whose commands make does not print, from their .o.cmd files. A
// kbuild .cmd file make cannot read is removed and make -n run once more
// (removeBrokenCmdFiles), as for a build.
func (t *Tree) dryRunObjects(ctx context.Context) (*dryRun, error) {
	dr, stderr, err := t.makeDryRun(ctx)
	if ctx.Err() == nil && t.removeBrokenCmdFiles(stderr) {
		dr, stderr, err = t.makeDryRun(ctx)
	}
	if err != nil {
		return nil, err
	}
	if bad := dryRunErrors(stderr); len(bad) > 0 {
		return nil, fmt.Errorf("make -n in %s failed, so the objects it lists may be incomplete:\n%s", t.Dir, strings.Join(bad, "\n"))
	}
	seen := make(map[string]bool, len(dr.compiles)) // clean paths
	for _, c := range dr.compiles {
		seen[path.Clean(c.obj)] = true
	}
	err = filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == backupDir {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".mod") && !strings.HasPrefix(name, ".") {
			// A module already built: its objects, one a line.
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, obj := range strings.Fields(string(data)) {
				if _, ok := dr.modules[obj]; !ok {
					dr.modules[path.Clean(obj)] = moduleName(name)
				}
			}
			return nil
		}
		if !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".o.cmd") {
			return nil
		}
		rel, err := filepath.Rel(t.Dir, filepath.Join(filepath.Dir(p), strings.TrimSuffix(name[1:], ".cmd")))
		if err != nil || seen[rel] {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		line, ok := cmdFileCommand(data)
		if !ok {
			return nil
		}
		for _, argv := range shellCommands(line) {
			if c, ok := compileFrom(argv, t.CC); ok && path.Clean(c.obj) == rel {
				seen[rel] = true
				dr.compiles = append(dr.compiles, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the .o.cmd files of %s: %w", t.Dir, err)
	}
	sort.Slice(dr.compiles, func(i, j int) bool { return dr.compiles[i].obj < dr.compiles[j].obj })
	return dr, nil
}

// generateSources builds the objects whose sources Kbuild generates
// (lib/raid6/int*.c, the vDSO images, ASN.1 parsers, ...), which do not
// exist in a prepared tree: building them makes their sources, so that the
// scan can read them and the preprocessor can confirm them. A source that
// still does not exist afterwards makes its object a candidate of every
// lookup (buildIndex).
func (t *Tree) generateSources(ctx context.Context, dr *dryRun) error {
	var objs []string
	for _, c := range dr.compiles {
		if _, err := os.Stat(filepath.Join(t.Dir, c.src)); errors.Is(err, fs.ErrNotExist) {
			objs = append(objs, c.obj)
		}
	}
	if len(objs) == 0 {
		return nil
	}
	if _, err := t.makeOutput(ctx, append([]string{"-k", "-j" + strconv.Itoa(runtime.NumCPU())}, objs...)...); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// dryRunErrors returns the errors make -n reported, but the one it always
// reports: a dry run never makes vmlinux.a, so it cannot go on to link
// vmlinux.o (Kbuild's vmlinux_o target). Everything else was listed.
func dryRunErrors(stderr string) []string {
	var bad []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.Contains(l, "***") || strings.Contains(l, "No rule to make target 'vmlinux.a', needed by 'vmlinux.o'") ||
			strings.Contains(l, ": vmlinux_o] Error") {
			continue
		}
		bad = append(bad, l)
	}
	return bad
}

// stampKey identifies the tree's preparation for the index cache.
func (t *Tree) stampKey() (string, error) {
	data, err := os.ReadFile(filepath.Join(t.Dir, stampName))
	if err != nil {
		return "", fmt.Errorf("source tree %s is not prepared (run `livesplice prepare`): %w", t.Dir, err)
	}
	sum := sha256.Sum256(append(data, byte(indexVersion)))
	return hex.EncodeToString(sum[:8]), nil
}

// indexPath is where the index of the tree's current preparation is
// cached: next to the tree, named for its stamp.
func (t *Tree) indexPath(key string) string {
	return fmt.Sprintf("%s.deps-%s.json.gz", filepath.Clean(t.Dir), key)
}

// DepIndex returns the tree's dependency index, making it (and caching it
// next to the tree) the first time. The caller must hold the tree's lock:
// the scan reads the sources, which a build patches.
func (t *Tree) DepIndex(ctx context.Context) (*DepIndex, error) {
	key, err := t.stampKey()
	if err != nil {
		return nil, err
	}
	file := t.indexPath(key)
	if ix, err := readIndex(file); err == nil && ix.Version == indexVersion && ix.Stamp == key {
		return ix, nil
	}
	start := time.Now()
	dr, err := t.dryRunObjects(ctx)
	if err != nil {
		return nil, err
	}
	made := time.Now()
	if err := t.generateSources(ctx, dr); err != nil {
		return nil, err
	}
	generated := time.Now()
	ix, err := buildIndex(t.Dir, dr)
	if err != nil {
		return nil, fmt.Errorf("dependency index of %s: %w", t.Dir, err)
	}
	ix.Stamp, ix.MakeTime, ix.GenerateTime, ix.ScanTime = key, made.Sub(start), generated.Sub(made), time.Since(generated)
	if err := writeIndex(file, ix); err != nil {
		return nil, err
	}
	// Indexes of earlier preparations of this tree are stale.
	old, _ := filepath.Glob(filepath.Clean(t.Dir) + ".deps-*.json.gz")
	for _, f := range old {
		if f != file {
			os.Remove(f)
		}
	}
	return ix, nil
}

func readIndex(file string) (*DepIndex, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, err
	}
	var ix DepIndex
	if err := json.NewDecoder(zr).Decode(&ix); err != nil {
		return nil, fmt.Errorf("dependency index %s: %w", file, err)
	}
	return &ix, nil
}

// writeIndex writes the index whole or not at all.
func writeIndex(file string, ix *DepIndex) error {
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	zw := gzip.NewWriter(bw)
	err = json.NewEncoder(zw).Encode(ix)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing dependency index %s: %w", file, err)
	}
	return nil
}

// preprocessorDeps runs the preprocessor of a compile command for its
// dependencies (-M): every file it reads, relative to the tree.
func preprocessorDeps(ctx context.Context, dir string, argv []string) ([]string, error) {
	args := []string{"-M", "-MG"}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-c":
		case a == "-o" && i+1 < len(argv):
			i++
		case strings.HasPrefix(a, "-Wp,-MMD,") || strings.HasPrefix(a, "-Wp,-MD,"):
		default:
			args = append(args, a)
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -M: %w: %s", argv[0], err, tail.Lines(stderr.String(), 5))
	}
	_, rule, _ := strings.Cut(string(out), ":")
	var deps []string
	for _, w := range strings.Fields(strings.ReplaceAll(rule, "\\\n", " ")) {
		if w == "\\" {
			continue
		}
		if rel, ok := treeRel(w); ok {
			deps = append(deps, rel)
		}
	}
	return deps, nil
}

// Dependents returns the objects of the tree's config that include one of
// files (paths relative to the tree) under this config, in order: the
// index's candidates, each confirmed by its preprocessor. A candidate the
// preprocessor cannot read (a generated file missing until it is built)
// is kept. The caller must hold the tree's lock.
func (t *Tree) Dependents(ctx context.Context, ix *DepIndex, files []string) ([]IndexObject, error) {
	want := make(map[string]bool, len(files))
	for _, f := range files {
		want[path.Clean(f)] = true
	}
	cands := ix.Candidates(files)
	keep := make([]bool, len(cands))
	errs := make([]error, len(cands))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				deps, err := preprocessorDeps(ctx, t.Dir, ix.Argv(ix.Objects[cands[i]]))
				if err != nil {
					if ctx.Err() != nil {
						errs[i] = ctx.Err()
					}
					keep[i] = true
					continue
				}
				keep[i] = slices.ContainsFunc(deps, func(d string) bool { return want[d] })
			}
		}()
	}
	for i := range cands {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []IndexObject
	for i, c := range cands {
		if keep[i] {
			out = append(out, ix.Objects[c])
		}
	}
	return out, nil
}

// kbuildTargets returns, for each object (a source's path with .o), the
// path kbuild builds it under, from the tree's dependency index (made
// once, see DepIndex): an object a parent directory's Makefile builds
// (amdgpu's pm/ and display/, KVM's virt/kvm/) is a target only under
// that path, such as arch/x86/kvm/../../../virt/kvm/kvm_main.o, and make
// of the plain path misses the Makefile's flags. Objects the index does
// not know keep their path.
func (t *Tree) kbuildTargets(ctx context.Context, objects []string) ([]string, error) {
	unlock, err := t.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ix, err := t.DepIndex(ctx)
	if err != nil {
		return nil, err
	}
	return ix.targets(objects), nil
}

// ownTargets reports whether the kbuild file of each object's directory
// (Kbuild, else Makefile) names the object: else kbuild builds it from
// another directory's Makefile (virt/kvm/ has none: arch/x86/kvm's builds
// it into kvm.ko), and make of its plain path compiles it with the wrong
// flags, as part of vmlinux.
func (t *Tree) ownTargets(objects []string) bool {
	for _, obj := range objects {
		dir := filepath.Join(t.Dir, filepath.Dir(obj))
		data, err := os.ReadFile(filepath.Join(dir, "Kbuild"))
		if err != nil {
			data, err = os.ReadFile(filepath.Join(dir, "Makefile"))
		}
		if err != nil || !bytes.Contains(data, []byte(filepath.Base(obj))) {
			return false
		}
	}
	return true
}

// targets maps objects to their kbuild paths (kbuildTargets).
func (ix *DepIndex) targets(objects []string) []string {
	out := make([]string, len(objects))
	for i, obj := range objects {
		out[i] = obj
		if o, ok := ix.Lookup(obj); ok {
			out[i] = o.Path
		}
	}
	return out
}

// patchObjects returns the objects to rebuild for a patch that changes
// files: the object of each .c file, and every object of the tree's config
// that includes a changed header (Dependents). Objects linked into neither
// vmlinux nor a module (the vDSO, the EFI stub, purgatory, real-mode code)
// come apart, in foreign: they are rebuilt only to check that the patch
// leaves their code alone (sameCode). A patch whose headers no object
// includes, and that changes no .c file, is refused: there is nothing to
// do at run time.
func (t *Tree) patchObjects(ctx context.Context, patch string, files []string) (objects, foreign []string, err error) {
	sources, headers := splitHeaders(files)
	seen := make(map[string]bool)
	for _, src := range sources {
		obj := strings.TrimSuffix(src, ".c") + ".o"
		seen[path.Clean(obj)] = true
		objects = append(objects, obj)
	}
	if len(headers) == 0 {
		return objects, nil, nil
	}
	unlock, err := t.Lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	ix, err := t.DepIndex(ctx)
	if err != nil {
		return nil, nil, err
	}
	deps, err := t.Dependents(ctx, ix, headers)
	if err != nil {
		return nil, nil, err
	}
	var builtin, modules int
	for _, d := range deps {
		switch {
		case d.Module != "":
			modules++
		case d.Builtin:
			builtin++
		}
		if seen[path.Clean(d.Path)] {
			continue
		}
		seen[path.Clean(d.Path)] = true
		if d.Module == "" && !d.Builtin {
			foreign = append(foreign, d.Path)
		} else {
			objects = append(objects, d.Path)
		}
	}
	if t.Stderr != nil {
		fmt.Fprintf(t.Stderr, "livesplice: %s: %d objects include %s (%d in vmlinux, %d in modules, %d elsewhere)\n",
			filepath.Base(patch), len(deps), strings.Join(headers, ", "), builtin, modules, len(deps)-builtin-modules)
	}
	if len(objects) == 0 && len(foreign) == 0 {
		return nil, nil, &NothingToDoError{Patch: patch, Why: fmt.Sprintf(
			"no object built under this kernel's config includes %s", strings.Join(headers, ", "))}
	}
	return objects, foreign, nil
}

// sameCode says whether two builds of an object have the same code and
// data: every allocated section with the same bytes and the same
// relocations (offset, type, addend, target by name).
func sameCode(prePath, postPath string) (bool, error) {
	pre, err := allocContents(prePath)
	if err != nil {
		return false, err
	}
	post, err := allocContents(postPath)
	if err != nil {
		return false, err
	}
	return maps.EqualFunc(pre, post, bytes.Equal), nil
}

// allocContents returns, by section name, the bytes of each allocated
// section of an ELF object followed by its relocations in text form.
func allocContents(file string) (map[string][]byte, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	out := make(map[string][]byte)
	for _, sec := range f.Sections {
		if sec.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		var data []byte
		if sec.Type == elf.SHT_NOBITS {
			data = []byte(fmt.Sprintf("nobits %d", sec.Size))
		} else if data, err = sec.Data(); err != nil {
			return nil, fmt.Errorf("%s: section %s: %w", file, sec.Name, err)
		}
		out[sec.Name] = slices.Clone(data)
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_RELA || int(sec.Info) >= len(f.Sections) {
			continue
		}
		target := f.Sections[sec.Info]
		if target.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		data, err := sec.Data()
		if err != nil {
			return nil, fmt.Errorf("%s: section %s: %w", file, sec.Name, err)
		}
		var text bytes.Buffer
		for i := 0; i+24 <= len(data); i += 24 {
			r := elf.Rela64{Off: f.ByteOrder.Uint64(data[i:]), Info: f.ByteOrder.Uint64(data[i+8:]), Addend: int64(f.ByteOrder.Uint64(data[i+16:]))}
			name := "?"
			if s := int(elf.R_SYM64(r.Info)); s > 0 && s <= len(syms) {
				name = syms[s-1].Name
				if elf.ST_TYPE(syms[s-1].Info) == elf.STT_SECTION && int(syms[s-1].Section) < len(f.Sections) {
					name = f.Sections[syms[s-1].Section].Name
				}
			}
			fmt.Fprintf(&text, "\n%#x %v %s%+d", r.Off, elf.R_X86_64(elf.R_TYPE64(r.Info)), name, r.Addend)
		}
		out[target.Name] = append(out[target.Name], text.Bytes()...)
	}
	return out, nil
}

// foreignChanged refuses the patch when it changes the code of a foreign
// object (built in preDir and postDir): that code is not part of vmlinux
// or of a module, and a live update cannot reach it.
func foreignChanged(patch string, foreign []string, preDir, postDir string) error {
	var refused []Refusal
	for _, obj := range foreign {
		same, err := sameCode(filepath.Join(preDir, obj), filepath.Join(postDir, obj))
		if err != nil {
			return fmt.Errorf("object %s: %w", obj, err)
		}
		if !same {
			refused = append(refused, Refusal{Kind: differ.RefuseOther, Text: fmt.Sprintf(
				"%s: the patch changes its code, and it is linked into neither vmlinux nor a module (the vDSO, the EFI stub, purgatory or real-mode code): a live update cannot change it", obj)})
		}
	}
	if len(refused) > 0 {
		return &RefusedError{Patch: patch, Refusals: refused}
	}
	return nil
}
