package guest

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
)

// Unix file type bits as stored in the mode field of a cpio header.
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
	modeCharDev  = 0o020000
	modeSetuid   = 0o004000
	modeSetgid   = 0o002000
	modeSticky   = 0o001000
)

// newcMagic starts every header of the "new ASCII" (SVR4, no checksum) format,
// the only cpio format the Linux kernel accepts for an initramfs.
const newcMagic = "070701"

// newcTrailer names the entry that ends an archive.
const newcTrailer = "TRAILER!!!"

// cpioEntry is one member of a newc archive. Mode holds the Unix type and
// permission bits (for example 0o100755 for an executable file).
type cpioEntry struct {
	Name     string // path without a leading slash, e.g. "bin/busybox"
	Mode     uint32 // Unix st_mode
	Data     []byte // file contents, or the target of a symlink
	RdevMaj  uint32 // device major number, for device nodes
	RdevMin  uint32 // device minor number, for device nodes
	UID, GID uint32
}

// unixMode converts an fs.FileMode to Unix st_mode bits. Only regular files,
// directories, symlinks and character devices are supported.
func unixMode(m fs.FileMode) (uint32, error) {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		u |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		u |= modeSticky
	}
	switch t := m.Type(); t {
	case 0:
		u |= modeRegular
	case fs.ModeDir:
		u |= modeDir
	case fs.ModeSymlink:
		u |= modeSymlink
	case fs.ModeDevice | fs.ModeCharDevice:
		u |= modeCharDev
	default:
		return 0, fmt.Errorf("unsupported file type %v", t)
	}
	return u, nil
}

// newcWriter writes entries of a newc cpio archive. Close writes the trailer.
type newcWriter struct {
	w   *bufio.Writer
	off int64  // bytes written so far, for 4-byte alignment
	ino uint32 // next inode number
}

func newNewcWriter(w io.Writer) *newcWriter {
	return &newcWriter{w: bufio.NewWriter(w), ino: 1}
}

func (cw *newcWriter) write(b []byte) error {
	n, err := cw.w.Write(b)
	cw.off += int64(n)
	return err
}

func (cw *newcWriter) pad() error {
	if r := cw.off % 4; r != 0 {
		return cw.write(make([]byte, 4-r))
	}
	return nil
}

// WriteEntry appends one entry. Directories must not carry data.
func (cw *newcWriter) WriteEntry(e cpioEntry) error {
	if e.Name == "" {
		return fmt.Errorf("cpio entry with empty name")
	}
	if e.Mode&modeTypeMask == modeDir && len(e.Data) != 0 {
		return fmt.Errorf("cpio entry %q: directory with data", e.Name)
	}
	nlink := uint32(1)
	if e.Mode&modeTypeMask == modeDir {
		nlink = 2
	}
	ino := cw.ino
	cw.ino++
	return cw.writeRaw(ino, e.Mode, e.UID, e.GID, nlink, e.RdevMaj, e.RdevMin, e.Name, e.Data)
}

func (cw *newcWriter) writeRaw(ino, mode, uid, gid, nlink, rmaj, rmin uint32, name string, data []byte) error {
	if uint64(len(data)) > 0xffffffff {
		return fmt.Errorf("cpio entry %q: %d bytes is too large for newc", name, len(data))
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic,
		ino, mode, uid, gid, nlink,
		0,                 // mtime: zero for a reproducible archive
		uint32(len(data)), // filesize
		0, 0,              // devmajor, devminor of the containing filesystem
		rmaj, rmin,
		uint32(len(name)+1), // namesize, including the NUL
		0,                   // check: unused by newc
	)
	if err := cw.write([]byte(hdr)); err != nil {
		return err
	}
	if err := cw.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := cw.pad(); err != nil {
		return err
	}
	if err := cw.write(data); err != nil {
		return err
	}
	return cw.pad()
}

// Close writes the trailer entry and flushes. It does not close the
// underlying writer.
func (cw *newcWriter) Close() error {
	if err := cw.writeRaw(0, 0, 0, 0, 1, 0, 0, newcTrailer, nil); err != nil {
		return err
	}
	return cw.w.Flush()
}
