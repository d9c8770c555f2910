/*
 * config_priv: shared by config.c (the key table and the reader) and config_value.c (the values
 * that are more than a path, a number or a yes/no). Not for anything else.
 */
#ifndef VB_BROKER_CONFIG_PRIV_H
#define VB_BROKER_CONFIG_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "config.h"

/* libinih's line buffer (INI_MAX_LINE) minus the newline and the NUL. */
#define CFG_LINE_MAX 200

struct cfg_state {
	struct brk_config *c;
	FILE *f;
	unsigned line;
	bool failed;
	int error;
	struct vb_err *err;
	unsigned seen[64]; /* line where each key of cfg_keys was set, 0: not yet */
};

/* Reports the first problem as "FILE:LINE: reason" into st->err; later ones are dropped. Returns
 * 0, which libinih takes as "stop". */
int brk_config__fail(struct cfg_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whole-string parsers: no sign, no spaces, nothing after. -EINVAL, -ERANGE. */
/* Unsigned decimal; *end (may be NULL) gets where parsing stopped. */
int brk_config__parse_u64(const char *s, uint64_t *ret, char **end);
/* Bytes with an optional K, M, G or T (powers of 1024). */
int brk_config__parse_size(const char *s, uint64_t *ret);
/* yes/no, true/false, on/off, 1/0. */
int brk_config__parse_bool(const char *s, bool *ret);

/* The CFG_SPECIAL keys (config_value.c): each sets its part of st->c and returns 1, or 0 after
 * brk_config__fail(). */
int brk_config__allow(struct cfg_state *st, const char *value);
int brk_config__admin_uid(struct cfg_state *st, const char *value);
int brk_config__admin_gid(struct cfg_state *st, const char *value);
int brk_config__worker_user(struct cfg_state *st, const char *value);
int brk_config__uid_range(struct cfg_state *st, const char *value);
int brk_config__log_level(struct cfg_state *st, const char *value);
int brk_config__seccomp(struct cfg_state *st, const char *value);
int brk_config__broker_seccomp(struct cfg_state *st, const char *value);
int brk_config__restart(struct cfg_state *st, const char *value);
int brk_config__protocol(struct cfg_state *st, const char *value);

#endif
