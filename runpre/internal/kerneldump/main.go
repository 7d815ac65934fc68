// Command kerneldump boots a kernel in qemu and saves what run-pre
// matching fixtures are made from: the guest's /proc/kallsyms and its
// kernel text (_stext.._etext, read from /proc/kcore). fixturegen then
// cuts fixtures out of such a dump.
//
//	go run ./runpre/internal/kerneldump -kernel /boot/vmlinuz-6.1.0-56-amd64 \
//		-cpu EPYC -o /tmp/run/epyc [-smp 1] [kernel command-line words...]
//
// The same binary runs inside the guest (with -guest), statically linked
// into the initramfs, and prints the two files gzip'd and base64-encoded
// between markers on the console; the host side decodes them into
// DIR/kallsyms and DIR/text-ADDRESS (ADDRESS: _stext, in hex).
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/livesplice/livesplice/guest"
	"github.com/livesplice/livesplice/kallsyms"
	"github.com/livesplice/livesplice/kcore"
)

const blobMarker, endMarker = "@@blob ", "@@end"

func main() {
	inGuest := flag.Bool("guest", false, "run as the guest side (inside the initramfs)")
	kernel := flag.String("kernel", guest.DefaultKernel, "kernel to boot")
	cpu := flag.String("cpu", guest.DefaultCPU, "qemu CPU model")
	smp := flag.Int("smp", guest.DefaultSMP, "vCPUs")
	out := flag.String("o", "", "output directory")
	flag.Parse()
	var err error
	if *inGuest {
		err = dump(os.Stdout)
	} else {
		err = boot(*kernel, *cpu, *smp, flag.Args(), *out)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// dump prints the guest's kallsyms and kernel text as blobs.
func dump(w io.Writer) error {
	ks, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		return err
	}
	syms, err := kallsyms.Parse(bytes.NewReader(ks))
	if err != nil {
		return err
	}
	start, err := syms.Unique("_stext")
	if err != nil {
		return err
	}
	end, err := syms.Unique("_etext")
	if err != nil {
		return err
	}
	mem, err := kcore.Open("/proc/kcore")
	if err != nil {
		return err
	}
	defer mem.Close()
	text, err := mem.Read(start.Addr, int(end.Addr-start.Addr))
	if err != nil {
		return err
	}
	if err := blob(w, "kallsyms", ks); err != nil {
		return err
	}
	return blob(w, fmt.Sprintf("text-%x", start.Addr), text)
}

func blob(w io.Writer, name string, data []byte) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s%s\n%s\n%s\n", blobMarker, name, base64.StdEncoding.EncodeToString(buf.Bytes()), endMarker)
	return err
}

// boot runs the guest side in qemu and writes its blobs into out.
func boot(kernel, cpu string, smp int, appendWords []string, out string) error {
	if out == "" {
		return fmt.Errorf("-o DIR is required")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	self := filepath.Join(out, "kerneldump")
	cmd := exec.Command("go", "build", "-o", self, "./runpre/internal/kerneldump")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the guest side: %w\n%s", err, b)
	}
	initrd := filepath.Join(out, "initrd.gz")
	files := []guest.File{guest.Scenario("/bin/kerneldump -guest\n"), {Path: "/bin/kerneldump", Mode: 0o755, Source: self}}
	if err := guest.BuildInitramfs(initrd, files); err != nil {
		return err
	}
	res, err := guest.Run(context.Background(), guest.Config{Kernel: kernel, Initrd: initrd, CPU: cpu, SMP: smp,
		Append: appendWords, Timeout: 10 * time.Minute})
	if err != nil {
		return err
	}
	t := res.ScenarioOutput()
	found := 0
	for {
		i := strings.Index(t, blobMarker)
		if i < 0 {
			break
		}
		name, rest, _ := strings.Cut(t[i+len(blobMarker):], "\n")
		body, rest, ok := strings.Cut(rest, "\n"+endMarker)
		if !ok || name != filepath.Base(name) {
			return fmt.Errorf("guest output: blob %q is cut short or badly named", name)
		}
		if err := save(filepath.Join(out, name), body); err != nil {
			return err
		}
		found++
		t = rest
	}
	if found != 2 {
		return fmt.Errorf("guest printed %d of 2 blobs (exit %d):\n%s", found, res.ExitCode, res.Transcript)
	}
	return nil
}

func save(path, body string) error {
	data, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(body, "\n", ""))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, raw, 0o644)
}
