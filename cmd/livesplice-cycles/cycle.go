package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// result is what one cycle measured; -1 is unknown (a helper that does not
// report it, or a step that failed before it).
type result struct {
	applyRC, undoRC          int
	emptyNS, applyNS, undoNS int64
	emptyBareNS, rewriteNS   int64
	applyWorkNS, undoWorkNS  int64
	applyTasks, undoTasks    int64
	applyPass, undoPass      int64 // 1: the stop needed the pass over every task
	applyMS, undoMS          int64
	reads                    counts
	kmsg                     []string
}

func newResult() result {
	return result{applyRC: -1, undoRC: -1, emptyNS: -1, applyNS: -1, undoNS: -1, emptyBareNS: -1, rewriteNS: -1, applyTasks: -1, undoTasks: -1,
		applyWorkNS: -1, undoWorkNS: -1, applyPass: -1, undoPass: -1}
}

// line is the cycle's "@@cycle" line, which demo.RunCycles parses.
func (r result) line(n int) string {
	v := func(x int64) string {
		if x < 0 {
			return "-"
		}
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprintf("@@cycle %d apply_rc=%d undo_rc=%d empty_ns=%s empty_bare_ns=%s rewrite_ns=%s apply_ns=%s apply_tasks=%s apply_pass=%s apply_work_ns=%s "+
		"undo_ns=%s undo_tasks=%s undo_pass=%s undo_work_ns=%s apply_ms=%d undo_ms=%d applied_reads=%d undone_reads=%d moving_reads=%d wrong=%d",
		n, r.applyRC, r.undoRC, v(r.emptyNS), v(r.emptyBareNS), v(r.rewriteNS), v(r.applyNS), v(r.applyTasks), v(r.applyPass), v(r.applyWorkNS),
		v(r.undoNS), v(r.undoTasks), v(r.undoPass), v(r.undoWorkNS),
		r.applyMS, r.undoMS, r.reads.applied, r.reads.undone, r.reads.moving, r.reads.wrong)
}

// cycle applies and undoes the update once. The readers (nil: none) are
// told when each phase starts and ends; they read dwell in each of the two
// stable phases at least.
func cycle(o options, rs *readers, log *kmsg, dwell time.Duration) (r result, err error) {
	r = newResult()
	before := rs.snapshot()
	defer func() { r.reads = rs.snapshot().minus(before) }()

	rs.next() // applying
	out, ms, err := livesplice(o, "apply", o.pack)
	r.applyRC, r.applyMS = exitCode(err), ms
	if err != nil {
		r.kmsg = log.read()
		return r, fmt.Errorf("livesplice apply %s: %w\n%s", o.pack, err, out)
	}
	rs.next() // applied
	if dir, err := moduleDir(o.id); err == nil {
		r.emptyNS = readInt(filepath.Join(dir, "empty_stop_ns"))
		r.emptyBareNS = readInt(filepath.Join(dir, "empty_bare_stop_ns"))
		r.applyNS = readInt(filepath.Join(dir, "apply_stop_ns"))
		r.applyTasks = readInt(filepath.Join(dir, "apply_stop_tasks"))
		r.applyPass = readInt(filepath.Join(dir, "apply_stop_pass"))
		r.applyWorkNS = readInt(filepath.Join(dir, "apply_work_ns"))
		// The floor of a stop that writes code (helpers before it refuse
		// the word).
		if o.rewrite && os.WriteFile(filepath.Join(dir, "control"), []byte("calibrate-write"), 0) == nil {
			r.rewriteNS = readInt(filepath.Join(dir, "rewrite_stop_ns"))
		}
	}
	time.Sleep(dwell)

	rs.next() // undoing
	out, ms, err = livesplice(o, "undo", o.id)
	r.undoRC, r.undoMS = exitCode(err), ms
	r.kmsg = log.read()
	if err != nil {
		return r, fmt.Errorf("livesplice undo %s: %w\n%s", o.id, err, out)
	}
	rs.next() // undone
	for _, rec := range r.kmsg {
		if m := undidRE.FindStringSubmatch(rec); m != nil && m[1] == o.id {
			r.undoNS, _ = strconv.ParseInt(m[2], 10, 64)
			r.undoWorkNS, _ = strconv.ParseInt(m[3], 10, 64)
			if m[4] != "" {
				r.undoTasks, _ = strconv.ParseInt(m[4], 10, 64)
				r.undoPass = 0
				if m[5] != "" {
					r.undoPass = 1
				}
			}
		}
	}
	time.Sleep(dwell)
	return r, nil
}

// undidRE matches the helper's log record of an undo; helpers before the
// stop's re-walk do not say how many tasks it walked, and it says whether
// the stop needed the pass over every task.
var undidRE = regexp.MustCompile(`undid (\S+) .*: stop (\d+) ns, work (\d+) ns(?:, (\d+) task\(s\) walked in the stop(, by the pass)?)?`)

func livesplice(o options, args ...string) ([]byte, int64, error) {
	cmd := exec.Command(o.livesplice, args...)
	if o.gogc != "" {
		cmd.Env = append(os.Environ(), "GOGC="+o.gogc)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	return out, time.Since(start).Milliseconds(), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// moduleDir finds the helper's sysfs directory of update id.
func moduleDir(id string) (string, error) {
	ids, err := filepath.Glob("/sys/module/*/livesplice/id")
	if err != nil {
		return "", err
	}
	for _, p := range ids {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == id {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("no module in /sys/module has update %s", id)
}

// readInt reads a decimal sysfs value, -1 if the file is missing.
func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// kmsg reads new kernel log records from /dev/kmsg.
type kmsg struct {
	fd  int
	buf []byte
}

func openKmsg() (*kmsg, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("/dev/kmsg: %w", err)
	}
	return &kmsg{fd: fd, buf: make([]byte, 8192)}, nil
}

func (k *kmsg) close() { unix.Close(k.fd) }

// read returns the text of each record logged since the last read.
func (k *kmsg) read() []string {
	var recs []string
	for {
		n, err := unix.Read(k.fd, k.buf)
		if errors.Is(err, unix.EPIPE) {
			recs = append(recs, "livesplice-cycles: kernel log records were overwritten before they were read")
			continue
		}
		if err != nil || n <= 0 {
			return recs
		}
		rec := string(k.buf[:n])
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		if i := strings.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i]
		}
		recs = append(recs, rec)
	}
}

// print prints records as "@@kmsg" lines.
func printKmsg(recs []string) {
	for _, r := range recs {
		fmt.Println("@@kmsg " + r)
	}
}
