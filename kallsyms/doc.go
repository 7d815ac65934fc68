// Package kallsyms reads the running kernel's symbol table in the format of
// /proc/kallsyms and answers the questions the loader asks of it: where a
// symbol is, whether its name is unique, and how large a function can be.
package kallsyms
