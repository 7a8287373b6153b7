/* A growable string for building response bodies (HTML, JSON, Prometheus text). A failed
 * allocation sets a sticky error: build the whole text, check strbuf__err() once at the end. */
#ifndef CPROF_UTIL_STRBUF_H
#define CPROF_UTIL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *s; /* NUL-terminated once anything was added */
	size_t len, cap;
	bool oom;
};

void strbuf__printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf__add(struct strbuf *b, const char *s, size_t len);
void strbuf__puts(struct strbuf *b, const char *s);
/* s as a JSON string with its quotes; '<' and '>' are escaped too, so the result can sit
 * inside an HTML <script> element. */
void strbuf__json(struct strbuf *b, const char *s);
/* s with &, <, >, " and ' escaped for HTML text and attribute values. */
void strbuf__html(struct strbuf *b, const char *s);
/* 0, or -ENOMEM when an addition failed. */
int strbuf__err(const struct strbuf *b);
/* Hands the buffer over (caller frees); b is empty afterwards. */
char *strbuf__take(struct strbuf *b, size_t *len);
void strbuf__free(struct strbuf *b);

#endif
