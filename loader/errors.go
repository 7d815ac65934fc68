package loader

import "fmt"

// Kind classifies why an operation was refused; the CLI maps each kind to
// its own exit code.
type Kind int

// The kinds of refusal.
const (
	KindPack     Kind = iota + 1 // the pack is damaged or inconsistent
	KindKernel                   // the pack is for another kernel
	KindSymbol                   // a symbol is missing or ambiguous
	KindBusy                     // a task is inside the code
	KindMismatch                 // the running code is not what the pack was built from
	KindState                    // wrong state: already applied, not found, overlapping update
	KindLoad                     // the kernel refused the module
)

var kindNames = map[Kind]string{
	KindPack: "bad pack", KindKernel: "wrong kernel", KindSymbol: "symbol",
	KindBusy: "busy", KindMismatch: "code mismatch", KindState: "state", KindLoad: "module load",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind %d", int(k))
}

// Error is a refusal with its kind.
type Error struct {
	Kind Kind
	// Update is the update id the refusal concerns.
	Update string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("update %s refused (%s): %s", e.Update, e.Kind, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(kind Kind, id string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Update: id, Msg: fmt.Sprintf(format, args...), Err: err}
}
