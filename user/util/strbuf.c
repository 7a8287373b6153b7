#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"

static bool reserve(struct strbuf *b, size_t more)
{
	size_t cap;
	char *s;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	s = realloc(b->s, cap);
	if (!s) {
		b->oom = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

void strbuf__add(struct strbuf *b, const char *s, size_t len)
{
	if (!reserve(b, len))
		return;
	memcpy(b->s + b->len, s, len);
	b->len += len;
	b->s[b->len] = '\0';
}

void strbuf__puts(struct strbuf *b, const char *s)
{
	strbuf__add(b, s, strlen(s));
}

void strbuf__printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, n)) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

void strbuf__json(struct strbuf *b, const char *s)
{
	char esc[8];

	strbuf__add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = *p;
			strbuf__add(b, esc, 2);
		} else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			strbuf__add(b, esc, 6);
		} else {
			strbuf__add(b, (const char *)p, 1);
		}
	}
	strbuf__add(b, "\"", 1);
}

void strbuf__html(struct strbuf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			strbuf__puts(b, "&amp;");
			break;
		case '<':
			strbuf__puts(b, "&lt;");
			break;
		case '>':
			strbuf__puts(b, "&gt;");
			break;
		case '"':
			strbuf__puts(b, "&quot;");
			break;
		case '\'':
			strbuf__puts(b, "&#39;");
			break;
		default:
			strbuf__add(b, s, 1);
		}
	}
}

int strbuf__err(const struct strbuf *b)
{
	return b->oom ? -ENOMEM : 0;
}

char *strbuf__take(struct strbuf *b, size_t *len)
{
	char *s = b->s;

	if (!s)
		s = calloc(1, 1);
	if (len)
		*len = b->s ? b->len : 0;
	*b = (struct strbuf){};
	return s;
}

void strbuf__free(struct strbuf *b)
{
	free(b->s);
	*b = (struct strbuf){};
}
