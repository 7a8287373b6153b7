#include <stdbool.h>
#include <errno.h>
#include <string.h>

#include "sym/gopclntab.h"

#define GO_MAGIC_116 0xfffffffau
#define GO_MAGIC_118 0xfffffff0u
#define GO_MAGIC_120 0xfffffff1u

struct gotab {
	const uint8_t *data;
	size_t size;
	unsigned ptrsize;
};

/* Little-endian reads (x86_64); false when [off, off + n) is not inside the table. */
static bool gotab__uint(const struct gotab *t, uint64_t off, unsigned n, uint64_t *v)
{
	unsigned i;

	if (off > t->size || n > t->size - off)
		return false;
	*v = 0;
	for (i = 0; i < n; i++)
		*v |= (uint64_t)t->data[off + i] << (8 * i);
	return true;
}

/* The NUL-terminated name at off, or NULL when it runs past the table. */
static const char *gotab__str(const struct gotab *t, uint64_t off)
{
	if (off >= t->size || !memchr(t->data + off, '\0', t->size - off))
		return NULL;
	return (const char *)t->data + off;
}

int gopclntab__read(const uint8_t *data, size_t size, uint64_t text, gopclntab_fn fn, void *ctx)
{
	struct gotab t = {.data = data, .size = size};
	uint64_t magic, nfunc, textstart = 0, nameoff, ftab, entry, next, funcoff, name;
	uint64_t field = 8, fsize, i;
	const char *str;
	bool go118;
	int err;

	if (!gotab__uint(&t, 0, 4, &magic) || size < 8 || data[4] || data[5])
		return -ENOEXEC;
	t.ptrsize = data[7];
	if (t.ptrsize != 8 && t.ptrsize != 4)
		return -ENOEXEC;
	go118 = magic == GO_MAGIC_118 || magic == GO_MAGIC_120;
	if (!go118 && magic != GO_MAGIC_116)
		return -ENOEXEC;
	/* Header: nfunc, nfiles, [textStart,] funcnameOffset, cuOffset, filetabOffset,
	 * pctabOffset, pclnOffset, each ptrsize wide. */
	if (!gotab__uint(&t, field, t.ptrsize, &nfunc))
		return -ENOEXEC;
	field += 2 * t.ptrsize;
	if (go118) {
		if (!gotab__uint(&t, field, t.ptrsize, &textstart))
			return -ENOEXEC;
		field += t.ptrsize;
	}
	if (!gotab__uint(&t, field, t.ptrsize, &nameoff) ||
	    !gotab__uint(&t, field + 4 * t.ptrsize, t.ptrsize, &ftab))
		return -ENOEXEC;
	if (!textstart)
		textstart = text;
	/* functab: nfunc + 1 (entry, funcoff) pairs, the last entry being the end of the text;
	 * 1.18+ stores entries as 32-bit offsets from textStart, 1.16 as addresses. */
	fsize = go118 ? 4 : t.ptrsize;
	if (nfunc > size / (2 * fsize))
		return -ENOEXEC;
	for (i = 0; i < nfunc; i++) {
		if (!gotab__uint(&t, ftab + 2 * i * fsize, fsize, &entry) ||
		    !gotab__uint(&t, ftab + (2 * i + 1) * fsize, fsize, &funcoff) ||
		    !gotab__uint(&t, ftab + 2 * (i + 1) * fsize, fsize, &next))
			return -ENOEXEC;
		/* _func: entry (32-bit offset in 1.18+, an address before), then nameOff (int32). */
		if (!gotab__uint(&t, ftab + funcoff + fsize, 4, &name))
			return -ENOEXEC;
		str = gotab__str(&t, nameoff + (uint32_t)name);
		if (!str || next <= entry)
			continue;
		if (go118) {
			entry += textstart;
			next += textstart;
		}
		err = fn(ctx, entry, next, str);
		if (err)
			return err;
	}
	return 0;
}
