package loader

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockFile is the file apply and undo lock (flock) for as long as
// they look at and change the kernel's updates, one process at a time;
// it holds the holder's "PID OPERATION ID". The kernel drops the lock
// when its holder dies, however it dies.
const DefaultLockFile = "/run/livesplice/lock"

// DefaultLockWait is how long apply and undo wait for another one.
const DefaultLockWait = 2 * time.Minute

func (l *Loader) lockFile() string {
	if l.LockFile != "" {
		return l.LockFile
	}
	return DefaultLockFile
}

// lock takes the lock for op (apply or undo) of update id, waiting at
// most LockWait for another process to let go of it, and returns how to
// let go of it.
func (l *Loader) lock(op, id string) (unlock func(), err error) {
	path := l.lockFile()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	wait := l.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	start := time.Now()
	deadline := start.Add(wait)
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		holder := parseHolder(f)
		if time.Now().After(deadline) {
			f.Close()
			return nil, refuse(KindState, id, nil, "%s has been at work for more than %s (it holds %s); try again when it is done", holder, wait, path)
		}
		// Not at once: List takes the lock shared for an instant.
		if !told && l.Notify != nil && time.Since(start) >= 200*time.Millisecond {
			fmt.Fprintf(l.Notify, "livesplice: waiting for %s to finish (at most %s)\n", holder, wait)
			told = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("%d %s %s\n", os.Getpid(), op, id)), 0)
	}
	return func() { f.Close() }, nil
}

// holder says who holds the lock now ("" and false if nobody does).
func (l *Loader) holder() (holder lockHolder, held bool) {
	f, err := os.Open(l.lockFile())
	if err != nil {
		return lockHolder{}, false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		return lockHolder{}, false // the lock goes with f
	}
	return parseHolder(f), true
}

// lockHolder is what the lock's holder wrote into it.
type lockHolder struct {
	pid    string
	op, id string
}

func (h lockHolder) String() string {
	if h.pid == "" {
		return "another livesplice apply or undo"
	}
	return fmt.Sprintf("livesplice %s %s (pid %s)", h.op, h.id, h.pid)
}

func parseHolder(f *os.File) lockHolder {
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, 4096))
	w := strings.Fields(string(b))
	if len(w) != 3 {
		return lockHolder{}
	}
	return lockHolder{pid: w[0], op: w[1], id: w[2]}
}
