#include <libiberty/demangle.h>
#include <string.h>

#include "sym/demangle.h"

char *sym_demangle(const char *name)
{
	/* Only _Z (Itanium, also Rust legacy) and _R (Rust v0) are mangled: this keeps C names
	 * such as "_Rflag" from being read, and skips the demangler for most C symbols. */
	if (!name || name[0] != '_' || (name[1] != 'Z' && name[1] != 'R'))
		return NULL;
	/* DMGL_AUTO tries Rust first (legacy Rust names are valid Itanium names), then C++.
	 * Adding DMGL_RUST would make it Rust only. No DMGL_PARAMS: names read as go tool pprof
	 * shows demangled names by default (qualified, template arguments, no parameter list);
	 * the full signature stays in the mangled system_name. */
	return cplus_demangle(name, DMGL_ANSI | DMGL_AUTO);
}
