// Package kallsyms reads the running kernel's symbol table in the format of
// /proc/kallsyms and answers the questions the loader asks of it: where a
// symbol is, whether its name is unique, and how large a function can be.
//
// A table answers for one object (Table.In): vmlinux, or a module, whose
// own symbols then come before vmlinux's (the names its code links
// against). A module's symbols keep the order of its symbol table (Seq);
// Position says which of a module's symbols of one name a symbol is,
// which is how the update module finds it again when the module loads.
// With adds symbols, such as a module's as it will be laid out from its
// .ko file.
package kallsyms
