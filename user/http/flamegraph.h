/* The flame graph page: a profile rendered as one self-contained HTML document (inline script
 * and style, no fonts or requests of its own) with an interactive flame graph: click to zoom,
 * hover for values, search, sample type switch, and per-process roots for system-wide profiles. */
#ifndef CPROF_HTTP_FLAMEGRAPH_H
#define CPROF_HTTP_FLAMEGRAPH_H

#include <stddef.h>
#include <stdint.h>

struct flamegraph_info {
	const char *title;	 /* the page's heading, e.g. "cpu: pid 1234 (server)" */
	const char *profile_url; /* a link to the same capture as pprof; may be NULL */
};

/* Renders pb, a serialized (not gzipped) profile.proto, into *html (malloc'd, *len bytes).
 * Returns 0, -EINVAL when pb is not a profile, or -ENOMEM. */
int flamegraph__render(const uint8_t *pb, size_t len, const struct flamegraph_info *info,
		       char **html, size_t *html_len);

#endif
