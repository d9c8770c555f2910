/*
 * A small strict JSON parser for the tests of vfio-brokerctl's --json output: the output is
 * parsed back and inspected, never compared with a fixed string.
 */
#ifndef TEST_CLIENT_JSON_H
#define TEST_CLIENT_JSON_H

#include <stddef.h>

enum tj_type { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

struct tj {
	enum tj_type type;
	double num;
	int boolean;
	char *str;   /* TJ_STR: decoded, NUL-terminated (embedded NULs are refused) */
	size_t n;    /* TJ_ARR / TJ_OBJ: number of members */
	char **keys; /* TJ_OBJ */
	struct tj **items;
};

/* Parses a whole document (surrounding whitespace allowed); NULL when it is not valid JSON. */
struct tj *tj_parse(const char *text);
void tj_free(struct tj *v);
/* Member `key` of an object, or NULL. */
const struct tj *tj_get(const struct tj *obj, const char *key);
/* Item `i` of an array, or NULL. */
const struct tj *tj_at(const struct tj *arr, size_t i);

#endif
