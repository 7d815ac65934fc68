package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// counts are reads by the phase they fell in: applied, undone (each from
// start to end of the read), moving (overlapping an apply or an undo), and
// wrong answers in any phase.
type counts struct{ applied, undone, moving, wrong int64 }

func (c counts) total() int64 { return c.applied + c.undone + c.moving + c.wrong }

func (c counts) minus(d counts) counts {
	return counts{c.applied - d.applied, c.undone - d.undone, c.moving - d.moving, c.wrong - d.wrong}
}

// reader is one CPU's counters, on a cache line of its own.
type reader struct {
	applied, undone, moving, wrong atomic.Int64
	_                              [32]byte
}

// readers check a file's text on every CPU while the phase moves on:
// phase%4 is 0 applying, 1 applied, 2 undoing, 3 undone.
type readers struct {
	file          string
	nice          int
	orig, patched []byte
	phase         atomic.Int64
	done          atomic.Bool
	wg            sync.WaitGroup
	r             []reader
	mu            sync.Mutex
	reported      int
}

// maxReported is how many wrong answers are printed.
const maxReported = 20

func startReaders(file, from, to string, nice int) (*readers, error) {
	orig, err := readAll(file, make([]byte, 4096))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if !bytes.Contains(orig, []byte(from)) {
		return nil, fmt.Errorf("%s does not contain %q: %q", file, from, orig)
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	rs := &readers{file: file, nice: nice, orig: orig, patched: bytes.Replace(orig, []byte(from), []byte(to), -1), r: make([]reader, cpus.Count())}
	rs.phase.Store(3)
	// The readers keep a P each; the cycles need one too.
	runtime.GOMAXPROCS(len(rs.r) + 2)
	errs := make(chan error, len(rs.r))
	for cpu, i := 0, 0; i < len(rs.r); cpu++ {
		if !cpus.IsSet(cpu) {
			continue
		}
		rs.wg.Add(1)
		go rs.loop(&rs.r[i], cpu, errs)
		i++
	}
	for range rs.r {
		if err := <-errs; err != nil {
			rs.stop()
			return nil, err
		}
	}
	return rs, nil
}

func (rs *readers) loop(c *reader, cpu int, started chan<- error) {
	defer rs.wg.Done()
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		started <- fmt.Errorf("pinning a reader to CPU %d: %w", cpu, err)
		return
	}
	// The calling thread's own nice value: Linux's PRIO_PROCESS with id 0
	// is the thread.
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, rs.nice); err != nil {
		started <- fmt.Errorf("setting a reader's nice value to %d: %w", rs.nice, err)
		return
	}
	started <- nil
	buf := make([]byte, 4096)
	for !rs.done.Load() {
		p0 := rs.phase.Load()
		got, err := readAll(rs.file, buf)
		p1 := rs.phase.Load()
		orig, patched := err == nil && bytes.Equal(got, rs.orig), err == nil && bytes.Equal(got, rs.patched)
		switch {
		case p0 == p1 && p0%4 == 1 && patched:
			c.applied.Add(1)
		case p0 == p1 && p0%4 == 3 && orig:
			c.undone.Add(1)
		case (p0 != p1 || p0%4 == 0 || p0%4 == 2) && (orig || patched):
			c.moving.Add(1)
		default:
			c.wrong.Add(1)
			rs.report(cpu, p0, p1, got, err)
		}
		if err == nil {
			buf = got[:cap(got)]
		}
	}
}

func (rs *readers) report(cpu int, p0, p1 int64, got []byte, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.reported++; rs.reported <= maxReported {
		fmt.Printf("@@wrong cpu=%d phase=%d..%d got=%q err=%v\n", cpu, p0, p1, got, err)
	}
}

// next moves to the next phase (nil readers: nothing to tell).
func (rs *readers) next() {
	if rs != nil {
		rs.phase.Add(1)
	}
}

func (rs *readers) snapshot() counts {
	var t counts
	if rs == nil {
		return t
	}
	for i := range rs.r {
		c := &rs.r[i]
		t.applied += c.applied.Load()
		t.undone += c.undone.Load()
		t.moving += c.moving.Load()
		t.wrong += c.wrong.Load()
	}
	return t
}

// stop ends the readers and returns their counts.
func (rs *readers) stop() counts {
	rs.done.Store(true)
	rs.wg.Wait()
	return rs.snapshot()
}

// readAll reads file whole with open, read and close, into buf (grown if
// it fills up).
func readAll(file string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// startSleepers starts n threads asleep in pause(2) and waits until the
// process has them.
func startSleepers(n int) error {
	base := threads()
	for i := 0; i < n; i++ {
		go func() {
			runtime.LockOSThread()
			for {
				unix.Pause()
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for threads() < base+n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d sleeping threads started in 5 minutes", threads()-base, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// threads is the process's thread count (/proc/self/status), 0 if unknown.
func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// countTasks counts the guest's tasks: every thread of every process in
// /proc, kernel threads included.
func countTasks() int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*")
	return len(dirs)
}
