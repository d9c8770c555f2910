/*
 * out: vfio-brokerctl's output: JSON documents built with json-c (every string escaped per RFC
 * 8259, invalid UTF-8 replaced, so that any byte the broker reports yields valid JSON) and an
 * aligned-column table writer for people.
 * Strings from the broker are data: control characters never reach the terminal raw.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "base.h"
#include "brokerctl.h"

void jw_init(struct jw *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;
	uint32_t cp;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string for `s`: json-c escapes quotes, backslashes and control characters, but copies
 * other bytes as they are, so invalid UTF-8 (which would make the whole document invalid)
 * becomes U+FFFD first. NULL on allocation failure. */
static struct json_object *jw_string(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	struct json_object *o;
	size_t len = strlen(s), o_len = 0;
	char *clean;

	/* Each byte of the input becomes at most the 3 bytes of U+FFFD. */
	clean = malloc(len * 3 + 1);
	if (!clean)
		return NULL;
	while (*p) {
		size_t n = *p < 0x80 ? 1 : utf8_len(p);

		if (n == 0) {
			memcpy(clean + o_len, "\xef\xbf\xbd", 3);
			o_len += 3;
			p++;
		} else {
			memcpy(clean + o_len, p, n);
			o_len += n;
			p += n;
		}
	}
	o = json_object_new_string_len(clean, (int)o_len);
	free(clean);
	return o;
}

/* Adds `v` (owned from here on) to the open object (under `key`) or array, or makes it the
 * document. */
static void jw_add(struct jw *w, const char *key, struct json_object *v)
{
	struct json_object *parent;

	if (!v) {
		w->oom = true;
		return;
	}
	if (w->depth == 0) {
		json_object_put(w->root);
		w->root = v;
		return;
	}
	parent = w->stack[w->depth - 1];
	if (json_object_is_type(parent, json_type_object)) {
		if (json_object_object_add(parent, key ? key : "", v) < 0) {
			json_object_put(v);
			w->oom = true;
		}
	} else if (json_object_array_add(parent, v) < 0) {
		json_object_put(v);
		w->oom = true;
	}
}

static void jw_open(struct jw *w, const char *key, struct json_object *v)
{
	jw_add(w, key, v);
	/* Nesting is fixed by the program, never by input: 16 levels are plenty. */
	if (v && w->depth < (int)ARRAY_SIZE(w->stack))
		w->stack[w->depth++] = v;
}

void jw_obj_begin(struct jw *w, const char *key)
{
	jw_open(w, key, json_object_new_object());
}

void jw_obj_end(struct jw *w)
{
	if (w->depth > 0)
		w->depth--;
}

void jw_arr_begin(struct jw *w, const char *key)
{
	jw_open(w, key, json_object_new_array());
}

void jw_arr_end(struct jw *w)
{
	if (w->depth > 0)
		w->depth--;
}

void jw_str(struct jw *w, const char *key, const char *v)
{
	jw_add(w, key, jw_string(v ? v : ""));
}

void jw_u64(struct jw *w, const char *key, uint64_t v)
{
	jw_add(w, key, json_object_new_uint64(v));
}

void jw_double(struct jw *w, const char *key, double v)
{
	/* JSON has no NaN or infinities. */
	if (v != v || v > 1.7e308 || v < -1.7e308)
		jw_null(w, key);
	else
		jw_add(w, key, json_object_new_double(v));
}

void jw_bool(struct jw *w, const char *key, bool v)
{
	jw_add(w, key, json_object_new_boolean(v));
}

void jw_null(struct jw *w, const char *key)
{
	struct json_object *parent = w->depth ? w->stack[w->depth - 1] : NULL;

	/* json-c's null is the NULL object. */
	if (parent && json_object_is_type(parent, json_type_object))
		json_object_object_add(parent, key ? key : "", NULL);
	else if (parent)
		json_object_array_add(parent, NULL);
}

void jw_finish(struct jw *w)
{
	const char *text = NULL;

	if (!w->oom && w->root)
		text = json_object_to_json_string_ext(w->root, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text) {
		/* Half a document is worse than none: say so and stop, as xmalloc() would. */
		fprintf(stderr, "vfio-brokerctl: out of memory writing JSON\n");
		exit(EXIT_LOCAL);
	}
	fprintf(w->f, "%s\n", text);
	json_object_put(w->root);
	jw_init(w, w->f);
}

struct table {
	size_t ncols;
	size_t nrows; /* the header row included */
	size_t cap;
	char **cells; /* nrows * ncols */
};

VB_DEFINE_CLEANUP(struct table, table_free);

struct table *table_new(size_t ncols, const char *const *headers)
{
	_cleanup_(table_freep) struct table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	if (table_add(t, headers) < 0)
		return NULL;
	return TAKE_PTR(t);
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		char **n = realloc(t->cells, cap * t->ncols * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->cells = n;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		char *c = strdup(cells[i] ? cells[i] : "");

		if (!c) {
			while (i-- > 0)
				free(t->cells[t->nrows * t->ncols + i]);
			return -ENOMEM;
		}
		/* Cells are single-line: tabs, newlines and other controls would break columns. */
		for (char *p = c; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		t->cells[t->nrows * t->ncols + i] = c;
	}
	t->nrows++;
	return 0;
}

/* Terminal columns of a UTF-8 string: one per character (continuation bytes take none). */
static size_t text_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

void table_print(const struct table *t, FILE *f)
{
	size_t width[32] = {0};
	size_t ncols = t->ncols < 32 ? t->ncols : 32;

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			size_t n = text_width(t->cells[r * t->ncols + c]);

			if (n > width[c])
				width[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];

			fputs(s, f);
			if (c + 1 < ncols)
				fprintf(f, "%*s", (int)(width[c] - text_width(s) + 2), "");
		}
		fputc('\n', f);
	}
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

void out_safe(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

const char *out_bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v;
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)v);
		return buf;
	}
	d /= 1024;
	while (d >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", d, units[u]);
	return buf;
}

const char *out_time(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	char base[32];

	if (!gmtime_r(&s, &tm) || !strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(buf, len, "%llu", (unsigned long long)ns);
		return buf;
	}
	snprintf(buf, len, "%s.%03lluZ", base, (unsigned long long)(ns % 1000000000u / 1000000u));
	return buf;
}
