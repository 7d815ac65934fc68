// Command livesplice-cycles runs inside a test guest (scenario "cycles",
// driven from the host by demo.RunCycles): it applies and undoes one update
// again and again with the guest's livesplice, and prints one "@@cycle"
// line per cycle with the stop times the helper measured (the apply's, the
// undo's, and the medians of the empty stop_machines of the calibrate that
// apply runs just before it), how many tasks the stop looked at and whether
// it needed the pass over every task.
//
// Two loads can run meanwhile. -tasks N starts threads asleep in pause(2)
// before the first cycle until the guest has N tasks (threads, kernel
// threads included, idle tasks not), so the stack check has them to walk. -read starts one reader per CPU, pinned to it, that reads a file
// (/proc/cmdline) in a tight loop and checks every answer: while the update
// is applied (between a successful apply and the next undo) it must be the
// patched text, while it is not applied the original, and a read that
// overlaps an apply or an undo may be either; anything else is a wrong
// answer, counted and printed. The readers run at nice 19 (-nice): they
// take every cycle the vCPUs have left, and livesplice's own work in the
// guest (reading the pack, the symbol table and the running code, slow
// under TCG) is not slowed down threefold by them. The original text is the file as it reads
// before the first cycle; the patched text is the original with -from
// replaced by -to.
//
// livesplice runs with GOGC=400 (-gogc): under TCG, the garbage collector
// is most of the time it takes with the default of 100 (livesplice check
// of the demo pack: 3.5-5 s, 1.7 s with 400), and a cycle's cost is
// mostly its apply's.
//
// New kernel log records are printed after each cycle as "@@kmsg TEXT"
// lines (the whole log from boot before the first), so that the host sees
// every record however long the run: the ring buffer alone would wrap.
//
// The program stops at the first apply or undo that fails, after printing
// its output; its exit status is then 1.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	pack, id, livesplice string
	cycles, tasks        int
	read, rewrite        bool
	dwell                time.Duration
	nice                 int
	gogc                 string
	file, from, to       string
}

func main() {
	var o options
	flag.IntVar(&o.cycles, "cycles", 20, "apply/undo cycles")
	flag.IntVar(&o.tasks, "tasks", 0, "start threads asleep before the cycles until the guest has this many tasks")
	flag.BoolVar(&o.read, "read", false, "read -file on every CPU during the cycles and check each answer")
	flag.BoolVar(&o.rewrite, "rewrite", false, "after each apply, measure stops that write the jumps' own bytes back (calibrate-write)")
	flag.DurationVar(&o.dwell, "dwell", 50*time.Millisecond, "with -read: how long each cycle stays applied, and undone, at least")
	flag.IntVar(&o.nice, "nice", 19, "with -read: the readers' nice value")
	flag.StringVar(&o.gogc, "gogc", "400", "GOGC for livesplice (\"\": this program's environment's)")
	flag.StringVar(&o.file, "file", "/proc/cmdline", "the file the readers read")
	flag.StringVar(&o.from, "from", "secret=hunter2", "the text of -file the update changes...")
	flag.StringVar(&o.to, "to", "secret=***", "...into this")
	flag.StringVar(&o.id, "id", "demo-cmdline", "the update's id")
	flag.StringVar(&o.livesplice, "livesplice", "/bin/livesplice", "the livesplice binary")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: livesplice-cycles [flags] PACK")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	o.pack = flag.Arg(0)
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "livesplice-cycles:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	log, err := openKmsg()
	if err != nil {
		return err
	}
	defer log.close()
	printKmsg(log.read())
	if n := o.tasks - countTasks(); n > 0 {
		start := time.Now()
		if err := startSleepers(n); err != nil {
			return err
		}
		fmt.Printf("@@sleepers %d started in %s\n", n, time.Since(start).Round(time.Millisecond))
	}
	fmt.Printf("@@tasks %d\n", countTasks())
	var rs *readers
	dwell := time.Duration(0)
	if o.read {
		dwell = o.dwell
		if rs, err = startReaders(o.file, o.from, o.to, o.nice); err != nil {
			return err
		}
		fmt.Printf("@@readers %d\n", len(rs.r))
	}
	start := time.Now()
	for i := 1; i <= o.cycles; i++ {
		c, err := cycle(o, rs, log, dwell)
		fmt.Println(c.line(i))
		printKmsg(c.kmsg)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
	}
	var t counts
	if rs != nil {
		t = rs.stop()
	}
	fmt.Printf("@@cycles-done cycles=%d seconds=%.1f reads=%d wrong=%d\n",
		o.cycles, time.Since(start).Seconds(), t.total(), t.wrong)
	return nil
}
