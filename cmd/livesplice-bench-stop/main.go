// Command livesplice-bench-stop measures how long apply and undo hold every
// CPU, next to an empty stop_machine of the same boot: for each
// configuration (vCPUs × tasks) it boots Debian's kernel in qemu once and
// applies and undoes the demo fix -cycles times (each apply runs its
// calibrate just before it: 7 empty stop_machines after the same work
// before the stop as apply's, 7 back to back), then prints the medians and
// spread of the apply, undo and empty stops, the ratios, the tasks looked
// at inside the stop and how many stops needed the pass over every task.
// Run it with `make bench-stop`. TCG inflates absolute times: compare the
// ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livesplice/livesplice/demo"
	"github.com/livesplice/livesplice/internal/cache"
)

func main() {
	repo := flag.String("repo", ".", "livesplice repository")
	cacheDir := flag.String("cache", cache.Dir(), "cache holding trees/RELEASE")
	work := flag.String("work", "", "work directory (default: a temporary one); each boot's console goes to WORK/console-VCPUSxTASKS.log")
	cycles := flag.Int("cycles", 20, "apply/undo cycles per boot")
	vcpus := flag.String("vcpus", "2,4", "comma-separated vCPU counts")
	tasks := flag.String("tasks", "50,2000", "comma-separated task counts: sleeping threads are started until the guest has this many")
	flag.Parse()
	cpuList, err1 := ints(*vcpus)
	taskList, err2 := ints(*tasks)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "livesplice-bench-stop:", err1, err2)
		os.Exit(2)
	}
	if err := run(*repo, *cacheDir, *work, *cycles, cpuList, taskList); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice-bench-stop:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: want comma-separated counts", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// memoryMB gives a guest with many tasks room for their stacks.
func memoryMB(tasks int) int {
	if tasks > 500 {
		return 2048
	}
	return 1024
}

func run(repo, cacheDir, work string, cycles int, cpuList, taskList []int) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	s, cleanup, err := demo.WorkSetup(repo, cacheDir, work)
	if err != nil {
		return err
	}
	defer cleanup()
	bin, cyclesBin, packPath, err := s.CycleInputs(ctx)
	if err != nil {
		return err
	}
	var runs []*demo.CycleRun
	for _, n := range cpuList {
		for _, t := range taskList {
			o := demo.CycleOptions{Cycles: cycles, Tasks: t, SMP: n, MemoryMB: memoryMB(t), Rewrite: true}
			f, err := os.Create(filepath.Join(s.Work, fmt.Sprintf("console-%dx%d.log", n, t)))
			if err != nil {
				return err
			}
			o.Log = f
			r, err := s.RunCycles(ctx, bin, cyclesBin, packPath, o)
			f.Close()
			if err != nil {
				return fmt.Errorf("%d vCPUs, %d tasks: %w", n, t, err)
			}
			if err := demo.WriteStopTable(os.Stdout, r); err != nil {
				return err
			}
			if f := r.Failures(); len(f) > 0 {
				fmt.Printf("problems: %s\n", strings.Join(f, "\n"))
			}
			fmt.Println()
			runs = append(runs, r)
		}
	}
	return demo.WriteStopSummary(os.Stdout, runs)
}
