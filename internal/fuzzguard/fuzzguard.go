// Package fuzzguard holds what the fuzz targets share: a watchdog that turns
// a hang into a crash the fuzzer reports (Go's fuzzer has no time limit per
// input and minimizes the input that crashed the worker), and the check that
// an error names the input it is about.
package fuzzguard

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Slow is how long one call of a fuzz target may take: inputs are small,
// and a call takes milliseconds on a loaded machine.
const Slow = 10 * time.Second

// Watch ends the process, with the name of the call that hung, if the
// calling fuzz function does not return within Slow; the fuzzer then
// records the input as a crash.
func Watch(t *testing.T, what string) {
	tm := time.AfterFunc(Slow, func() {
		fmt.Fprintf(os.Stderr, "%s: %s took more than %v\n", t.Name(), what, Slow)
		os.Exit(3)
	})
	t.Cleanup(func() { tm.Stop() })
}

// Names fails t unless err's text contains name: every error a reader
// returns says which input it is about.
func Names(t *testing.T, err error, name string) {
	t.Helper()
	if err != nil && !strings.Contains(err.Error(), name) {
		t.Fatalf("error %q does not name the input %s", err, name)
	}
}
