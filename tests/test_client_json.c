/*
 * test_client_json: the strict JSON parser of the vfio-brokerctl tests (RFC 8259: no trailing
 * commas, no control characters in strings, escapes and surrogate pairs decoded to UTF-8).
 */
#include <stdlib.h>
#include <string.h>

#include "test_client_json.h"

struct p {
	const char *s;
	int depth;
};

static void ws(struct p *p)
{
	while (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')
		p->s++;
}

static struct tj *val(struct p *p);

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static char *str(struct p *p)
{
	char *out, *o;

	if (*p->s != '"')
		return NULL;
	p->s++;
	out = o = malloc(strlen(p->s) * 2 + 8);
	if (!out)
		return NULL;
	while (*p->s != '"') {
		unsigned char c = (unsigned char)*p->s;
		unsigned cp, lo;

		if (c == '\0' || c < 0x20)
			goto bad;
		if (c != '\\') {
			*o++ = (char)c;
			p->s++;
			continue;
		}
		p->s++;
		switch (*p->s) {
		case '"':
		case '\\':
		case '/':
			*o++ = *p->s;
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u':
			if (hex4(p->s + 1, &cp) < 0 || cp == 0)
				goto bad;
			p->s += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (p->s[1] != '\\' || p->s[2] != 'u' || hex4(p->s + 3, &lo) < 0 ||
				    lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p->s += 6;
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				goto bad;
			}
			o += put_utf8(o, cp);
			break;
		default:
			goto bad;
		}
		p->s++;
	}
	p->s++;
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

static struct tj *node(enum tj_type t)
{
	struct tj *v = calloc(1, sizeof(*v));

	if (v)
		v->type = t;
	return v;
}

static int push(struct tj *v, char *key, struct tj *item)
{
	char **k = realloc(v->keys, (v->n + 1) * sizeof(*k));
	struct tj **it;

	if (!k)
		return -1;
	v->keys = k;
	it = realloc(v->items, (v->n + 1) * sizeof(*it));
	if (!it)
		return -1;
	v->items = it;
	v->keys[v->n] = key;
	v->items[v->n++] = item;
	return 0;
}

static struct tj *container(struct p *p, char close, enum tj_type t)
{
	struct tj *v = node(t), *item;
	char *key = NULL;

	if (!v || ++p->depth > 64)
		goto bad;
	p->s++;
	ws(p);
	if (*p->s == close) {
		p->s++;
		p->depth--;
		return v;
	}
	for (;;) {
		ws(p);
		if (t == TJ_OBJ) {
			key = str(p);
			ws(p);
			if (!key || *p->s++ != ':')
				goto bad;
		}
		item = val(p);
		if (!item || push(v, key, item) < 0) {
			tj_free(item);
			goto bad;
		}
		key = NULL;
		ws(p);
		if (*p->s == ',') {
			p->s++;
			continue;
		}
		if (*p->s++ != close)
			goto bad;
		p->depth--;
		return v;
	}
bad:
	free(key);
	tj_free(v);
	return NULL;
}

static struct tj *number(struct p *p)
{
	const char *s = p->s;
	struct tj *v;
	char *end;

	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return NULL;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return NULL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (*s < '0' || *s > '9')
			return NULL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	v = node(TJ_NUM);
	if (!v)
		return NULL;
	v->num = strtod(p->s, &end);
	if (end != s) {
		free(v);
		return NULL;
	}
	p->s = s;
	return v;
}

static struct tj *word(struct p *p, const char *w, enum tj_type t, int b)
{
	struct tj *v;

	if (strncmp(p->s, w, strlen(w)) != 0)
		return NULL;
	v = node(t);
	if (v) {
		v->boolean = b;
		p->s += strlen(w);
	}
	return v;
}

static struct tj *val(struct p *p)
{
	struct tj *v;

	ws(p);
	switch (*p->s) {
	case '{':
		return container(p, '}', TJ_OBJ);
	case '[':
		return container(p, ']', TJ_ARR);
	case '"':
		v = node(TJ_STR);
		if (v && !(v->str = str(p))) {
			free(v);
			v = NULL;
		}
		return v;
	case 't':
		return word(p, "true", TJ_BOOL, 1);
	case 'f':
		return word(p, "false", TJ_BOOL, 0);
	case 'n':
		return word(p, "null", TJ_NULL, 0);
	default:
		return number(p);
	}
}

struct tj *tj_parse(const char *text)
{
	struct p p = {.s = text};
	struct tj *v = val(&p);

	ws(&p);
	if (v && *p.s != '\0') {
		tj_free(v);
		return NULL;
	}
	return v;
}

void tj_free(struct tj *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		if (v->keys)
			free(v->keys[i]);
		tj_free(v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->str);
	free(v);
}

const struct tj *tj_get(const struct tj *obj, const char *key)
{
	if (!obj || obj->type != TJ_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

const struct tj *tj_at(const struct tj *arr, size_t i)
{
	if (!arr || arr->type != TJ_ARR || i >= arr->n)
		return NULL;
	return arr->items[i];
}
