#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sym/debug_cache.h"
#include "sym/dwarf.h"
#include "util/elf_head.h"
#include "util/hashmap.h"

/* Deepest nesting of scopes (functions, inlined instances, blocks) followed at one address. */
#define SCOPES_MAX 64
/* Deepest nesting of DIEs of any kind (namespaces, classes, imported units) walked through. */
#define SCOPES_MAX_LEVEL 256

struct sym_dwarf {
	/* libdwfl keeps pointers to both: they live as long as the Dwfl. */
	Dwfl_Callbacks cbs;
	char *debuginfo_path;
	const char *debug_root; /* the debug root, in debuginfo_path */
	Dwfl *dwfl;
	Dwfl_Module *mod;
	bool tried; /* dwfl_module_getdwarf was called */
	bool present;
	struct hashmap *cus; /* CU DIE offset + 1 -> struct cu_index *, built on first use */
};

/* The functions of one CU with their code ranges, sorted, so that a lookup starts at the right
 * function instead of walking every DIE of the CU. */
struct cu_func {
	Dwarf_Addr low, high;
	Dwarf_Die die;
};

struct cu_index {
	struct cu_func *funcs;
	size_t n, cap;
};

/* The uncompressed copy (sym/debug_cache.h) of the debug file ROOT/.build-id/xx/yyyy.debug with
 * build-id id, when that file exists and is compressed: an fd, or -errno. */
static int sym_dwarf__cached(const struct sym_dwarf *d, const char *id, char **name)
{
	char path[PATH_MAX];
	int fd, cfd;

	if ((size_t)snprintf(path, sizeof(path), "%s/.build-id/%.2s/%s.debug", d->debug_root, id,
			     id + 2) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	cfd = debug_cache__open(fd, id, name);
	close(fd);
	return cfd;
}

/* libdwfl's search for the separate debug file (by build-id, .gnu_debuglink, debuginfod),
 * except that a compressed debug file found by build-id is read from its uncompressed copy. */
static int sym_dwarf__find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
				     GElf_Addr base, const char *file_name,
				     const char *debuglink_file, GElf_Word debuglink_crc,
				     char **debuginfo_file_name)
{
	const struct sym_dwarf *d = *userdata;
	const unsigned char *bits;
	char id[2 * 64 + 1], *path;
	GElf_Addr vaddr;
	int fd, len;

	len = d ? dwfl_module_build_id(mod, &bits, &vaddr) : 0;
	if (len >= 2 && elf_head__hex(bits, (size_t)len, id, sizeof(id)) == 0) {
		fd = sym_dwarf__cached(d, id, &path);
		if (fd >= 0) {
			free(*debuginfo_file_name);
			*debuginfo_file_name = path;
			return fd;
		}
	}
	return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
					    debuglink_crc, debuginfo_file_name);
}

int sym_dwarf__open(int fd, const char *path, const char *debug_dir, struct sym_dwarf **out)
{
	struct sym_dwarf *d;
	void **userdata = NULL;
	int dfd, err;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	/* The file's own directory, then .debug/ in it, then the debug root (by build-id under
	 * .build-id/, by debuglink name under ROOT/<dir of the file>/ and ROOT/). */
	if (asprintf(&d->debuginfo_path, ":.debug:%s",
		     debug_dir ? debug_dir : SYM_DEBUG_DIR_DEFAULT) < 0) {
		d->debuginfo_path = NULL;
		err = -ENOMEM;
		goto cleanup;
	}
	d->debug_root = d->debuginfo_path + strlen(":.debug:");
	d->cbs.find_elf = dwfl_build_id_find_elf;
	d->cbs.find_debuginfo = sym_dwarf__find_debuginfo;
	d->cbs.section_address = dwfl_offline_section_address;
	d->cbs.debuginfo_path = &d->debuginfo_path;
	d->cus = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!d->cus) {
		err = -ENOMEM;
		goto cleanup;
	}
	d->dwfl = dwfl_begin(&d->cbs);
	if (!d->dwfl) {
		err = -ENOMEM;
		goto cleanup;
	}
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0) {
		err = -errno;
		goto cleanup;
	}
	/* Base 0 relative to p_vaddr: module addresses are the file's link-time addresses. */
	d->mod = dwfl_report_elf(d->dwfl, path, path, dfd, 0, true);
	if (!d->mod) {
		close(dfd);
		err = -ENOEXEC;
		goto cleanup;
	}
	dwfl_report_end(d->dwfl, NULL, NULL);
	/* The module's userdata is what find_debuginfo gets: this reader. */
	dwfl_module_info(d->mod, &userdata, NULL, NULL, NULL, NULL, NULL, NULL);
	if (userdata)
		*userdata = d;
	*out = d;
	return 0;
cleanup:
	sym_dwarf__free(d);
	return err;
}

static void cu_index__free(const void *key, void *value, void *ctx)
{
	struct cu_index *ci = value;

	(void)key;
	(void)ctx;
	free(ci->funcs);
	free(ci);
}

void sym_dwarf__free(struct sym_dwarf *d)
{
	if (!d)
		return;
	if (d->cus)
		hashmap__for_each(d->cus, cu_index__free, NULL);
	hashmap__free(d->cus);
	if (d->dwfl)
		dwfl_end(d->dwfl);
	free(d->debuginfo_path);
	free(d);
}

bool sym_dwarf__present(struct sym_dwarf *d)
{
	Dwarf_Addr bias;

	if (!d->tried) {
		d->tried = true;
		d->present = dwfl_module_getdwarf(d->mod, &bias) != NULL;
	}
	return d->present;
}

/* The name pprof should show for a function DIE: its linkage name (demangled later into the
 * qualified C++/Rust name), else DW_AT_name; both followed through abstract_origin and
 * specification. */
static const char *die_name(Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *name;

	name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
	if (!name)
		name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
	if (!name)
		name = dwarf_diename(die);
	return name;
}

static int die_decl_line(Dwarf_Die *die)
{
	int line = 0;

	if (dwarf_decl_line(die, &line))
		return 0;
	return line;
}

/* Where an inlined subroutine was called from: its DW_AT_call_file / DW_AT_call_line. */
static void die_call_site(Dwarf_Die *cudie, Dwarf_Die *die, const char **file, int *line)
{
	Dwarf_Attribute attr;
	Dwarf_Files *files;
	Dwarf_Word val;
	size_t nfiles;

	*file = NULL;
	*line = 0;
	if (!dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &val))
		*line = (int)val;
	if (!dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &val) &&
	    !dwarf_getsrcfiles(cudie, &files, &nfiles) && val < nfiles)
		*file = dwarf_filesrc(files, val, NULL, NULL);
}

static bool is_function(Dwarf_Die *die)
{
	int tag = dwarf_tag(die);

	return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine ||
	       tag == DW_TAG_entry_point;
}

/* DIEs that hold no code themselves but may hold functions (C++ classes, Rust impls). */
static bool is_container(Dwarf_Die *die)
{
	switch (dwarf_tag(die)) {
	case DW_TAG_imported_unit: /* dwz's shared partial units */
	case DW_TAG_namespace:
	case DW_TAG_module:
	case DW_TAG_structure_type:
	case DW_TAG_class_type:
	case DW_TAG_union_type:
		return true;
	default:
		return false;
	}
}

/* Fills chain[depth..] with the DIEs under parent that contain pc, outermost first, and
 * returns the new depth. */
static int scopes_walk(Dwarf_Die *parent, Dwarf_Addr pc, Dwarf_Die *chain, int max, int depth,
		       int level)
{
	Dwarf_Attribute attr;
	Dwarf_Die child, unit;
	int deeper;

	/* An imported unit's DIEs are those of the partial unit it names. */
	if (dwarf_tag(parent) == DW_TAG_imported_unit) {
		if (!dwarf_formref_die(dwarf_attr(parent, DW_AT_import, &attr), &unit))
			return depth;
		parent = &unit;
	}
	/* level bounds the recursion through containers too (corrupt input may nest, or import,
	 * without end). */
	if (depth >= max || level >= SCOPES_MAX_LEVEL || dwarf_child(parent, &child))
		return depth;
	do {
		if (dwarf_haspc(&child, pc) > 0) {
			chain[depth] = child;
			return scopes_walk(&child, pc, chain, max, depth + 1, level + 1);
		}
		if (is_container(&child)) {
			deeper = scopes_walk(&child, pc, chain, max, depth, level + 1);
			if (deeper > depth)
				return deeper;
		}
	} while (!dwarf_siblingof(&child, &child));
	return depth;
}

static int cu_func__cmp(const void *pa, const void *pb)
{
	const struct cu_func *a = pa, *b = pb;

	if (a->low != b->low)
		return a->low < b->low ? -1 : 1;
	return 0;
}

static int cu_index__add(struct cu_index *ci, Dwarf_Die *die)
{
	Dwarf_Addr base, low, high;
	struct cu_func *tmp;
	ptrdiff_t off = 0;

	while ((off = dwarf_ranges(die, off, &base, &low, &high)) > 0) {
		if (low >= high)
			continue;
		if (ci->n == ci->cap) {
			ci->cap = ci->cap ? ci->cap * 2 : 64;
			tmp = realloc(ci->funcs, ci->cap * sizeof(*tmp));
			if (!tmp)
				return -ENOMEM;
			ci->funcs = tmp;
		}
		ci->funcs[ci->n++] = (struct cu_func){.low = low, .high = high, .die = *die};
	}
	return 0;
}

/* Adds the functions with code under parent (through namespaces, classes, imported units). */
static int cu_index__scan(struct cu_index *ci, Dwarf_Die *parent, int level)
{
	Dwarf_Attribute attr;
	Dwarf_Die child, unit;
	int err, tag;

	if (dwarf_tag(parent) == DW_TAG_imported_unit) {
		if (!dwarf_formref_die(dwarf_attr(parent, DW_AT_import, &attr), &unit))
			return 0;
		parent = &unit;
	}
	if (level >= SCOPES_MAX_LEVEL || dwarf_child(parent, &child))
		return 0;
	do {
		tag = dwarf_tag(&child);
		if (tag == DW_TAG_subprogram || tag == DW_TAG_entry_point)
			err = cu_index__add(ci, &child);
		else if (is_container(&child))
			err = cu_index__scan(ci, &child, level + 1);
		else
			err = 0;
		if (err)
			return err;
	} while (!dwarf_siblingof(&child, &child));
	return 0;
}

static struct cu_index *sym_dwarf__cu_index(struct sym_dwarf *d, Dwarf_Die *cudie)
{
	void *key = (void *)(uintptr_t)(dwarf_dieoffset(cudie) + 1);
	struct cu_index *ci;
	void *found;

	if (hashmap__find(d->cus, key, &found))
		return found;
	ci = calloc(1, sizeof(*ci));
	if (!ci)
		return NULL;
	if (cu_index__scan(ci, cudie, 0) || hashmap__insert(d->cus, key, ci)) {
		cu_index__free(NULL, ci, NULL);
		return NULL;
	}
	if (ci->n) /* funcs is NULL for a CU without functions */
		qsort(ci->funcs, ci->n, sizeof(*ci->funcs), cu_func__cmp);
	return ci;
}

/* The scopes holding pc, outermost first, starting at the indexed function that holds it;
 * a full walk of the CU when the index has none (or could not be built). */
static int sym_dwarf__scopes(struct sym_dwarf *d, Dwarf_Die *cudie, Dwarf_Addr pc, Dwarf_Die *chain)
{
	struct cu_index *ci = sym_dwarf__cu_index(d, cudie);
	size_t lo = 0, hi, mid, i;

	if (!ci)
		return scopes_walk(cudie, pc, chain, SCOPES_MAX, 0, 0);
	hi = ci->n;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ci->funcs[mid].low <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Ranges of distinct functions do not overlap; look back a little for ones that do. */
	for (i = lo; i > 0 && lo - i < 4; i--) {
		if (pc < ci->funcs[i - 1].high) {
			chain[0] = ci->funcs[i - 1].die;
			return scopes_walk(&chain[0], pc, chain, SCOPES_MAX, 1, 0);
		}
	}
	return scopes_walk(cudie, pc, chain, SCOPES_MAX, 0, 0);
}

int sym_dwarf__frames(struct sym_dwarf *d, uint64_t vaddr, struct sym_dwarf_frame *frames, int max)
{
	const char *file = NULL, *comp_dir;
	Dwarf_Attribute attr;
	Dwarf_Die *cudie, chain[SCOPES_MAX];
	Dwarf_Die *die;
	Dwarf_Line *dl;
	Dwarf_Addr bias, pc;
	int nscopes, i, n = 0, line = 0;

	if (max <= 0 || !sym_dwarf__present(d))
		return 0;
	cudie = dwfl_module_addrdie(d->mod, vaddr, &bias);
	if (!cudie)
		return 0;
	pc = vaddr - bias;
	comp_dir = dwarf_formstring(dwarf_attr(cudie, DW_AT_comp_dir, &attr));
	dl = dwarf_getsrc_die(cudie, pc);
	if (dl) {
		file = dwarf_linesrc(dl, NULL, NULL);
		if (dwarf_lineno(dl, &line))
			line = 0;
	}
	/* The DIEs that physically enclose pc, outermost first: the concrete function, its
	 * inlined instances and blocks. (dwarf_getscopes would continue from an inlined instance
	 * into its abstract definition, finds nothing in rustc's CUs, and leaks its array when it
	 * fails on corrupt DWARF.) */
	nscopes = sym_dwarf__scopes(d, cudie, pc, chain);
	/* Innermost first. */
	for (i = nscopes - 1; i >= 0 && n < max; i--) {
		die = &chain[i];
		if (!is_function(die))
			continue;
		frames[n].name = die_name(die);
		frames[n].file = file;
		frames[n].dir = file && file[0] != '/' ? comp_dir : NULL;
		frames[n].line = line;
		frames[n].start_line = die_decl_line(die);
		if (!frames[n].name)
			frames[n].name = "??";
		n++;
		if (dwarf_tag(die) != DW_TAG_inlined_subroutine)
			break;
		/* The caller's frame is at the call site of this inlined instance. */
		die_call_site(cudie, die, &file, &line);
	}
	/* Line info without a function DIE (assembly, or a CU with lines only). */
	if (!n && file) {
		frames[0].name = NULL;
		frames[0].file = file;
		frames[0].dir = file[0] != '/' ? comp_dir : NULL;
		frames[0].line = line;
		frames[0].start_line = 0;
		n = 1;
	}
	return n;
}

const char *sym_dwarf__symbol(struct sym_dwarf *d, uint64_t vaddr)
{
	GElf_Off off;
	GElf_Sym sym;

	return dwfl_module_addrinfo(d->mod, vaddr, &off, &sym, NULL, NULL, NULL);
}
