// Package modfile reads a kernel module file (.ko) the way the kernel's
// module loader will use it, so that an update for a module that is not
// loaded can be checked before it loads.
//
// Layout places the module's allocated sections at addresses of the
// caller's choosing and applies the module's relocations, resolving its
// undefined symbols (what it links against: vmlinux's exports, other
// modules') through the caller. The result is the module's code as the
// kernel's loader writes it, before the kernel's run-time rewriting
// (alternatives, static branches, ftrace NOPs), which run-pre matching
// accepts as well. It also lists the module's symbols as kallsyms will:
// the "core" symbols (defined, named, in an allocated section that is not
// freed after init, or per-CPU), in the order of the module's symbol
// table, which is the order the update module counts them in when it
// looks a name up in the loaded module.
//
// Find locates a module's file under /lib/modules/RELEASE through
// modules.dep; BuildID reads the file's build-id, which the loaded module
// shows in /sys/module/NAME/notes/.note.gnu.build-id.
//
// Nothing here touches the kernel.
package modfile
