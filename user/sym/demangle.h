/* Private to sym/: C++ (Itanium) and Rust (legacy and v0) demangling through libiberty's
 * cplus_demangle, as binutils' addr2line and c++filt do it. */
#ifndef CPROF_SYM_DEMANGLE_H
#define CPROF_SYM_DEMANGLE_H

/* The demangled form of name without its parameter list ("ns::Class<int>::method"), malloc'd,
 * or NULL when name is not a mangled C++ or Rust name (or on allocation failure). Legacy Rust hashes ("::h0123...") are dropped, as rustfilt
 * does. */
char *sym_demangle(const char *name);

#endif
